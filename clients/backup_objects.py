"""S3 reads and writes of the backup audit: the newest database backup under a prefix, report uploads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from clients.aws import aws_client
from clients.ebs_snapshots import aws_error


@dataclass(frozen=True)
class S3ObjectInfo:
    """One S3 object: key, ``last_modified`` (UTC), ``size`` in bytes."""

    bucket: str
    key: str
    last_modified: datetime
    size: int


def newest_object(*, bucket: str, prefix: str, region: str | None = None) -> S3ObjectInfo | None:
    """The most recently modified object under ``prefix`` in ``bucket`` (ListObjectsV2, every page; equal times: the
    greater key); None when the prefix is empty. Raises clients.ebs_snapshots.AwsSourceError."""
    newest = None
    try:
        paginator = aws_client("s3", region=region).get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []) or []:
                # Ties (S3 times have one-second resolution) go to the greater key: backup names carry their time.
                if newest is None or (item["LastModified"], item["Key"]) > (newest["LastModified"], newest["Key"]):
                    newest = item
    except Exception as exc:  # noqa: BLE001 - classified below
        raise aws_error("S3 ListObjectsV2", exc) from None
    if newest is None:
        return None
    return S3ObjectInfo(bucket=bucket, key=newest["Key"], last_modified=newest["LastModified"],
                        size=int(newest.get("Size") or 0))


def put_object(*, bucket: str, key: str, body: bytes, content_type: str, region: str | None = None) -> None:
    """Upload ``body`` to ``s3://bucket/key`` (server-side encrypted, SSE-S3). Raises AwsSourceError."""
    try:
        aws_client("s3", region=region).put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type,
                                                   ServerSideEncryption="AES256")
    except Exception as exc:  # noqa: BLE001 - classified below
        raise aws_error("S3 PutObject", exc) from None
