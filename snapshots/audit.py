"""The backup audit's controls, evaluated on plain data (no ORM, no I/O, no clock): inputs in, findings out.

In the spirit of AWS Backup Audit Manager: each control gives every resource it covers one result, COMPLIANT,
NON_COMPLIANT or UNKNOWN. UNKNOWN whenever the data a result depends on is missing, failed or too old — missing
data never passes. Controls and their sources:

- ``hibernated-project-snapshots`` (project): a hibernated project has a completed snapshot of every volume,
  ``project-storage`` and each ``svc-{dir}-data`` (DOMAIN.md "Hibernation and snapshots": snapshot every PVC).
- ``active-project-snapshot-age`` (project): an active project of an EKS environment has a completed snapshot
  younger than ``max_snapshot_age``.
- ``snapshot-retention`` / ``snapshot-max-count`` (project): none older than the environment's
  ``snapshot_retention_days``, at most ``max_snapshots_per_project`` (DOMAIN.md: 30 days, 5 — the Timeline).
- ``orphan-snapshots`` (environment + each orphan): snapshots of no project or a deleted one, with their cost.
- ``snapshot-errors`` (environment + each), ``snapshot-encryption`` (environment + each unencrypted one).
- ``database-backup-recent`` and ``gitops-remote-in-sync`` (portal) are checked by the service and passed in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from snapshots import rules
from snapshots.selectors import AuditInputs, EnvironmentFacts, SnapshotFacts

COMPLIANT, NON_COMPLIANT, UNKNOWN = "COMPLIANT", "NON_COMPLIANT", "UNKNOWN"

CONTROLS = {
    "hibernated-project-snapshots": "Every hibernated project has a completed snapshot of every volume",
    "active-project-snapshot-age": "Every active EKS project has a recent completed snapshot",
    "snapshot-retention": "No snapshot older than the environment's retention",
    "snapshot-max-count": "No project keeps more snapshots than the environment's maximum",
    "orphan-snapshots": "No snapshot without a live project",
    "snapshot-errors": "No snapshot in error",
    "snapshot-encryption": "Every EBS snapshot is encrypted",
    "database-backup-recent": "The portal's database backup is recent",
    "gitops-remote-in-sync": "The GitOps remote is reachable and at the commit the portal pushed",
}
SOURCE_NAMES = {"ebs": "AWS EBS", "cluster": "cluster"}


@dataclass(frozen=True)
class Finding:
    """One control's result for one resource. ``project_id``: UUID text or ""; ``monthly_cost`` in USD."""

    control: str
    scope: str  # portal | environment | project | snapshot
    environment_name: str
    project_id: str
    resource: str
    result: str
    detail: str
    monthly_cost: Decimal | None = None


def _money(value: Decimal) -> str:
    return f"${value:,.2f}"


def source_problems(inputs: AuditInputs, *, now: datetime, max_data_age: timedelta) -> dict[int, str]:
    """Per environment id, why its inventory cannot be trusted ("" when both sources answered recently)."""
    by_env: dict[int, dict[str, object]] = defaultdict(dict)
    for source in inputs.sources:
        by_env[source.environment_id][source.kind] = source
    problems = {}
    for env in inputs.environments:
        if not env.supports_snapshots:
            continue
        reasons = []
        for kind in ("ebs", "cluster"):
            source = by_env[env.id].get(kind)
            name = SOURCE_NAMES[kind]
            if source is not None and source.last_error:
                age = (f"last data {_age(now - source.last_success_at)} old" if source.last_success_at
                       else "no data yet")
                reasons.append(f"{name}: {source.last_error} ({age})")
            elif source is None or source.last_success_at is None:
                reasons.append(f"{name}: never synced")
            elif now - source.last_success_at > max_data_age:
                reasons.append(f"{name}: last data {_age(now - source.last_success_at)} old")
        problems[env.id] = "; ".join(reasons)
    return problems


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.0f} days"


def evaluate(inputs: AuditInputs, *, now: datetime, max_snapshot_age: timedelta, max_data_age: timedelta,
             portal_findings: Iterable[Finding] = ()) -> list[Finding]:
    """Every control over ``inputs``; ``portal_findings`` (database backup, GitOps remote) are appended as given."""
    findings: list[Finding] = list(portal_findings)
    problems = source_problems(inputs, now=now, max_data_age=max_data_age)
    envs = {env.id: env for env in inputs.environments}
    by_project: dict[str, list[SnapshotFacts]] = defaultdict(list)
    by_env: dict[int, list[SnapshotFacts]] = defaultdict(list)
    for snap in inputs.snapshots:
        by_env[snap.environment_id].append(snap)
        if snap.project_id:
            by_project[snap.project_id].append(snap)
    for snaps in by_project.values():
        snaps.sort(key=lambda s: (s.started_at is None, s.started_at or now, s.key))

    for project in inputs.projects:
        env = envs[project.environment_id]
        if not env.supports_snapshots or project.state == "deleted":
            continue
        problem = problems.get(env.id, "")
        snaps = by_project.get(project.id, [])

        def add(control: str, result: str, detail: str, _project=project, _env=env) -> None:
            findings.append(Finding(control=control, scope="project", environment_name=_env.name,
                                    project_id=_project.id, resource=_project.slug, result=result, detail=detail))

        if project.state == "hibernated":
            if problem:
                add("hibernated-project-snapshots", UNKNOWN, problem)
            else:
                done = {s.volume_name for s in snaps if s.state == rules.STATE_COMPLETED}
                missing = [volume for volume in project.volumes if volume not in done]
                add("hibernated-project-snapshots", NON_COMPLIANT if missing else COMPLIANT,
                    f"no completed snapshot of {', '.join(missing)}" if missing else
                    f"{len(project.volumes)} volume(s) snapshotted")
        elif project.state == "active":
            if problem:
                add("active-project-snapshot-age", UNKNOWN, problem)
            else:
                completed = [s.started_at for s in snaps if s.state == rules.STATE_COMPLETED and s.started_at]
                newest = max(completed, default=None)
                if newest is None:
                    add("active-project-snapshot-age", NON_COMPLIANT, "no completed snapshot")
                elif now - newest > max_snapshot_age:
                    add("active-project-snapshot-age", NON_COMPLIANT,
                        f"newest completed snapshot is {_age(now - newest)} old (limit {_age(max_snapshot_age)})")
                else:
                    add("active-project-snapshot-age", COMPLIANT, f"newest completed snapshot {_age(now - newest)} old")
        if problem:
            add("snapshot-retention", UNKNOWN, problem)
            add("snapshot-max-count", UNKNOWN, problem)
            continue
        too_old, too_many = rules.over_retention(snaps, retention_days=env.retention_days,
                                                 max_count=env.max_per_project, now=now)
        add("snapshot-retention", NON_COMPLIANT if too_old else COMPLIANT,
            f"{len(too_old)} snapshot(s) older than {env.retention_days} days: "
            f"{', '.join(snaps[i].key for i in too_old[:10])}" if too_old else
            f"{len(snaps)} snapshot(s) within {env.retention_days} days")
        add("snapshot-max-count", NON_COMPLIANT if too_many else COMPLIANT,
            f"{len(snaps)} snapshots, maximum {env.max_per_project}")

    for env in inputs.environments:
        if env.supports_snapshots:
            findings += _environment_findings(env, by_env.get(env.id, []), problems.get(env.id, ""))
    return findings


def _environment_findings(env: EnvironmentFacts, snaps: list[SnapshotFacts], problem: str) -> list[Finding]:
    out: list[Finding] = []

    def env_row(control: str, result: str, detail: str, cost: Decimal | None = None) -> None:
        out.append(Finding(control=control, scope="environment", environment_name=env.name, project_id="",
                           resource=env.name, result=result, detail=detail, monthly_cost=cost))

    def snap_row(control: str, snap: SnapshotFacts, detail: str, cost: Decimal | None = None) -> None:
        out.append(Finding(control=control, scope="snapshot", environment_name=env.name, project_id=snap.project_id,
                           resource=snap.key, result=NON_COMPLIANT, detail=detail, monthly_cost=cost))

    if problem:
        for control in ("orphan-snapshots", "snapshot-errors", "snapshot-encryption"):
            env_row(control, UNKNOWN, problem)
        return out
    orphans = [s for s in snaps if not s.project_id or s.project_state == "deleted"]
    cost = sum((Decimal(s.monthly_cost) for s in orphans), Decimal("0"))
    env_row("orphan-snapshots", NON_COMPLIANT if orphans else COMPLIANT,
            f"{len(orphans)} orphan snapshot(s) costing {_money(cost)} a month" if orphans else "no orphan snapshot",
            cost)
    for snap in orphans:
        snap_row("orphan-snapshots", snap, "project deleted" if snap.project_id else "no project matches",
                 Decimal(snap.monthly_cost))
    errors = [s for s in snaps if s.state == rules.STATE_ERROR]
    env_row("snapshot-errors", NON_COMPLIANT if errors else COMPLIANT, f"{len(errors)} snapshot(s) in error")
    for snap in errors:
        snap_row("snapshot-errors", snap, snap.error_message[:500] or "error")
    unencrypted = [s for s in snaps if s.seen_in_aws and s.encrypted is False]
    env_row("snapshot-encryption", NON_COMPLIANT if unencrypted else COMPLIANT,
            f"{len(unencrypted)} unencrypted EBS snapshot(s)")
    for snap in unencrypted:
        snap_row("snapshot-encryption", snap, "EBS snapshot not encrypted")
    return out
