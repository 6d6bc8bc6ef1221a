"""Rotation reaches the pods: a new value shows in the preview and the commit as annotation changes only."""

import secrets

import pytest

from deployments import runs, services
from deployments.models import Environment, Secret
from projects.demo import demo_load
from tests.deployments.runfixtures import queued_run, sealed_secrets_certificate


def _changed_lines(diff: str) -> list[str]:
    return [line for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def _rotate(environment: Environment, key: str) -> str:
    value = f"rotated-{secrets.token_hex(16)}"
    secret = Secret.objects.get(environment=environment, key=key)
    services.secret_store_value(secret=secret, value=value)
    return value


@pytest.mark.django_db
def test_rotation_on_eks_changes_only_checksum_annotations(gitops):
    demo_load()
    production = Environment.objects.get(name="aws-production")
    first = runs.render_run_execute(run_id=queued_run(
        environment_ids=[production.pk], user=None, reason="first").pk)
    assert first.status == "succeeded", first.error

    value = _rotate(production, "LITELLM_MASTER_KEY")
    preview = runs.environment_preview(environment_ids=[production.pk])
    assert preview.changed and not preview.added and not preview.deleted
    lines = _changed_lines(preview.diff)
    assert lines, preview.diff
    assert all("checksum.tesslate.io/" in line for line in lines), lines
    assert value not in preview.diff

    second = runs.render_run_execute(run_id=queued_run(
        environment_ids=[production.pk], user=None, reason="rotate").pk)
    assert second.status == "succeeded" and second.commit_sha != first.commit_sha
    assert all("checksum.tesslate.io/" in line for line in _changed_lines(second.diff))
    for path in ("environments/aws-production/platform/patches/tesslate-backend.yaml",
                 "environments/aws-production/platform/patches/tesslate-worker.yaml"):
        assert f"+++ b/{path}" in second.diff
    assert value not in gitops.log_patch()


@pytest.mark.django_db
def test_rotation_with_sealed_secrets_changes_the_ciphertext_and_annotations_only(gitops):
    demo_load()
    minikube = Environment.objects.get(name="minikube")
    minikube.sealed_secrets_certificate = sealed_secrets_certificate()
    minikube.save()
    first = runs.render_run_execute(run_id=queued_run(
        environment_ids=[minikube.pk], user=None, reason="first").pk)
    assert first.status == "succeeded", first.error

    value = _rotate(minikube, "SECRET_KEY")
    preview = runs.environment_preview(environment_ids=[minikube.pk])
    lines = _changed_lines(preview.diff)
    assert lines
    # Pod templates and the SealedSecret get new checksums; the SealedSecret's SECRET_KEY gets new ciphertext.
    assert all("checksum.tesslate.io/" in line or line.lstrip("+-").strip().startswith("SECRET_KEY:")
               for line in lines), lines
    assert any(line.lstrip("+-").strip().startswith("SECRET_KEY:") for line in lines)
    assert value not in preview.diff
