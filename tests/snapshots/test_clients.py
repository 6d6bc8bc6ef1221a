"""clients/ebs_snapshots.py, clients/volume_snapshots.py and clients/backup_objects.py against real servers."""

from __future__ import annotations

import pytest

from clients.backup_objects import newest_object, put_object
from clients.ebs_snapshots import AwsSourceError, describe_snapshots
from clients.kubernetes import ClusterError
from clients.volume_snapshots import list_volume_snapshots
from tests.snapshots.conftest import ebs_snapshot

pytest_plugins = ["tests.aws", "tests.kube_store"]

PROJECT = "0b6f1c3e-1111-4a2b-8c3d-123456789abc"
KEYS = ["ebs.csi.aws.com/cluster", "CSIVolumeSnapshotName", "tesslate.io/project-id"]


def test_describe_snapshots_reads_every_page_and_keeps_only_tagged(ec2):
    tagged = {ebs_snapshot(tags={"tesslate.io/project-id": PROJECT, "kubernetes.io/created-for/pvc/name":
                                 "project-storage"}) for _ in range(7)}
    tagged.add(ebs_snapshot(tags={"CSIVolumeSnapshotName": "snapcontent-1", "ebs.csi.aws.com/cluster": "true"},
                            encrypted=False, size=8))
    ebs_snapshot(tags={"Name": "someone else's backup"})

    found = describe_snapshots(region="us-east-1", tag_keys=KEYS, page_size=5)

    assert {snap.snapshot_id for snap in found} == tagged
    project_pages = [call for call in ec2.describe_calls if call["Filter.1.Value.1"] == "tesslate.io/project-id"]
    assert len(project_pages) == 2, "7 snapshots at 5 a page need two DescribeSnapshots calls"
    assert project_pages[1]["NextToken"] == "5" and project_pages[0]["MaxResults"] == "5"
    assert all(call["Owner.1"] == "self" for call in ec2.describe_calls)
    by_id = {snap.snapshot_id: snap for snap in found}
    plain = next(snap for snap in found if snap.content_name == "snapcontent-1")
    assert (plain.size_gib, plain.encrypted, plain.state) == (8, False, "completed")
    some = by_id[sorted(tagged - {plain.snapshot_id})[0]]
    assert (some.project_id, some.pvc_name, some.encrypted, some.size_gib) == (PROJECT, "project-storage", True, 5)


@pytest.mark.parametrize(("fault", "kind"), [("throttle", "throttled"), ("expired", "credentials")])
def test_describe_snapshots_classifies_aws_faults(ec2, fault, kind):
    ec2.fault = fault
    with pytest.raises(AwsSourceError) as excinfo:
        describe_snapshots(region="us-east-1", tag_keys=KEYS)
    assert excinfo.value.kind == kind
    assert "testing" not in str(excinfo.value)  # never the access key


def test_describe_snapshots_unreachable_endpoint(aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(AwsSourceError) as excinfo:
        describe_snapshots(region="us-east-1", tag_keys=KEYS)
    assert excinfo.value.kind == "unreachable"


def test_list_volume_snapshots_joins_contents_across_pages(kube_store, monkeypatch):
    monkeypatch.setattr("clients.volume_snapshots.PAGE_SIZE", 2)
    for index in range(3):
        kube_store.volume_snapshot_pair(namespace=f"proj-{PROJECT}", name=f"snap-0b6f1c3e-2026010{index}-000000",
                                     pvc="project-storage", handle=f"snap-0000000000000000{index}",
                                     labels={"tesslate.io/project-id": PROJECT, "snapshot-type": "hibernation"})
    kube_store.volume_snapshot_pair(namespace=f"proj-{PROJECT}", name="snap-broken", pvc="svc-db-data", handle="",
                                 error="Failed to create snapshot: UnauthorizedOperation")

    found = list_volume_snapshots(context=kube_store.context)

    assert [snap.name for snap in found.snapshots][:3] == [f"snap-0b6f1c3e-2026010{i}-000000" for i in range(3)]
    first = found.snapshots[0]
    assert (first.snapshot_handle, first.ready_to_use, first.project_id, first.pvc_name, first.snapshot_type) == (
        "snap-00000000000000000", True, PROJECT, "project-storage", "hibernation")
    assert first.content.restore_size_bytes == 5 * 2**30 and first.content.deletion_policy == "Retain"
    broken = found.snapshots[3]
    assert broken.ready_to_use is False and "UnauthorizedOperation" in broken.error_message
    assert broken.snapshot_handle == ""
    assert found.unbound_contents == ()
    for plural in ("volumesnapshots", "volumesnapshotcontents"):
        pages = [path for method, path in kube_store.requests if path.endswith(f"/{plural}")]
        assert len(pages) == 2, f"4 {plural} at 2 a page take two requests"


def test_list_volume_snapshots_ready_after_delay(kube_store):
    kube_store.volume_snapshot_pair(namespace="proj-x", name="snap-late", pvc="project-storage", handle="snap-1",
                                 ready_after=0.3)
    assert list_volume_snapshots(context=kube_store.context).snapshots[0].ready_to_use is False
    import time

    time.sleep(0.35)
    assert list_volume_snapshots(context=kube_store.context).snapshots[0].ready_to_use is True


def test_list_volume_snapshots_errors(kube_store):
    kube_store.fail_status = 403
    with pytest.raises(ClusterError) as excinfo:
        list_volume_snapshots(context=kube_store.context)
    assert excinfo.value.status == 403
    kube_store.fail_status = None
    with pytest.raises(ClusterError) as excinfo:
        list_volume_snapshots(context=kube_store.unreachable_context)
    assert excinfo.value.status is None and "unreachable" in str(excinfo.value)


def test_newest_object_and_put(aws):
    from clients.aws import aws_client

    s3 = aws_client("s3", region="us-east-1")
    s3.create_bucket(Bucket="backups")
    assert newest_object(bucket="backups", prefix="db/") is None
    put_object(bucket="backups", key="db/2026-01-01.sql.gz", body=b"one", content_type="application/gzip")
    put_object(bucket="backups", key="db/2026-01-02.sql.gz", body=b"two!", content_type="application/gzip")
    put_object(bucket="backups", key="other/x", body=b"x", content_type="text/plain")
    newest = newest_object(bucket="backups", prefix="db/")
    assert newest.key == "db/2026-01-02.sql.gz" and newest.size == 4
    with pytest.raises(AwsSourceError):
        newest_object(bucket="no-such-bucket", prefix="")
