"""Fixtures of the snapshot tests: moto behind a paging proxy, seeded EBS snapshots, a planted world.

Test modules that use them register the ``tests.aws`` and ``tests.kube_store`` plugins (``pytest_plugins``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from projects.models import Project
from tests.deployments.runfixtures import gitops, gitops_queue  # noqa: F401 - fixtures of the hibernation tests
from tests.factories import container_factory, eks_environment_factory, project_factory
from tests.snapshots.awsproxy import PagingProxy


@pytest.fixture
def ec2(aws, monkeypatch, settings):
    """boto3 pointed at a paging proxy in front of the session's moto_server; yields the proxy.

    Source retries without waiting, so fault tests stay fast (the backoff itself is tested on its own).
    """
    settings.SNAPSHOT_SOURCE_RETRIES = 1
    settings.SNAPSHOT_SOURCE_BACKOFF_SECONDS = 0.0
    with PagingProxy(aws) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        yield proxy


_clients: dict[tuple[str, str], object] = {}


def ebs_snapshot(*, tags: dict[str, str], size: int = 5, encrypted: bool = True, region: str = "us-east-1") -> str:
    """Create a volume and a snapshot of it with ``tags`` in the emulator; returns the snapshot id."""
    import os

    from clients.aws import aws_client

    cache_key = (os.environ["AWS_ENDPOINT_URL"], region)
    client = _clients.get(cache_key) or _clients.setdefault(cache_key, aws_client("ec2", region=region))
    volume = client.create_volume(AvailabilityZone=f"{region}a", Size=size, Encrypted=encrypted)
    snapshot = client.create_snapshot(VolumeId=volume["VolumeId"], TagSpecifications=[
        {"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
    return snapshot["SnapshotId"]


@pytest.fixture
def world(ec2, kube_store):
    """An EKS environment with an active project (frontend + svc-db), a hibernated and a deleted one, their
    snapshots in AWS and the cluster, and two orphans."""
    env = eks_environment_factory(kube_context=kube_store.context, eks_cluster_name="tesslate-test")
    active = project_factory(env, containers=("frontend",))
    container_factory(active, directory="db", role="database", image="postgres:16", port=5432)
    hibernated = project_factory(env, state=Project.State.HIBERNATED)
    deleted = project_factory(env, state=Project.State.DELETED)
    ids = {
        "active": ebs_snapshot(tags={"CSIVolumeSnapshotName": "snapcontent-a", "ebs.csi.aws.com/cluster": "true"}),
        "hibernated": ebs_snapshot(tags={"tesslate.io/project-id": str(hibernated.pk),
                                         "kubernetes.io/created-for/pvc/name": "project-storage"}, size=10),
        "deleted": ebs_snapshot(tags={"tesslate.io/project-id": str(deleted.pk)}, size=4),
        "unknown": ebs_snapshot(tags={"tesslate.io/project-id": "6f1b1c9e-0000-4000-8000-000000000001"}, size=2,
                                encrypted=False),
        "other_cluster": ebs_snapshot(tags={"ebs.csi.aws.com/cluster": "true",
                                            "kubernetes.io/cluster/another": "owned"}),
    }
    kube_store.volume_snapshot_pair(namespace=active.namespace, name="snap-a-1", pvc="project-storage",
                                 handle=ids["active"], labels={"tesslate.io/project-id": str(active.pk),
                                                               "snapshot-type": "hibernation"})
    kube_store.volume_snapshot_pair(namespace=active.namespace, name="snap-a-db", pvc="svc-db-data", handle="",
                                 error="Failed to check and update snapshot content: AccessDenied")
    kube_store.volume_snapshot_pair(namespace="default", name="unrelated", pvc="data", handle="snap-elsewhere")
    return {"env": env, "active": active, "hibernated": hibernated, "deleted": deleted, "ids": ids,
            "ec2": ec2, "kube_store": kube_store}


@pytest.fixture
def planted(world):
    """The world plus: a hibernated project without any snapshot, one whose svc-db-data was never snapshotted,
    a project over its retention (a 40-day-old snapshot) and over its maximum count (3 snapshots, maximum 2)."""
    env, kube_store = world["env"], world["kube_store"]
    env.max_snapshots_per_project = 2
    env.save()
    bare = project_factory(env, state=Project.State.HIBERNATED)
    partial = project_factory(env, state=Project.State.HIBERNATED)
    container_factory(partial, directory="db", role="database", image="postgres:16", port=5432)
    partial_id = ebs_snapshot(tags={"tesslate.io/project-id": str(partial.pk)})
    kube_store.volume_snapshot_pair(namespace=partial.namespace, name="snap-p-1", pvc="project-storage",
                                 handle=partial_id)
    hoarder = project_factory(env)
    old = datetime.now(UTC) - timedelta(days=40)
    for index in range(3):
        kube_store.volume_snapshot_pair(namespace=hoarder.namespace, name=f"snap-h-{index}", pvc="project-storage",
                                     handle=f"snap-0aaaaaaaaaaaaaa{index:02d}", created=old + timedelta(days=index))
    return dict(world, bare=bare, partial=partial, hoarder=hoarder)
