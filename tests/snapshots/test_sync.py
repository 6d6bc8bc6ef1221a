"""The inventory sync (snapshots/services.py) against moto (behind the paging proxy) and the fake API server."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from jobs.models import JobRun
from snapshots.models import Snapshot, SnapshotSource, SnapshotSyncRun
from snapshots.services import snapshot_sync, with_backoff
from tests.snapshots.conftest import ebs_snapshot

pytest_plugins = ["tests.aws", "tests.kube_store"]

pytestmark = pytest.mark.django_db


def _sync(env=None) -> SnapshotSyncRun:
    run = SnapshotSyncRun.objects.create(environment=env)
    snapshot_sync(run=run)
    run.refresh_from_db()
    return run


def test_sync_joins_aws_and_cluster_and_matches_projects(world):
    env, ids = world["env"], world["ids"]
    run = _sync(env)

    assert run.status == JobRun.Status.SUCCEEDED, run.error
    rows = {row.key: row for row in Snapshot.objects.filter(environment=env)}
    assert ids["other_cluster"] not in rows  # another cluster's snapshot in the same account
    active = rows[ids["active"]]
    assert (active.project, active.volume_name, active.volume_snapshot_name, active.snapshot_type) == (
        world["active"], "project-storage", "snap-a-1", "hibernation")
    assert active.seen_in_aws and active.seen_in_cluster and active.encrypted is True
    assert (active.state, active.size_gib, active.monthly_cost) == ("completed", 5, Decimal("0.2500"))
    assert active.volume_snapshot_content_name.startswith("snapcontent-") and active.ready_at is not None
    failed = rows[f"vs:{world['active'].namespace}/snap-a-db"]
    assert failed.state == "error" and "AccessDenied" in failed.error_message and not failed.seen_in_aws
    hibernated = rows[ids["hibernated"]]
    assert (hibernated.project, hibernated.volume_name, hibernated.monthly_cost) == (
        world["hibernated"], "project-storage", Decimal("0.5000"))
    assert rows[ids["unknown"]].project is None and rows[ids["unknown"]].encrypted is False
    assert rows[ids["deleted"]].project == world["deleted"]
    assert set(Snapshot.objects.current().orphans().values_list("key", flat=True)) == {ids["unknown"], ids["deleted"]}
    assert (run.snapshots_total, run.snapshots_new, run.orphan_count) == (5, 5, 2)
    sources = {source.kind: source for source in SnapshotSource.objects.filter(environment=env)}
    assert not sources["ebs"].failing and not sources["cluster"].failing


def test_aws_down_keeps_last_data_and_fails_the_run_visibly(world, monkeypatch):
    env, ids = world["env"], world["ids"]
    _sync(env)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    run = _sync(env)

    assert run.status == JobRun.Status.FAILED and run.error_kind == JobRun.ErrorKind.SOURCE
    assert "ebs" in run.error and "unreachable" in run.error
    assert run.attempts == 3  # AWS twice (one retry), the cluster once
    source = SnapshotSource.objects.get(environment=env, kind="ebs")
    assert source.failing and source.last_error_kind == "unreachable" and source.last_success_at is not None
    # AWS-only rows are kept as they were: the failed source cannot say they are gone.
    orphan = Snapshot.objects.get(environment=env, key=ids["unknown"])
    assert orphan.gone_at is None and orphan.seen_in_aws and orphan.encrypted is False


def test_cluster_snapshot_deleted_is_marked_gone_and_the_handle_rekeys(world):
    env, kube_store = world["env"], world["kube_store"]
    _sync(env)
    namespace = world["active"].namespace
    kube_store.delete("snapshot.storage.k8s.io/v1", "volumesnapshots", namespace, "snap-a-db")
    # A pending VolumeSnapshot gets its handle: stored first under vs:…, then under the EBS id.
    kube_store.volume_snapshot_pair(namespace=namespace, name="snap-a-2", pvc="project-storage", handle="", ready=False)
    _sync(env)
    assert Snapshot.objects.get(key=f"vs:{namespace}/snap-a-db").gone_at is not None
    pending = Snapshot.objects.get(key=f"vs:{namespace}/snap-a-2")
    assert pending.state == "pending" and pending.ready_at is None
    kube_store.delete("snapshot.storage.k8s.io/v1", "volumesnapshots", namespace, "snap-a-2")
    new_id = ebs_snapshot(tags={"tesslate.io/project-id": str(world["active"].pk)})
    kube_store.volume_snapshot_pair(namespace=namespace, name="snap-a-2", pvc="project-storage", handle=new_id)
    run = _sync(env)
    assert run.status == JobRun.Status.SUCCEEDED
    assert not Snapshot.objects.filter(key=f"vs:{namespace}/snap-a-2").exists()
    row = Snapshot.objects.get(key=new_id)
    assert row.volume_snapshot_name == "snap-a-2" and row.state == "completed" and row.project == world["active"]


def test_sync_command(world):
    call_command("sync_snapshots", "--environment", world["env"].name)
    assert SnapshotSyncRun.objects.get().status == JobRun.Status.SUCCEEDED
    with pytest.raises(CommandError, match="No environment named"):
        call_command("sync_snapshots", "--environment", "nope")
    world["kube_store"].fail_status = 401
    with pytest.raises(CommandError, match="401"):
        call_command("sync_snapshots")


def test_backoff_waits_exponentially_and_does_not_retry_credentials(settings, monkeypatch):
    from clients.ebs_snapshots import AwsSourceError

    settings.SNAPSHOT_SOURCE_RETRIES = 3
    settings.SNAPSHOT_SOURCE_BACKOFF_SECONDS = 0.5
    pauses = []
    monkeypatch.setattr("snapshots.services.time.sleep", pauses.append)
    calls = []

    def throttled():
        calls.append(1)
        raise AwsSourceError("throttled", "EC2 DescribeSnapshots: throttled")

    with pytest.raises(AwsSourceError):
        with_backoff(throttled, what="AWS")
    assert (len(calls), pauses) == (4, [0.5, 1.0, 2.0])

    calls.clear()

    def expired():
        calls.append(1)
        raise AwsSourceError("credentials", "expired")

    with pytest.raises(AwsSourceError):
        with_backoff(expired, what="AWS")
    assert len(calls) == 1


@pytest.mark.parametrize(("fault", "kind", "attempts"), [("throttle", "throttled", 3), ("expired", "credentials", 2)])
def test_throttling_is_retried_and_expired_credentials_are_not(world, fault, kind, attempts):
    world["ec2"].fault = fault
    run = _sync(world["env"])
    assert run.status == JobRun.Status.FAILED
    # Refused credentials need a person (no retry, their own kind); throttling is a source that may answer later.
    assert run.error_kind == (JobRun.ErrorKind.CREDENTIALS if kind == "credentials" else JobRun.ErrorKind.SOURCE)
    assert run.attempts == attempts  # AWS tried twice when throttled (one retry), once with expired credentials
    source = SnapshotSource.objects.get(environment=world["env"], kind="ebs")
    assert source.last_error_kind == kind and source.last_success_at is None
    # The cluster answered: its snapshots are stored even though AWS failed.
    assert Snapshot.objects.filter(environment=world["env"], seen_in_cluster=True).count() == 2


def test_snapshot_record_keeps_a_hibernation_set(db):
    from datetime import UTC, datetime

    from snapshots.services import snapshot_record
    from tests.factories import eks_environment_factory, project_factory

    project = project_factory(eks_environment_factory())
    ready = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for volume, ebs_id in (("project-storage", "snap-0123456789abcdef0"), ("svc-db-data", "snap-0123456789abcdef1")):
        snapshot_record(project=project, volume_name=volume, volume_snapshot_name=f"snap-{str(project.pk)[:8]}-x",
                        ebs_snapshot_id=ebs_id, ready_at=ready, size_gib=5)
    snapshot_record(project=project, volume_name="project-storage", volume_snapshot_name="again",
                    ebs_snapshot_id="snap-0123456789abcdef0", ready_at=ready)
    rows = list(Snapshot.objects.filter(project=project).order_by("volume_name"))
    assert [(r.volume_name, r.ebs_snapshot_id, r.state, r.ready_at) for r in rows] == [
        ("project-storage", "snap-0123456789abcdef0", "completed", ready),
        ("svc-db-data", "snap-0123456789abcdef1", "completed", ready)]
    assert rows[0].volume_snapshot_name == "again" and rows[1].monthly_cost == Decimal("0.2500")


def test_scheduled_jobs_cover_every_eks_environment(world):
    from snapshots.models import AuditReport
    from snapshots.tasks import audit_scheduled_job, snapshot_sync_scheduled_job
    from tests.factories import environment_factory

    environment_factory()  # Minikube: no VolumeSnapshots, not synced
    snapshot_sync_scheduled_job()
    run = SnapshotSyncRun.objects.get()
    assert run.environment is None and run.status == JobRun.Status.SUCCEEDED and run.snapshots_total == 5
    audit_scheduled_job()
    report = AuditReport.objects.get()
    assert report.reason == "Scheduled daily audit" and report.findings.filter(result="NON_COMPLIANT").exists()
