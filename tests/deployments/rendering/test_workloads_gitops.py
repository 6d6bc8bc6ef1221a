"""Argo CD / Flux and Studio's backend don't fight (issue: the backend scales projects to zero; a mistake in git
must not cascade into deleted volumes), the sync order is enforced by something real, and the backend's RBAC
covers what it does at runtime (DOMAIN.md "Platform")."""

import pytest
import yaml

from deployments.rendering import render_tree
from deployments.selectors import environments_snapshot
from projects.demo import demo_load
from tests.deployments.rendering.test_rendering import SOURCE_URL, build_all, find

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_tree(settings):
    settings.GITOPS_SOURCE_URL = SOURCE_URL
    demo_load()
    return render_tree(environments_snapshot())


def test_project_deployments_leave_replicas_to_the_backend(demo_tree, tmp_path):
    built = build_all(demo_tree, tmp_path)
    deployments = [o for env in ("minikube", "aws-production") for o in built[f"environments/{env}/projects"]
                   if o["kind"] == "Deployment"]
    assert len(deployments) == 12
    for deployment in deployments:
        assert "replicas" not in deployment["spec"], deployment["metadata"]["name"]


def test_applicationset_ignores_replicas_and_keeps_resources(demo_tree, tmp_path):
    appset = find(build_all(demo_tree, tmp_path)["clusters/aws-production"], "ApplicationSet",
                  "tesslate-projects-aws-production")["spec"]
    assert appset["syncPolicy"] == {"preserveResourcesOnDeletion": True}
    template = appset["template"]["spec"]
    assert template["ignoreDifferences"] == [
        {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}]
    assert "RespectIgnoreDifferences=true" in template["syncPolicy"]["syncOptions"]


def test_sync_order_is_retries_not_unenforced_waves(demo_tree, tmp_path):
    objects = build_all(demo_tree, tmp_path)["clusters/aws-production"]
    for obj in objects:
        annotations = obj["metadata"].get("annotations", {})
        template = obj["spec"].get("template", {}).get("metadata", {}).get("annotations", {})
        assert "argocd.argoproj.io/sync-wave" not in {**annotations, **template}, obj["metadata"]["name"]
    platform = find(objects, "Application", "tesslate-platform-aws-production")["spec"]["syncPolicy"]["retry"]
    projects = find(objects, "ApplicationSet", "tesslate-projects-aws-production")["spec"]["template"]["spec"][
        "syncPolicy"]["retry"]
    for retry in (platform, projects):
        assert retry["limit"] < 0, "retry until the platform is ready"
        assert retry["backoff"]["factor"] >= 2 and retry["backoff"]["maxDuration"]
    # Flux: a real, health-aware dependency (dependsOn + wait).
    flux = build_all(demo_tree, tmp_path)["clusters/minikube"]
    projects = find(flux, "Kustomization", "tesslate-projects-minikube")["spec"]
    platform = find(flux, "Kustomization", "tesslate-platform-minikube")["spec"]
    assert projects["dependsOn"] == [{"name": "tesslate-platform-minikube"}] and platform["wait"] is True


def test_backend_rbac_covers_what_studio_does_at_runtime(demo_tree):
    documents = [d for d in yaml.safe_load_all(demo_tree["platform/base/rbac.yaml"]) if d]
    role = next(d for d in documents if d["kind"] == "ClusterRole")
    binding = next(d for d in documents if d["kind"] == "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "tesslate-backend-sa", "namespace": "tesslate"}]

    def allowed(group: str, resource: str, verb: str) -> bool:
        return any(group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
                   for rule in role["rules"])

    needs = [("", "namespaces", verb) for verb in ("create", "delete")]
    needs += [(group, resource, verb) for group, resource in (
        ("", "persistentvolumeclaims"), ("apps", "deployments"), ("", "services"), ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "networkpolicies"), ("snapshot.storage.k8s.io", "volumesnapshots"))
        for verb in ("create", "delete", "get", "list")]
    needs += [("apps", "deployments/scale", "patch"), ("apps", "deployments/scale", "update"),
              ("", "pods/exec", "create"), ("", "pods/log", "get"),
              ("snapshot.storage.k8s.io", "volumesnapshotcontents", "get"), ("", "persistentvolumes", "get"),
              ("storage.k8s.io", "storageclasses", "list")]
    missing = [need for need in needs if not allowed(*need)]
    assert not missing, missing


@pytest.mark.parametrize("tool", ["flux", "argocd"])
def test_a_stopped_project_runs_no_pod_under_either_gitops_tool(settings, tmp_path, tool):
    """A Minikube hibernation stops the project. Flux applies `replicas: 0`; Argo CD would ignore it (the
    ApplicationSet's ignoreDifferences on spec.replicas with RespectIgnoreDifferences), so there the Deployments
    are left out of git and pruned. The volumes, Services and the Namespace stay under both."""
    from deployments.models import Environment
    from projects.models import Project

    settings.GITOPS_SOURCE_URL = SOURCE_URL
    demo_load()
    Environment.objects.filter(name="minikube").update(gitops_tool=tool)
    project = Project.objects.get(environment__name="minikube", slug="todo-app")
    Project.objects.filter(pk=project.pk).update(state=Project.State.HIBERNATED)
    built = build_all(render_tree(environments_snapshot()), tmp_path)
    folder = f"environments/minikube/projects/proj-{project.pk}"
    objects = built[folder]
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    if tool == "flux":
        assert deployments and all(d["spec"]["replicas"] == 0 for d in deployments)
    else:
        assert deployments == []
    kinds_left = {o["kind"] for o in objects}
    assert {"Namespace", "PersistentVolumeClaim", "Service", "NetworkPolicy"} <= kinds_left
    claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    assert "project-storage" in claims and len(claims) >= 2, claims
    # The project next to it is untouched: its Deployments carry no replicas.
    other = [o for o in built[[k for k in built if k.startswith("environments/minikube/projects/proj-")
                               and k != folder][0]] if o["kind"] == "Deployment"]
    assert other and all("replicas" not in d["spec"] for d in other)
