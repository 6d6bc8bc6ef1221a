"""Hibernation and wake end to end: commits checked in a real git remote, the cluster played by the fake API server
(tests/kube_store.py) and a small stand-in for the GitOps tool that creates in the cluster the VolumeSnapshots it
finds in git (so a snapshot exists only once it was committed)."""

from __future__ import annotations

import secrets
import threading

import pytest
import yaml
from django.core.exceptions import ValidationError

from deployments import runs
from jobs.models import JobRun
from projects import services
from projects.models import HibernationRun, Project, VolumeRestore
from snapshots.hibernation import hibernation_execute
from snapshots.models import Snapshot
from tests.deployments.runfixtures import git, queued_run
from tests.factories import container_factory, eks_environment_factory, environment_factory, project_factory

pytest_plugins = ["tests.kube_store"]

pytestmark = pytest.mark.django_db(transaction=True)


class GitOpsToolStandIn:
    """Polls the remote's main branch; every VolumeSnapshot committed under a project folder that the cluster does
    not have yet is created there with its bound content (``mode``: ``ready`` after ``delay`` s, ``never`` ready,
    or ``error``). ``handles``: {VolumeSnapshot name: EBS snapshot id}; ``seen_at``: {name: commit it came from}."""

    def __init__(self, remote, store, *, mode: str = "ready", delay: float = 0.3) -> None:
        self.remote, self.store, self.mode, self.delay = remote, store, mode, delay
        self.handles: dict[str, str] = {}
        self.seen_at: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            head = self.remote.head()
            if head is None:
                continue
            for path in self.remote.files(head):
                if not path.endswith("/volume-snapshots.yaml"):
                    continue
                for document in yaml.safe_load_all(self.remote.show(path, head)):
                    name = document["metadata"]["name"]
                    if document["kind"] != "VolumeSnapshot" or name in self.handles:
                        continue
                    handle = "snap-" + secrets.token_hex(9)[:17]
                    self.handles[name], self.seen_at[name] = handle, head
                    self.store.volume_snapshot_pair(
                        namespace=document["metadata"]["namespace"], name=name,
                        pvc=document["spec"]["source"]["persistentVolumeClaimName"],
                        handle="" if self.mode == "error" else handle, labels=document["metadata"]["labels"],
                        ready=self.mode == "ready",
                        ready_after=self.delay if self.mode == "ready" else None,
                        error="Failed to create snapshot: SnapshotCreationPerVolumeRateExceeded"
                        if self.mode == "error" else "")


def _render(environment) -> None:
    run = runs.render_run_execute(run_id=queued_run(environment_ids=[environment.pk], user=None,
                                                    reason="test render").pk)
    assert run.status in ("succeeded", "warnings", "no_change"), run.error


@pytest.fixture
def fast_polls(settings):
    settings.HIBERNATION_POLL_SECONDS = 0.05
    settings.HIBERNATION_POLL_MAX_SECONDS = 0.2
    return settings


@pytest.fixture
def eks_project(kube_store, fast_polls):
    environment = eks_environment_factory(kube_context=kube_store.context)
    project = project_factory(environment, containers=("frontend",))
    container_factory(project, directory="db", role="database", image="postgres:16-alpine")
    container_factory(project, directory="cache", role="service", image="redis:7-alpine")
    return project


def _folder(project) -> str:
    return f"environments/{project.environment.name}/projects/{project.namespace}/"


def test_hibernate_commits_snapshots_waits_records_then_prunes_and_wake_restores_every_volume(
        gitops, gitops_queue, kube_store, eks_project):
    project, folder = eks_project, _folder(eks_project)
    _render(project.environment)
    assert folder + "namespace.yaml" in gitops.files()
    commits_before = len(gitops.commits())

    with GitOpsToolStandIn(gitops, kube_store) as tool:
        run = services.project_hibernate(project=project, user=None)
        project.refresh_from_db()
        assert project.state == Project.State.HIBERNATING and project.hibernation_stamp == run.stamp
        assert gitops_queue.fetch_job(f"hibernation-{run.pk}") is not None  # handed to the gitops queue
        hibernation_execute(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == JobRun.Status.SUCCEEDED, run.error + run.log
    short = str(project.pk)[:8]
    names = {"project-storage": f"snap-{short}-{run.stamp}",
             "svc-cache-data": f"snap-{short}-{run.stamp}-svc-cache-data",
             "svc-db-data": f"snap-{short}-{run.stamp}-svc-db-data"}

    # (a) One commit added a VolumeSnapshot of every PVC while the project was still rendered.
    snapshot_commit = run.snapshot_render_run.commit_sha
    documents = list(yaml.safe_load_all(gitops.show(folder + "volume-snapshots.yaml", snapshot_commit)))
    assert {d["spec"]["source"]["persistentVolumeClaimName"]: d["metadata"]["name"] for d in documents} == names
    labels = documents[0]["metadata"]["labels"]
    assert {key: labels[key] for key in ("project-id", "user-id", "snapshot-type", "app",
                                         "app.kubernetes.io/managed-by")} == {
        "project-id": str(project.pk), "user-id": project.owner, "snapshot-type": "hibernation", "app": "tesslate",
        "app.kubernetes.io/managed-by": "tesslate-portal"}
    assert {d["spec"]["volumeSnapshotClassName"] for d in documents} == {"tesslate-ebs-snapshots"}
    assert "volume-snapshots.yaml" in yaml.safe_load(gitops.show(folder + "kustomization.yaml",
                                                                 snapshot_commit))["resources"]
    assert folder + "namespace.yaml" in gitops.files(snapshot_commit)
    # The cluster saw them from that commit, not earlier.
    assert set(tool.seen_at.values()) == {snapshot_commit}

    # (b) Each EBS snapshot id was read from the bound content and recorded.
    recorded = {v.volume_name: v.snapshot_handle for v in run.volumes.all()}
    assert recorded == {volume: tool.handles[name] for volume, name in names.items()}
    inventory = {s.volume_name: s for s in Snapshot.objects.filter(project=project)}
    assert {volume: s.ebs_snapshot_id for volume, s in inventory.items()} == recorded
    assert {s.state for s in inventory.values()} == {Snapshot.State.COMPLETED}
    assert inventory["svc-db-data"].volume_snapshot_name == names["svc-db-data"]

    # (c) Only then: Hibernated, and one more commit removed the folder.
    project.refresh_from_db()
    assert project.state == Project.State.HIBERNATED and not project.hibernation_error
    prune_commit = run.prune_render_run.commit_sha
    assert gitops.head() == prune_commit and len(gitops.commits()) == commits_before + 2
    assert gitops.commits()[1] == snapshot_commit
    assert not [path for path in gitops.files() if path.startswith(folder)]
    assert project.namespace not in gitops.show(f"environments/{project.environment.name}/projects/"
                                                "kustomization.yaml")
    assert run.prune_render_run.files_deleted >= 6

    # Wake: the newest complete set restores every volume.
    assert services.project_snapshot_sets(project=project) == [run]
    services.project_wake(project=project, user=None)
    project.refresh_from_db()
    assert project.state == Project.State.ACTIVE
    assert {r.volume_name: r.snapshot_handle for r in VolumeRestore.objects.filter(project=project)} == recorded
    _render(project.environment)  # the gate validates the restore objects against the CRDs
    for volume, filename in (("project-storage", "storage.yaml"), ("svc-db-data", "svc-db.yaml"),
                             ("svc-cache-data", "svc-cache.yaml")):
        objects = {(d["kind"], d["metadata"]["name"]): d
                   for d in yaml.safe_load_all(gitops.show(folder + filename))}
        content_name = f"restored-{names[volume]}-{project.namespace[-8:]}"
        content = objects[("VolumeSnapshotContent", content_name)]["spec"]
        assert content["source"] == {"snapshotHandle": recorded[volume]}
        assert (content["driver"], content["deletionPolicy"]) == ("ebs.csi.aws.com", "Retain")
        assert content["volumeSnapshotRef"] == {"name": f"restored-{names[volume]}", "namespace": project.namespace}
        snapshot = objects[("VolumeSnapshot", f"restored-{names[volume]}")]["spec"]
        assert snapshot["source"] == {"volumeSnapshotContentName": content_name}
        claim = objects[("PersistentVolumeClaim", volume)]["spec"]
        assert claim["dataSource"] == {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                                       "name": f"restored-{names[volume]}"}
    assert folder + "volume-snapshots.yaml" not in gitops.files()
    # The PVC's dataSource is immutable: the next render keeps the restore objects as they are.
    head = gitops.head()
    _render(project.environment)
    assert gitops.head() == head


@pytest.mark.parametrize("mode, message", [("never", "Timed out after 1 s"),
                                           ("error", "SnapshotCreationPerVolumeRateExceeded")])
def test_a_snapshot_that_is_not_ready_keeps_the_namespace(gitops, gitops_queue, kube_store, eks_project,
                                                         settings, mode, message):
    settings.HIBERNATION_SNAPSHOT_TIMEOUT_SECONDS = 1
    project, folder = eks_project, _folder(eks_project)
    _render(project.environment)
    with GitOpsToolStandIn(gitops, kube_store, mode=mode):
        run = services.project_hibernate(project=project, user=None)
        hibernation_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == JobRun.Status.FAILED and message in run.error
    assert run.error_kind == JobRun.ErrorKind.SOURCE and run.prune_render_run is None
    project.refresh_from_db()
    assert project.state == Project.State.ACTIVE and message in project.hibernation_error
    assert project.hibernation_failed and not project.hibernation_stamp
    assert folder + "volume-snapshots.yaml" in gitops.files()  # the snapshot commit, nothing removed
    assert folder + "namespace.yaml" in gitops.files() and folder + "storage.yaml" in gitops.files()
    assert not services.project_snapshot_sets(project=project)
    assert not Snapshot.objects.filter(project=project).exists()
    # The failure asked for a render of the active project: the folder stays, the snapshots leave git.
    assert any(job.func_name == "deployments.tasks.render_run_job" for job in gitops_queue.jobs)
    _render(project.environment)
    assert folder + "namespace.yaml" in gitops.files() and folder + "volume-snapshots.yaml" not in gitops.files()
    deleted = runs_deleted_paths(gitops)
    assert folder + "namespace.yaml" not in deleted and folder + "storage.yaml" not in deleted


def runs_deleted_paths(remote) -> set[str]:
    """Every path some commit of main deleted."""
    return set(git(remote.remote, "log", "--diff-filter=D", "--name-only", "--format=", "main").split())


@pytest.mark.parametrize("tool", ["flux", "argocd"])
def test_minikube_hibernation_stops_the_project_and_keeps_its_namespace(gitops, gitops_queue, tool):
    environment = environment_factory(gitops_tool=tool)
    project = project_factory(environment, containers=("frontend",))
    container_factory(project, directory="db", role="service", image="redis:7-alpine")
    folder = _folder(project)
    _render(environment)
    assert services.project_hibernate(project=project, user=None) is None
    project.refresh_from_db()
    assert project.state == Project.State.HIBERNATED and not HibernationRun.objects.exists()
    _render(environment)
    files = gitops.files()
    assert folder + "namespace.yaml" in files and folder + "storage.yaml" in files
    assert folder + "volume-snapshots.yaml" not in files
    deployments = [d for name in ("file-manager.yaml", "dev-frontend.yaml", "svc-db.yaml")
                   for d in yaml.safe_load_all(gitops.show(folder + name)) if d and d["kind"] == "Deployment"]
    if tool == "flux":
        assert len(deployments) == 3 and {d["spec"]["replicas"] for d in deployments} == {0}
    else:  # Argo CD ignores spec.replicas: the Deployments are left out (and pruned), every file stays
        assert deployments == []
        assert "Argo CD ignores spec.replicas" in gitops.show(folder + "file-manager.yaml")
    claims = [d for d in yaml.safe_load_all(gitops.show(folder + "svc-db.yaml"))
              if d["kind"] == "PersistentVolumeClaim"]
    assert [c["metadata"]["name"] for c in claims] == ["svc-db-data"]

    services.project_wake(project=project, user=None)
    _render(environment)
    deployments = [d for d in yaml.safe_load_all(gitops.show(folder + "dev-frontend.yaml"))
                   if d["kind"] == "Deployment"]
    assert "replicas" not in deployments[0]["spec"]
    assert not runs_deleted_paths(gitops)


def test_hibernate_and_wake_refuse_what_they_cannot_do(kube_store, fast_polls, gitops_queue):
    project = project_factory(eks_environment_factory(kube_context=kube_store.context))
    with pytest.raises(ValidationError) as error:
        services.project_wake(project=project, user=None)
    assert "Only a hibernated project can wake" in error.value.message_dict["state"][0]
    Project.objects.filter(pk=project.pk).update(state=Project.State.HIBERNATED)
    with pytest.raises(ValidationError) as error:
        services.project_wake(project=project, user=None)
    assert "no complete snapshot set" in error.value.message_dict["snapshot_set"][0]
    with pytest.raises(ValidationError) as error:
        services.project_hibernate(project=project, user=None)
    assert "Only an active project can hibernate" in error.value.message_dict["state"][0]
    compose = project_factory(environment_factory(kind="compose", server_ip="203.0.113.10"))
    with pytest.raises(ValidationError) as error:
        services.project_hibernate(project=compose, user=None)
    assert "Docker Compose" in error.value.message_dict["state"][0]
    Project.objects.filter(pk=project.pk).update(state=Project.State.ACTIVE)
    services.project_hibernate(project=project, user=None)
    with pytest.raises(ValidationError) as error:
        Project.objects.filter(pk=project.pk).update(state=Project.State.ACTIVE)
        services.project_hibernate(project=project, user=None)
    assert "already running" in error.value.message_dict["state"][0]


def _snapshot_set(project, stamp: str, handles: dict[str, str]) -> HibernationRun:
    """A finished hibernation (a complete snapshot set) as the job leaves it."""
    from projects.models import HibernationVolume

    run = HibernationRun.objects.create(project=project, stamp=stamp, status=JobRun.Status.SUCCEEDED)
    for volume, handle in handles.items():
        HibernationVolume.objects.create(run=run, volume_name=volume, snapshot_handle=handle,
                                         volume_snapshot_name=f"snap-{str(project.pk)[:8]}-{stamp}")
    return run


def test_the_state_cannot_be_set_by_hand_where_hibernation_deletes_volumes(kube_store):
    from tests.factories import field_errors

    project = project_factory(eks_environment_factory(kube_context=kube_store.context))
    project.state = Project.State.HIBERNATED
    assert "Use the action \"Hibernate\"" in field_errors(project)["state"][0]
    Project.objects.filter(pk=project.pk).update(state=Project.State.HIBERNATED)
    project.state = Project.State.ACTIVE
    project.full_clean()  # no snapshot set: nothing to restore
    _snapshot_set(project, "20260101-000000", {"project-storage": "snap-0123456789abcdef0"})
    assert "Use the action \"Wake\"" in field_errors(project)["state"][0]
    stopped = project_factory(environment_factory())
    stopped.state = Project.State.HIBERNATED
    stopped.full_clean()  # Minikube: hibernation only stops the project


def test_admin_actions_hibernate_and_wake_from_a_chosen_set(admin_client, kube_store, gitops, gitops_queue):
    project = project_factory(eks_environment_factory(kube_context=kube_store.context))
    stopped = project_factory(environment_factory())
    response = admin_client.post("/admin/projects/project/", {
        "action": "hibernate_projects", "_selected_action": [project.pk, stopped.pk]}, follow=True)
    text = response.content.decode()
    run = HibernationRun.objects.get(project=project)
    assert f"hibernation run {run.pk}</a> queued" in text and "stops: its Deployments" in text
    assert gitops_queue.fetch_job(f"hibernation-{run.pk}") is not None
    project.refresh_from_db()
    stopped.refresh_from_db()
    assert (project.state, stopped.state) == (Project.State.HIBERNATING, Project.State.HIBERNATED)
    page = admin_client.get(f"/admin/projects/hibernationrun/{run.pk}/change/").content.decode()
    assert run.stamp in page and "progress" in page

    HibernationRun.objects.filter(pk=run.pk).update(status=JobRun.Status.FAILED)
    Project.objects.filter(pk=project.pk).update(state=Project.State.HIBERNATED)
    older = _snapshot_set(project, "20260101-000000", {"project-storage": "snap-0000000000000000a"})
    _snapshot_set(project, "20260102-000000", {"project-storage": "snap-0000000000000000b"})
    response = admin_client.post("/admin/projects/hibernationrun/", {
        "action": "wake_from_set", "_selected_action": [older.pk]}, follow=True)
    assert "is waking from the snapshots of 20260101-000000" in response.content.decode()
    assert [r.snapshot_handle for r in project.volume_restores.all()] == ["snap-0000000000000000a"]
    project.refresh_from_db()
    assert project.state == Project.State.ACTIVE
    page = admin_client.get(f"/admin/projects/project/{project.pk}/change/").content.decode()
    assert "snap-0000000000000000a" in page


def test_commands_hibernate_and_wake(kube_store, gitops, gitops_queue):
    from django.core.management import CommandError, call_command

    project = project_factory(eks_environment_factory(kube_context=kube_store.context))
    with pytest.raises(CommandError, match="Only a hibernated project can wake"):
        call_command("wake_project", project.slug, environment=project.environment.name)
    from io import StringIO

    out = StringIO()
    call_command("hibernate_project", project.slug, environment=project.environment.name, stdout=out)
    run = HibernationRun.objects.get(project=project)
    assert f"Hibernation run {run.pk} queued on the gitops queue." in out.getvalue()
    with pytest.raises(CommandError, match="No project 'nope'"):
        call_command("hibernate_project", "nope", environment=project.environment.name)
    HibernationRun.objects.filter(pk=run.pk).update(status=JobRun.Status.FAILED)
    Project.objects.filter(pk=project.pk).update(state=Project.State.HIBERNATED)
    chosen = _snapshot_set(project, "20260101-000000", {"project-storage": "snap-0000000000000000c"})
    call_command("wake_project", project.slug, environment=project.environment.name, set_id=chosen.pk, stdout=out)
    assert "is active again: project-storage=snap-0000000000000000c" in out.getvalue()


def test_recovery_requeues_lost_hand_overs_and_fails_hibernations_whose_worker_died(
        kube_store, gitops, gitops_queue, settings):
    import datetime

    from django.utils import timezone

    from snapshots.hibernation import REQUEUE_LIMIT, hibernations_recover

    assert any(e["func"] == "snapshots.tasks.hibernations_recover_job" for e in settings.PORTAL_SCHEDULE)
    environment = eks_environment_factory(kube_context=kube_store.context)
    lost, dead, fresh = (project_factory(environment) for _ in range(3))
    lost_run, dead_run, fresh_run = (services.project_hibernate(project=p, user=None) for p in (lost, dead, fresh))
    gitops_queue.empty()
    HibernationRun.objects.filter(pk=lost_run.pk).update(enqueue_error="Redis down")
    long_ago = timezone.now() - datetime.timedelta(seconds=300 + settings.HIBERNATION_STALE_SECONDS + 1)
    HibernationRun.objects.filter(pk=dead_run.pk).update(status=JobRun.Status.RUNNING, started_at=long_ago)
    HibernationRun.objects.filter(pk=fresh_run.pk).update(status=JobRun.Status.RUNNING, started_at=timezone.now())

    assert hibernations_recover() == {"requeued": [lost_run.pk], "failed": [dead_run.pk]}
    assert gitops_queue.fetch_job(f"hibernation-{lost_run.pk}") is not None
    dead_run.refresh_from_db()
    assert (dead_run.status, dead_run.error_kind) == (JobRun.Status.FAILED, JobRun.ErrorKind.ORPHANED)
    dead.refresh_from_db()
    assert dead.state == Project.State.ACTIVE and "worker" in dead.hibernation_error
    fresh.refresh_from_db()
    assert fresh.state == Project.State.HIBERNATING

    HibernationRun.objects.filter(pk=lost_run.pk).update(enqueue_error="Redis down", requeue_count=REQUEUE_LIMIT)
    assert hibernations_recover()["failed"] == [lost_run.pk]
    lost.refresh_from_db()
    assert lost.state == Project.State.ACTIVE and "Could not be queued" in lost.hibernation_error
    # A late worker of the failed run changes nothing: the run is no longer queued.
    assert hibernation_execute(run_id=lost_run.pk).status == JobRun.Status.FAILED


def test_the_live_view_expects_the_namespaces_of_hibernating_and_stopped_projects(kube_store):
    from clients.live import ClusterState, Namespace
    from live.checks import compare_namespaces
    from live.selectors import expectations_for

    eks = eks_environment_factory(kube_context=kube_store.context)
    hibernating = project_factory(eks)
    hibernated = project_factory(eks)
    Project.objects.filter(pk=hibernating.pk).update(state=Project.State.HIBERNATING)
    Project.objects.filter(pk=hibernated.pk).update(state=Project.State.HIBERNATED)
    minikube = environment_factory()
    stopped = project_factory(minikube)
    Project.objects.filter(pk=stopped.pk).update(state=Project.State.HIBERNATED)
    present = Namespace(name=hibernated.namespace, phase="Active", created=None, deletion_timestamp=None,
                        finalizers=(), conditions=())
    cluster = ClusterState(nodes=(), namespaces=(present,), pods=(), endpoint_slices=(), certificates=None,
                           applications=None, kustomizations=None)
    rows = {row.namespace: row for env in (eks, minikube)
            for row in compare_namespaces(expectations_for(environment=env), cluster)}
    assert rows[hibernating.namespace].verdict == "missing-in-cluster"
    assert rows[stopped.namespace].verdict == "missing-in-cluster"
    assert rows[hibernated.namespace].verdict == "not-in-model"  # its namespace should be gone
