"""EBS snapshots of the platform, read with EC2 DescribeSnapshots (plain data out, no models).

The EBS CSI driver tags every snapshot it takes with ``CSIVolumeSnapshotName`` (the VolumeSnapshotContent's
name) and ``ebs.csi.aws.com/cluster=true``, and with ``kubernetes.io/cluster/<id>=owned`` when the driver runs
with ``--k8s-tag-cluster-id``; a VolumeSnapshotClass may add more through ``tagSpecification_N`` parameters
(for example ``tesslate.io/project-id``). Source: aws-ebs-csi-driver ``docs/tagging.md``.

Errors are turned into ``AwsSourceError`` with a kind (throttled, credentials, unreachable, error) and one line
without credentials, so pages and runs can show them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from clients.aws import aws_client

PAGE_SIZE = 1000  # DescribeSnapshots allows 5..1000 per page

# Tag keys read from a snapshot (EBS CSI driver and the platform's VolumeSnapshotClass tagSpecification).
TAG_PROJECT_ID = "tesslate.io/project-id"
TAG_SNAPSHOT_CONTENT = "CSIVolumeSnapshotName"
TAG_CLUSTER_PREFIX = "kubernetes.io/cluster/"
NAMESPACE_TAGS = ("tesslate.io/volume-snapshot-namespace", "kubernetes.io/created-for/pvc/namespace")
PVC_TAGS = ("tesslate.io/pvc-name", "kubernetes.io/created-for/pvc/name")
VOLUME_SNAPSHOT_TAGS = ("tesslate.io/volume-snapshot-name", "kubernetes.io/created-for/volumesnapshot/name")

_THROTTLING = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
               "SlowDown", "RequestThrottled"}
_CREDENTIALS = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "AuthFailure", "InvalidClientTokenId",
                "UnrecognizedClientException", "SignatureDoesNotMatch", "AccessDenied", "AccessDeniedException",
                "UnauthorizedOperation", "InvalidAccessKeyId"}


class AwsSourceError(Exception):
    """An AWS call failed. ``kind``: throttled | credentials | unreachable | error; ``reason`` is one line."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def aws_error(service: str, exc: Exception) -> AwsSourceError:
    """Classify a boto3/botocore exception (ClientError codes, transport errors) into an AwsSourceError."""
    if isinstance(exc, AwsSourceError):
        return exc
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "") or "error"
        if code in _THROTTLING:
            return AwsSourceError("throttled", f"{service}: throttled by AWS ({code}) after retries")
        if code in _CREDENTIALS:
            return AwsSourceError("credentials", f"{service}: credentials refused or expired ({code})")
        return AwsSourceError("error", f"{service}: AWS answered {code}")
    if isinstance(exc, NoCredentialsError):
        return AwsSourceError("credentials", f"{service}: no AWS credentials found")
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
        return AwsSourceError("unreachable", f"{service}: endpoint unreachable ({type(exc).__name__})")
    if isinstance(exc, BotoCoreError):
        return AwsSourceError("error", f"{service}: {type(exc).__name__}")
    return AwsSourceError("error", f"{service}: {type(exc).__name__}")


@dataclass(frozen=True)
class EbsSnapshot:
    """One EBS snapshot as DescribeSnapshots reports it.

    ``state``: pending | completed | error | recoverable | recovering (EC2 ``State``); ``size_gib``: the source
    volume's size in GiB (EC2 bills snapshot storage per GB-month); ``tags``: sorted (key, value) pairs.
    """

    snapshot_id: str
    volume_id: str
    state: str
    progress: str
    size_gib: int
    start_time: datetime
    encrypted: bool
    kms_key_id: str
    description: str
    state_message: str
    tags: tuple[tuple[str, str], ...]

    def tag(self, *keys: str) -> str:
        """The value of the first of ``keys`` present, else ""."""
        tags = dict(self.tags)
        for key in keys:
            if tags.get(key):
                return tags[key]
        return ""

    @property
    def project_id(self) -> str:
        return self.tag(TAG_PROJECT_ID)

    @property
    def namespace(self) -> str:
        return self.tag(*NAMESPACE_TAGS)

    @property
    def pvc_name(self) -> str:
        return self.tag(*PVC_TAGS)

    @property
    def volume_snapshot_name(self) -> str:
        return self.tag(*VOLUME_SNAPSHOT_TAGS)

    @property
    def content_name(self) -> str:
        return self.tag(TAG_SNAPSHOT_CONTENT)

    @property
    def cluster_ids(self) -> tuple[str, ...]:
        """Clusters named by ``kubernetes.io/cluster/<id>`` tags (EBS CSI ``--k8s-tag-cluster-id``)."""
        return tuple(key[len(TAG_CLUSTER_PREFIX):] for key, _ in self.tags if key.startswith(TAG_CLUSTER_PREFIX))


def _snapshot(item: dict) -> EbsSnapshot:
    return EbsSnapshot(
        snapshot_id=item["SnapshotId"], volume_id=item.get("VolumeId", ""), state=item.get("State", ""),
        progress=item.get("Progress", ""), size_gib=int(item.get("VolumeSize") or 0), start_time=item["StartTime"],
        encrypted=bool(item.get("Encrypted")), kms_key_id=item.get("KmsKeyId", ""),
        description=item.get("Description", ""), state_message=item.get("StateMessage", ""),
        tags=tuple(sorted((tag["Key"], tag.get("Value", "")) for tag in item.get("Tags", []) or [])),
    )


def describe_snapshots(*, region: str | None, tag_keys: Iterable[str],
                       page_size: int = PAGE_SIZE) -> tuple[EbsSnapshot, ...]:
    """Every snapshot owned by this account (``OwnerIds=["self"]``) carrying any of ``tag_keys``, oldest first.

    Reads all pages through boto3's DescribeSnapshots paginator (``MaxResults`` / ``NextToken``), one listing per
    tag key (filter ``tag-key``), merged by snapshot id. EC2 ORs several values of one filter, but the local
    emulator used in tests does not; one value per listing is exact on both. Raises AwsSourceError.
    """
    found: dict[str, EbsSnapshot] = {}
    try:
        paginator = aws_client("ec2", region=region).get_paginator("describe_snapshots")
        for key in sorted(set(tag_keys)):
            pages = paginator.paginate(OwnerIds=["self"], Filters=[{"Name": "tag-key", "Values": [key]}],
                                       PaginationConfig={"PageSize": page_size})
            for page in pages:
                for item in page.get("Snapshots", []):
                    found[item["SnapshotId"]] = _snapshot(item)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one classified error
        raise aws_error("EC2 DescribeSnapshots", exc) from None
    return tuple(sorted(found.values(), key=lambda snap: (snap.start_time, snap.snapshot_id)))
