"""Live view and diagnostics against a local Kubernetes API server (tests.kubeapi) through the real client."""

import datetime

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from clients.kubernetes import ClusterError
from clients.live import cluster_read
from deployments.models import Environment, RenderRun
from live.models import LiveStatus
from live.services import live_refresh
from projects.demo import demo_load
from projects.models import Project
from tests import kubeapi as k

pytest_plugins = ["tests.aws"]
pytestmark = pytest.mark.django_db

COMMIT = "3f9a1c2b4d5e6f708192a3b4c5d6e7f8091a2b3c"
OLD_COMMIT = "0" * 40
ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tesslate-devserver:production"


@pytest.fixture
def admin_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password-1"))
    return client


@pytest.fixture
def production():
    demo_load()
    env = Environment.objects.get(name="aws-production")
    env.kube_context = k.CONTEXT
    env.save(update_fields=["kube_context"])
    RenderRun.objects.create(status=RenderRun.Status.SUCCEEDED, commit_sha=COMMIT, finished_at=timezone.now())
    return env


def ns_of(slug: str) -> str:
    return Project.objects.get(slug=slug, environment__name="aws-production").namespace


@pytest.fixture
def planted(kubeapi, production):
    """A cluster with the guide's troubleshooting problems planted."""
    crm, portfolio, blog = ns_of("crm-dashboard"), ns_of("portfolio"), ns_of("blog")
    spot_taint = {"key": "tesslate.io/spot", "value": "true", "effect": "PreferNoSchedule"}
    kubeapi.add(k.NODES,
                k.node("ip-10-0-1-10", group="primary"), k.node("ip-10-0-1-11", group="primary"),
                k.node("ip-10-0-2-20", group="spot", instance_type="t3a.large", capacity_type="SPOT",
                       labels={"tesslate.io/workload-type": "user-project"}, taints=[spot_taint]),
                k.node("ip-10-0-3-30", group="legacy", instance_type="m5.large"))
    kubeapi.add(k.NAMESPACES, k.namespace("tesslate"), k.namespace(crm), k.namespace(portfolio),
                k.namespace(blog, deleting_since=timezone.now() - datetime.timedelta(hours=3), spec_finalizers=[],
                            finalizers=["kubernetes"],
                            conditions=[{"type": "NamespaceFinalizersRemaining", "status": "True",
                                         "reason": "SomeFinalizersRemain",
                                         "message": "Some content in the namespace has finalizers remaining: "
                                                    "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection "
                                                    "in 1 resource instances"}]),
                k.namespace("proj-00000000-0000-4000-8000-000000000000"))
    kubeapi.add(k.PODS,
                k.pod("tesslate-backend-6d9f-a", "tesslate", labels={"app": "tesslate-backend"}),
                k.pod("tesslate-backend-6d9f-b", "tesslate", labels={"app": "tesslate-backend"}, ready=False,
                      restarts=7, last_terminated="OOMKilled"),
                k.pod("dev-frontend-7c8-x", crm, labels={"app": "dev-container"}, image=ECR_IMAGE, ready=False,
                      waiting=("ImagePullBackOff", f'Back-off pulling image "{ECR_IMAGE}"')),
                k.pod("dev-frontend-5b4-y", portfolio, labels={"app": "dev-container"}))
    kubeapi.add(k.ENDPOINT_SLICES, k.endpoint_slice("dev-frontend", crm, ready=0, not_ready=1),
                k.endpoint_slice("dev-backend", crm), k.endpoint_slice("dev-frontend", portfolio))
    kubeapi.add(k.CERTIFICATES, k.certificate(
        "tesslate-wildcard-tls", "tesslate", ready=False, reason="Failed", dns_names=["*.studio.example.com"],
        message="Failed to create Order: 429 urn:ietf:params:acme:error:rateLimited: too many certificates (5) "
                "already issued for this exact set of domains in the last 168h0m0s"))
    kubeapi.add(k.APPLICATIONS,
                k.argo_application("tesslate-platform-aws-production", project="tesslate-aws-production",
                                   revision=COMMIT),
                k.argo_application(f"aws-production-{crm}", project="tesslate-aws-production", sync="OutOfSync",
                                   health="Degraded", revision=OLD_COMMIT, message="Deployment dev-frontend: "
                                   "progress deadline exceeded"),
                k.argo_application("other-env-app", project="tesslate-minikube", revision=COMMIT))
    return kubeapi


def _verdicts(status, check):
    return [v for v in status.report["verdicts"] if v["check"] == check]


def test_client_reads_every_object_kind_and_follows_continue(planted):
    planted.page_size = 1  # every list comes one object a page
    state = cluster_read(context=k.CONTEXT)
    assert len(state.nodes) == 4 and len(state.namespaces) == 5 and len(state.pods) == 4
    assert state.kustomizations is None  # Flux's API is not served here
    assert planted.requests.count(k.NODES) == 4
    terminating = next(ns for ns in state.namespaces if ns.deletion_timestamp)
    assert terminating.finalizers == ("kubernetes",) and terminating.phase == "Terminating"


def test_live_view_compares_nodes_namespaces_and_argo_cd_with_the_model(planted, production):
    status = live_refresh(environment=production)
    assert status.last_error == "" and status.fetched_at is not None
    groups = {row["name"]: row for row in status.report["node_groups"]}
    assert groups["primary"]["nodes"] == 2 and groups["primary"]["problems"] == []
    assert groups["spot"]["problems"] == ["1 nodes, desired 0"]
    assert groups["legacy"]["modeled"] is False and groups["legacy"]["problems"] == ["not in the model"]
    namespaces = {row["namespace"]: row["verdict"] for row in status.report["namespaces"]}
    assert namespaces[ns_of("crm-dashboard")] == "ok"
    assert namespaces[ns_of("blog")] == "terminating"
    assert namespaces["proj-00000000-0000-4000-8000-000000000000"] == "not-in-model"
    apps = {row["name"]: row for row in status.report["apps"]}
    assert "other-env-app" not in apps
    assert apps["tesslate-platform-aws-production"]["at_last_commit"] is True
    crm_app = apps[f"aws-production-{ns_of('crm-dashboard')}"]
    assert (crm_app["sync_status"], crm_app["health_status"], crm_app["at_last_commit"]) == (
        "OutOfSync", "Degraded", False)
    assert apps[f"aws-production-{ns_of('portfolio')}"]["sync_status"] == "Missing"


def test_every_diagnostic_finds_its_planted_problem(planted, production):
    status = live_refresh(environment=production)
    [cert] = _verdicts(status, "certificate")
    assert not cert["ok"] and "rateLimited" in cert["detail"] and "5 certificates per week" in cert["fix"]
    [pull] = _verdicts(status, "image_pull")
    assert "ImagePullBackOff" in pull["detail"] and "123456789012.dkr.ecr.us-east-1.amazonaws.com" in pull["detail"]
    assert pull["project_id"] == str(Project.objects.get(slug="crm-dashboard").id)
    [down] = _verdicts(status, "project_503")
    assert down["subject"] == "crm-dashboard-frontend.studio.example.com" and "no ready endpoints" in down["detail"]
    [stuck] = _verdicts(status, "namespace_terminating")
    assert stuck["subject"] == ns_of("blog")
    assert "Terminating for 3 h" in stuck["detail"]
    assert "finalizers: kubernetes" in stuck["detail"] and "volumesnapshot-bound-protection" in stuck["detail"]
    [backend] = _verdicts(status, "backend")
    assert backend["subject"] == "tesslate/tesslate-backend-6d9f-b"
    assert "not Ready, 7 restarts" in backend["detail"] and "OOMKilled" in backend["detail"]
    assert status.problem_count == 5


def test_a_healthy_cluster_gives_ok_verdicts(kubeapi, production):
    crm, portfolio = ns_of("crm-dashboard"), ns_of("portfolio")
    kubeapi.add(k.NAMESPACES, k.namespace("tesslate"), k.namespace(crm), k.namespace(portfolio))
    kubeapi.add(k.PODS, k.pod("tesslate-backend-1", "tesslate", labels={"app": "tesslate-backend"}, restarts=1))
    kubeapi.add(k.ENDPOINT_SLICES, k.endpoint_slice("dev-frontend", crm), k.endpoint_slice("dev-backend", crm),
                k.endpoint_slice("dev-frontend", portfolio))
    kubeapi.add(k.CERTIFICATES, k.certificate("tesslate-wildcard-tls", "tesslate", ready=True))
    status = live_refresh(environment=production)
    assert all(v["ok"] for v in status.report["verdicts"]), status.report["verdicts"]
    assert status.problem_count == 0
    assert status.report["notes"] == ["Argo CD's Application API is not served by this cluster."]


def test_pages_show_the_planted_problems_and_link_projects(planted, production, admin_client):
    html = admin_client.get(reverse("admin:live_environment", args=[production.pk])).content.decode()
    assert "PROBLEM" in html and "crm-dashboard-frontend.studio.example.com" in html
    assert ns_of("blog") in html and "OOMKilled" in html and "rateLimited" in html
    crm = Project.objects.get(slug="crm-dashboard")
    assert reverse("admin:live_project", args=[crm.id]) in html
    page = admin_client.get(reverse("admin:live_project", args=[crm.id])).content.decode()
    assert "ImagePullBackOff" in page and "no ready endpoints" in page and "tesslate-backend" not in page
    index = admin_client.get(reverse("admin:live_index")).content.decode()
    assert "aws-production" in index


def test_failing_cluster_shows_the_error_and_the_last_view_with_its_age(planted, production, admin_client):
    live_refresh(environment=production, now=timezone.now() - datetime.timedelta(hours=5))
    planted.fail_with(503)
    html = admin_client.get(reverse("admin:live_environment", args=[production.pk])).content.decode()
    error = html[html.index('id="live-error"'):]
    assert "answered 503" in error and "5 h ago" in error
    assert "crm-dashboard-frontend.studio.example.com" in html  # the last view is still shown
    status = LiveStatus.objects.get(environment=production)
    assert status.last_error and status.fetched_at < timezone.now() - datetime.timedelta(hours=4)


def test_unreachable_and_unauthorized_clusters_raise_cluster_error(kubeapi, production, tmp_path, settings):
    import json

    bad = tmp_path / "bad-token"
    bad.write_text(json.dumps(kubeapi.kubeconfig(token="wrong")))
    settings.KUBECONFIG = str(bad)
    with pytest.raises(ClusterError, match="401"):
        cluster_read(context=k.CONTEXT)
    kubeapi.stop()
    settings.KUBECONFIG = str(tmp_path / "kubeconfig")
    with pytest.raises(ClusterError, match="unreachable"):
        cluster_read(context=k.CONTEXT)


def test_no_kubeconfig_context_is_an_error_not_a_500(production, admin_client, settings, tmp_path):
    settings.KUBECONFIG = str(tmp_path / "missing")
    html = admin_client.get(reverse("admin:live_environment", args=[production.pk])).content.decode()
    assert 'id="live-error"' in html and "No earlier view" in html


def test_flux_kustomizations_sync_health_and_revision(kubeapi, production):
    minikube = Environment.objects.get(name="minikube")
    minikube.kube_context = k.CONTEXT
    minikube.save(update_fields=["kube_context"])
    kubeapi.add(k.KUSTOMIZATIONS,
                k.flux_kustomization("tesslate-platform-minikube", revision=f"main@sha1:{COMMIT}"),
                k.flux_kustomization("tesslate-projects-minikube", ready=False, reason="DependencyNotReady",
                                     revision=f"main@sha1:{OLD_COMMIT}",
                                     message="dependency 'flux-system/tesslate-platform-minikube' is not ready"))
    status = live_refresh(environment=minikube)
    apps = {row["name"]: row for row in status.report["apps"]}
    assert apps["tesslate-platform-minikube"]["health_status"] == "Ready"
    assert apps["tesslate-platform-minikube"]["at_last_commit"] is True
    projects = apps["tesslate-projects-minikube"]
    assert (projects["health_status"], projects["sync_status"], projects["at_last_commit"]) == (
        "NotReady", "DependencyNotReady", False)


def test_project_page_links_to_its_live_status(production, admin_client):
    crm = Project.objects.get(slug="crm-dashboard")
    html = admin_client.get(reverse("admin:projects_project_change", args=[crm.id])).content.decode()
    assert reverse("admin:live_project", args=[crm.id]) in html


@pytest.fixture
def fast_retries(settings):
    settings.LIVE_REFRESH_ATTEMPTS = 2
    settings.LIVE_REFRESH_BACKOFF_SECONDS = 0
    return settings


def test_live_status_command_prints_the_diagnostics(planted, production, fast_retries, capsys):
    from django.core.management import call_command

    call_command("live_status", "--environment", "aws-production")
    out = capsys.readouterr().out
    assert "[PROBLEM] 503 on a project URL (Service without ready endpoints): crm-dashboard-frontend" in out
    assert f"namespace {ns_of('blog')}: terminating" in out
    assert "node group spot: 1 nodes (1 ready), desired 0 (0–10): 1 nodes, desired 0" in out
    call_command("live_status", "--environment", "aws-production", "--json")
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["aws-production"]["error"] is None and len(data["aws-production"]["report"]["verdicts"]) == 5


def test_refresh_run_retries_then_fails_visibly(planted, production, fast_retries):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from live.models import LiveRefreshRun
    from live.services import live_refresh_run_create, live_refresh_run_execute

    planted.fail_with(503)
    run = live_refresh_run_execute(run_id=live_refresh_run_create(environment_names=["aws-production"]).pk)
    assert (run.status, run.error_kind, run.attempt_count, run.failed_count) == (
        LiveRefreshRun.Status.FAILED, LiveRefreshRun.ErrorKind.REMOTE, 2, 1)
    assert "answered 503" in run.error and "after 2 attempts" in run.error and "retrying in 0 s" in run.log
    with pytest.raises(CommandError, match="answered 503"):
        call_command("live_status", "--environment", "aws-production")
    with pytest.raises(CommandError, match="No environment named nope"):
        call_command("live_status", "--environment", "nope")


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_not_retried_and_named(planted, production, fast_retries, status):
    from live.models import LiveRefreshRun, LiveStatus
    from live.services import live_refresh_run_create, live_refresh_run_execute

    planted.fail_with(status)
    run = live_refresh_run_execute(run_id=live_refresh_run_create(environment_names=["aws-production"]).pk)
    assert (run.status, run.error_kind, run.attempt_count, run.failed_count) == (
        LiveRefreshRun.Status.FAILED, LiveRefreshRun.ErrorKind.CREDENTIALS, 1, 1)
    assert f"answered {status}" in run.error and "credentials are not retried" in run.error
    assert LiveStatus.objects.get(environment__name="aws-production").last_error_kind == "credentials"
    planted.fail_with(0)
    run = live_refresh_run_execute(run_id=live_refresh_run_create(environment_names=["aws-production"]).pk)
    assert run.status == LiveRefreshRun.Status.SUCCEEDED
    assert LiveStatus.objects.get(environment__name="aws-production").last_error_kind == ""


def test_scheduled_refresh_reads_every_kubernetes_environment(planted, production, fast_retries, settings):
    from jobs.scheduler import schedule_entries
    from live.models import LiveRefreshRun
    from live.tasks import live_refresh_scheduled_job

    Environment.objects.filter(name="minikube").update(kube_context=k.CONTEXT)
    assert live_refresh_scheduled_job() == LiveRefreshRun.Status.SUCCEEDED
    run = LiveRefreshRun.objects.get()
    assert run.refreshed_count == 2 and run.problem_count >= 5
    assert any(e["func"] == "live.tasks.live_refresh_scheduled_job" for e in schedule_entries())


@pytest.fixture
def eks_on_moto(aws, settings):
    """The demo's EKS cluster in moto: primary as modeled; spot drifted (desired 2, no taint)."""
    import boto3

    settings.LIVE_READ_EKS = True
    eks = boto3.client("eks", region_name="us-east-1")
    role = "arn:aws:iam::123456789012:role/eks"
    eks.create_cluster(name="tesslate-production", roleArn=role,
                       resourcesVpcConfig={"subnetIds": ["subnet-1", "subnet-2"]})
    eks.create_nodegroup(clusterName="tesslate-production", nodegroupName="primary", nodeRole=role,
                         subnets=["subnet-1"], scalingConfig={"minSize": 1, "desiredSize": 2, "maxSize": 5},
                         instanceTypes=["t3.large"], capacityType="ON_DEMAND", diskSize=50)
    eks.create_nodegroup(clusterName="tesslate-production", nodegroupName="spot", nodeRole=role,
                         subnets=["subnet-1"], scalingConfig={"minSize": 0, "desiredSize": 2, "maxSize": 10},
                         instanceTypes=["t3.large", "t3.xlarge", "t3a.large", "t3a.xlarge"], capacityType="SPOT",
                         diskSize=50, labels={"tesslate.io/workload-type": "user-project"})
    return eks


def test_eks_node_groups_on_moto_are_compared_with_the_model(planted, production, eks_on_moto, admin_client):
    status = live_refresh(environment=production)
    rows = {row["name"]: row for row in status.report["eks_node_groups"]}
    assert rows["primary"]["problems"] == [] and rows["primary"]["scaling"] == "2 (1–5)"
    spot = rows["spot"]["problems"]
    assert "scaling 2 (0–10) in EKS, modeled 0 (0–10)" in spot
    assert any(p.startswith("taints differ: EKS none; model tesslate.io/spot=true:PreferNoSchedule") for p in spot)
    html = admin_client.get(reverse("admin:live_environment", args=[production.pk]) + "?cached=1").content.decode()
    assert 'id="live-eks-nodegroups"' in html and "taints differ" in html


def test_eks_errors_become_a_note_not_a_failure(planted, production, aws, settings, monkeypatch):
    import socket

    settings.LIVE_READ_EKS = True
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
    status = live_refresh(environment=production)
    assert status.last_error == "" and status.report["eks_node_groups"] == []
    assert status.report["verdicts"]  # the cluster's view is complete all the same
    notes = status.report["notes"]
    assert any("EKS node groups could not be read: EKS cannot be reached" in note for note in notes), notes
