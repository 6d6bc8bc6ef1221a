"""The portal's rq worker warms the validation gate's caches in its parent process, so the child forked for each
job inherits them instead of re-reading the whole tree (deployments.worker, deployments.validation.warm)."""

from pathlib import Path

from django.conf import settings
from django_rq.workers import get_worker_class
from rq.worker import Worker

from deployments.validation import kustomize
from deployments.validation.hosts import _SOURCE_CACHE
from deployments.validation.warm import validation_warm
from deployments.worker import GitOpsWorker, mirror_tree

INGRESS = """apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - host: a.example.com
"""


def test_the_configured_worker_is_the_warming_forking_worker():
    assert get_worker_class() is GitOpsWorker
    assert issubclass(GitOpsWorker, Worker)
    assert mirror_tree() == Path(str(settings.GITOPS_REPO_DIR) + ".validate") / "tree"


def test_warm_reads_every_kustomization_and_ingress_source_once(tmp_path):
    tree = tmp_path / "tree"
    folder = tree / "environments" / "dev" / "projects" / "proj-1"
    folder.mkdir(parents=True)
    (folder / "kustomization.yaml").write_text("resources:\n- web.yaml\n")
    (folder / "web.yaml").write_text(INGRESS)
    (tree / "environments" / "dev" / "projects" / "kustomization.yaml").write_text("resources:\n- proj-1\n")
    timings = validation_warm(tree, compile_validators=False)
    assert set(timings) == {"schemas", "kustomizations", "hosts"}
    assert str(folder / "kustomization.yaml") in kustomize._KUSTOMIZATION_CACHE
    assert _SOURCE_CACHE[str(folder / "web.yaml")][1] == [("", "web", ("a.example.com",))]


def test_warm_without_a_mirror_loads_only_the_schemas(tmp_path):
    assert set(validation_warm(tmp_path / "missing", compile_validators=False)) == {"schemas"}
    assert set(validation_warm(None, compile_validators=False)) == {"schemas"}
