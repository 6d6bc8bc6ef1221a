"""Fixtures of the snapshot tests: moto behind a paging proxy, the fake Kubernetes API, seeded EBS snapshots."""

from __future__ import annotations

import pytest

from tests.snapshots.awsproxy import PagingProxy

pytest_plugins = ["tests.aws", "tests.kubeapi"]


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
