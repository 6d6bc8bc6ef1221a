"""Rules about snapshots, written once and used by the sync, the admin views and the audit.

Sources: DOMAIN.md "Hibernation and snapshots" (volumes of a project, retention 30 days, at most 5 snapshots per
project) and the EBS price list (snapshot storage per GB-month).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

PROJECT_NAMESPACE = re.compile(r"^proj-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
PROJECT_VOLUME = "project-storage"
STATE_PENDING, STATE_COMPLETED, STATE_ERROR = "pending", "completed", "error"
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_FACTORS = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
            "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}


def project_volume_names(service_directories: Iterable[str]) -> tuple[str, ...]:
    """Every PVC of a project: ``project-storage`` and ``svc-{dir}-data`` per service container (DOMAIN.md)."""
    return (PROJECT_VOLUME, *sorted(f"svc-{directory}-data" for directory in service_directories))


def project_id_from(*candidates: str) -> str:
    """The first candidate that is a project UUID or a ``proj-<uuid>`` namespace, as UUID text; "" if none."""
    for candidate in candidates:
        if not candidate:
            continue
        match = PROJECT_NAMESPACE.match(candidate)
        text = match.group(1) if match else candidate
        try:
            return str(uuid.UUID(text))
        except ValueError:
            continue
    return ""


def quantity_gib(quantity: str | int | None) -> int | None:
    """A Kubernetes quantity (``5Gi``, ``5368709120``) or a byte count as whole GiB, rounded up; None if unparsable."""
    if quantity is None or quantity == "":
        return None
    if isinstance(quantity, int):
        size = quantity
    else:
        match = _QUANTITY.match(str(quantity).strip())
        if not match:
            return None
        size = float(match.group(1)) * _FACTORS[match.group(2)]
    return int(math.ceil(size / 2**30))


def snapshot_state(*, ebs_state: str, seen_in_aws: bool, ready_to_use: bool | None, cluster_error: str,
                   seen_in_cluster: bool) -> str:
    """pending | completed | error from both views: an error in either wins; AWS decides completion when it
    reported the snapshot, else the cluster's ``readyToUse``."""
    if (seen_in_aws and ebs_state == "error") or (seen_in_cluster and cluster_error):
        return STATE_ERROR
    if seen_in_aws and ebs_state:
        return STATE_COMPLETED if ebs_state in ("completed", "recoverable", "recovering") else STATE_PENDING
    return STATE_COMPLETED if seen_in_cluster and ready_to_use else STATE_PENDING


def monthly_cost(size_gib: int | None, price_per_gb_month: Decimal) -> Decimal:
    """Snapshot storage per month in USD: size × price (an upper bound; EBS bills changed blocks only)."""
    return (Decimal(size_gib or 0) * price_per_gb_month).quantize(Decimal("0.0001"))


class Dated(Protocol):
    started_at: datetime | None


def over_retention(snapshots: Sequence[Dated], *, retention_days: int, max_count: int,
                   now: datetime) -> tuple[list[int], list[int]]:
    """Indexes (into ``snapshots``) of those past retention and of those beyond the maximum count.

    Past retention: started more than ``retention_days`` ago (``Environment.snapshot_retention_days``). Beyond the
    maximum: all but the newest ``max_count`` (``Environment.max_snapshots_per_project``); undated ones count as
    oldest. Returns (too_old, too_many), each sorted by index.
    """
    cutoff = now - timedelta(days=retention_days)
    too_old = [i for i, snap in enumerate(snapshots) if snap.started_at is not None and snap.started_at < cutoff]
    order = sorted(range(len(snapshots)), key=lambda i: (snapshots[i].started_at is not None,
                                                         snapshots[i].started_at or now), reverse=True)
    too_many = sorted(order[max_count:])
    return too_old, too_many
