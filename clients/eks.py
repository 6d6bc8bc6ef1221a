"""Amazon EKS reads: the managed node groups of a cluster as AWS configured them (plain data, no models).

The live view compares them with the portal's node groups: scaling (min / desired / max), instance types, capacity
type, disk size, labels and taints. Errors become ``EksError`` with a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from clients.aws import aws_client

# EKS API taint effects → Kubernetes taint effects.
TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}


class EksError(Exception):
    """An EKS call failed; ``reason`` is one line without credentials."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class EksNodeGroup:
    name: str
    status: str  # ACTIVE, CREATING, DEGRADED, …
    capacity_type: str  # ON_DEMAND | SPOT
    instance_types: tuple[str, ...]
    min_size: int
    desired_size: int
    max_size: int
    disk_size: int | None
    labels: tuple[tuple[str, str], ...]
    taints: tuple[tuple[str, str, str], ...]  # (key, value, Kubernetes effect)


def cluster_node_groups(*, cluster_name: str, region: str) -> tuple[EksNodeGroup, ...]:
    """Every managed node group of ``cluster_name`` (ListNodegroups, every page, then DescribeNodegroup each).

    Raises EksError.
    """
    try:
        eks = aws_client("eks", region=region)
        names: list[str] = []
        for page in eks.get_paginator("list_nodegroups").paginate(clusterName=cluster_name):
            names.extend(page.get("nodegroups", []))
        groups = []
        for name in sorted(names):
            ng = eks.describe_nodegroup(clusterName=cluster_name, nodegroupName=name)["nodegroup"]
            scaling = ng.get("scalingConfig") or {}
            groups.append(EksNodeGroup(
                name=name, status=ng.get("status", ""), capacity_type=ng.get("capacityType", "ON_DEMAND"),
                instance_types=tuple(ng.get("instanceTypes") or ()), min_size=int(scaling.get("minSize", 0)),
                desired_size=int(scaling.get("desiredSize", 0)), max_size=int(scaling.get("maxSize", 0)),
                disk_size=ng.get("diskSize"), labels=tuple(sorted((ng.get("labels") or {}).items())),
                taints=tuple((t.get("key", ""), t.get("value", "") or "", TAINT_EFFECTS.get(t.get("effect", ""),
                                                                                         t.get("effect", "")))
                             for t in ng.get("taints") or ())))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = " ".join((error.get("Message") or "").split())[:200]  # one line, short (some answers are HTML)
        raise EksError(f"EKS answered {error.get('Code', 'an error')}: {message}".strip()) from None
    except BotoCoreError as exc:
        raise EksError(f"EKS cannot be reached ({type(exc).__name__}).") from None
    return tuple(groups)
