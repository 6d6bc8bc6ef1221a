"""Derived names (deployments.names): each one spelled as the renderer writes it, each checked against its limit
in the model layer, with a field error on the input that makes it too long; reserved Secret names; cross-row
host and certificate rules through the ORM."""

import uuid

import pytest

from deployments import domain, names
from deployments.models import Environment, Secret
from deployments.rendering import common
from deployments.rendering.clusters import ClusterEntry, render_cluster_entry
from projects.models import Container, Project
from tests.factories import (
    container_factory,
    eks_environment_factory,
    environment_factory,
    field_errors,
    project_factory,
)


def test_constants_match_the_renderer():
    assert names.WILDCARD_TLS_SECRET == common.WILDCARD_TLS_SECRET
    assert names.IMAGE_NAMES == common.IMAGE_NAMES
    assert names.PLATFORM_SERVICE_ACCOUNTS[2] == common.EXTERNAL_SECRETS_SERVICE_ACCOUNT


@pytest.mark.parametrize("tool", ["flux", "argocd"])
def test_cluster_names_are_the_rendered_ones(tool):
    files = render_cluster_entry(ClusterEntry(env_name="prod", gitops_tool=tool, repo_url="https://git.example/r",
                                              branch="main"))
    text = b"".join(files.values()).decode()
    if tool == "flux":
        assert f"name: {names.flux_platform_kustomization_name('prod')}\n" in text
        assert f"name: {names.flux_projects_kustomization_name('prod')}\n" in text
    else:
        assert f"name: {names.argocd_app_project_name('prod')}\n" in text
        assert f"name: {names.argocd_platform_application_name('prod')}\n" in text
        assert f"name: {names.argocd_projects_application_set_name('prod')}\n" in text
        # The ApplicationSet names each Application <env>-<folder>; a project folder is its namespace.
        assert 'name: "prod-{{ .path.basename }}"' in text
        assert names.argocd_project_application_name("prod", uuid.UUID(int=1)) == f"prod-proj-{uuid.UUID(int=1)}"


def test_fixed_shapes():
    project_id = uuid.UUID("5b0c4c57-8a53-4f3c-9d1e-7a0e5e3d2c10")
    namespace = names.project_namespace(project_id)
    assert namespace == f"proj-{project_id}" and len(namespace) == 41
    # Hibernation snapshots: one rule, in deployments.domain (the renderer and the hibernation job both use it).
    snapshot = domain.hibernation_snapshot_name(str(project_id), "20260102-030405", domain.PROJECT_VOLUME)
    assert snapshot == "snap-5b0c4c57-20260102-030405" and len(snapshot) == 29
    assert domain.hibernation_snapshot_name(str(project_id), "20260102-030405", "svc-db-data") == \
        "snap-5b0c4c57-20260102-030405-svc-db-data"
    assert names.service_data_claim_name("db") == "svc-db-data"
    assert names.workload_name("web", service=False) == "dev-web"
    assert names.ingress_tls_secret_name("web") == "dev-web-tls"
    assert names.external_secrets_role_name("prod") == "tesslate-external-secrets-prod"
    assert names.secrets_manager_secret_name("prod", "app", "KEY") == "tesslate/prod/app/KEY"


@pytest.mark.parametrize(("length", "tool", "fits"), [
    (45, "flux", True), (46, "flux", False),  # tesslate-projects-<env>: 18 + 46 = 64 > 63 (the example)
    (21, "argocd", True), (22, "argocd", False),  # <env>-proj-<uuid>: 22 + 42 = 64 > 63
])
def test_environment_names_keep_label_limits(length, tool, fits):
    limits = names.derived_name_errors(names.environment_names(name="e" * length, gitops_tool=tool,
                                                               external_secrets_role=False))
    assert (limits == []) is fits


@pytest.mark.django_db
def test_a_flux_environment_with_a_valid_46_character_name_gets_a_field_error_on_name():
    name = "a" * 46
    environment = Environment(name=name, kind="minikube", app_domain="studio.example.com", gitops_tool="flux")
    errors = field_errors(environment)
    assert list(errors) == ["name"]
    assert f"Flux Kustomization name tesslate-platform-{name} would be 64 characters" in errors["name"][0]
    assert "kustomize.toolkit.fluxcd.io/name" in errors["name"][0] and "at most 63" in errors["name"][0]
    assert "Shorten this to at most 45 characters" in errors["name"][0]
    Environment(name="a" * 45, kind="minikube", app_domain="studio.example.com", gitops_tool="flux").full_clean()


@pytest.mark.django_db
def test_an_argocd_environment_name_must_leave_room_for_project_applications():
    errors = field_errors(Environment(name="a" * 22, kind="minikube", app_domain="x.example.com"))
    assert "Argo CD Application name of each project" in errors["name"][0]
    assert "app.kubernetes.io/instance" in errors["name"][0]


@pytest.mark.django_db
def test_an_eks_environment_name_must_fit_the_iam_role_name():
    fields = dict(kind="eks", app_domain="x.example.com", gitops_tool="flux", aws_account_id="123456789012",
                  aws_region="us-east-1", eks_cluster_name="c")
    errors = field_errors(Environment(name="r" * 39, **fields))
    assert errors["name"] == [f"The IAM role name tesslate-external-secrets-{'r' * 39} would be 65 characters; an IAM "
                              "role name has at most 64. Shorten this to at most 38 characters."]
    # With its own role the default role name is not used.
    Environment(name="r" * 39, secrets_manager_role_arn="arn:aws:iam::123456789012:role/eso", **fields).full_clean()


@pytest.mark.django_db
def test_an_image_registry_must_leave_room_for_the_image_names():
    registry = "r" * 236
    Environment(name="img", app_domain="x.example.com", image_registry=registry).full_clean()
    errors = field_errors(Environment(name="img", app_domain="x.example.com", image_registry=registry + "r"))
    assert "image name" in errors["image_registry"][0] and "at most 255" in errors["image_registry"][0]


@pytest.mark.django_db
def test_a_project_slug_or_directory_that_makes_the_host_label_too_long():
    project = project_factory(slug="s" * 30, containers=("d" * 32,))  # label of 63
    project.slug = "s" * 31
    errors = field_errors(project)
    assert "host label" in errors["slug"][0] and "has at most 63" in errors["slug"][0]
    assert "Shorten this to at most 30 characters" in errors["slug"][0]
    errors = field_errors(Container(project=project_factory(slug="s" * 30, containers=()), directory="d" * 33,
                                    image="tesslate-devserver:latest"))
    assert "Shorten this to at most 32 characters" in errors["directory"][0]


@pytest.mark.django_db
def test_an_app_domain_change_that_makes_a_host_too_long():
    environment = environment_factory(app_domain="short.example.com")
    project_factory(environment, slug="s" * 30, containers=("d" * 32,))
    environment.app_domain = ("a" * 60 + ".") * 3 + "b" * 9  # 192 characters; the host would be 256
    errors = field_errors(environment)
    assert "The Ingress host" in errors["app_domain"][0] and "at most 253" in errors["app_domain"][0]


@pytest.mark.django_db
def test_one_wildcard_certificate_per_domain():
    eks_environment_factory(name="one", app_domain="studio.example.com")
    other = Environment(name="two", kind="eks", app_domain="studio.example.com", tls_mode="cert-manager-dns01",
                        acme_email="ops@example.com", aws_account_id="123456789012", aws_region="us-east-1",
                        eks_cluster_name="c")
    errors = field_errors(other)
    assert "Environment one already issues the wildcard certificate for *.studio.example.com" in errors["app_domain"][0]
    other.tls_mode = "letsencrypt-http01"  # no wildcard certificate
    other.full_clean()


@pytest.mark.django_db
def test_hosts_are_unique_in_an_environment_through_the_orm():
    """The issue's example: shop/api-v2 and shop-api/v2 both make shop-api-v2.<domain>."""
    environment = environment_factory()
    project_factory(environment, slug="shop", containers=("api-v2",))
    other = project_factory(environment, slug="shop-api", containers=())
    errors = field_errors(Container(project=other, directory="v2", image="tesslate-devserver:latest"))
    assert errors["directory"] == [
        f"Host shop-api-v2.{environment.app_domain} is already used by project shop (directory api-v2) in this "
        "environment. Choose another slug or directory."]
    # Another environment, or a deleted project, holds no conflict.
    container_factory(project_factory(slug="shop-api", containers=()), directory="v2")
    Project.objects.filter(slug="shop").update(state=Project.State.DELETED)
    container_factory(other, directory="v2")


@pytest.mark.django_db
def test_a_slug_change_that_takes_another_projects_host():
    environment = environment_factory()
    project_factory(environment, slug="shop", containers=("api-v2",))
    other = project_factory(environment, slug="store", containers=("v2",))
    other.slug = "shop-api"
    errors = field_errors(other)
    assert "Host shop-api-v2." in errors["slug"][0] and "already used by project shop" in errors["slug"][0]


@pytest.mark.django_db
@pytest.mark.parametrize(("secret_name", "fragment"), [
    ("tesslate-wildcard-tls", "cert-manager writes the wildcard certificate"),
    ("tesslate-tls", "cert-manager writes the main Ingress's certificate"),
    ("dev-web-tls", "dev container Ingresses"),
    ("tesslate-backend-sa-token", "ServiceAccount tesslate-backend-sa"),
    ("default-token-x7k2p", "ServiceAccount default"),
    ("sh.helm.release.v1.studio.v3", "Helm"),
])
def test_reserved_secret_names_are_refused(secret_name, fragment):
    errors = field_errors(Secret(environment=environment_factory(), secret_name=secret_name, key="KEY",
                                 ciphertext="x", fingerprint="f"))
    assert f"{secret_name} is reserved" in errors["secret_name"][0] and fragment in errors["secret_name"][0]


@pytest.mark.django_db
@pytest.mark.parametrize("secret_name", ["tesslate-app-secrets", "postgres-secret", "s3-credentials", "my-tls"])
def test_ordinary_secret_names_pass(secret_name):
    Secret(environment=environment_factory(), secret_name=secret_name, key="KEY", ciphertext="x",
           fingerprint="f").full_clean()


@pytest.mark.django_db
def test_the_aws_secrets_manager_name_must_fit():
    environment = eks_environment_factory()
    secret = Secret(environment=environment, secret_name="s" * 253, key="K" * 253, ciphertext="x", fingerprint="f")
    errors = field_errors(secret)
    assert "AWS Secrets Manager secret name" in errors["secret_name"][0] and "at most 512" in errors["secret_name"][0]
    secret.environment = environment_factory()  # SealedSecrets: no Secrets Manager name
    secret.full_clean()
