"""Reads of the snapshots app: the audit's inputs in a fixed number of queries, and what the admin pages show."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from deployments.models import Environment
from projects.models import Container, Project
from snapshots import rules
from snapshots.models import AuditReport, Snapshot, SnapshotSource


@dataclass(frozen=True)
class EnvironmentFacts:
    id: int
    name: str
    supports_snapshots: bool
    retention_days: int
    max_per_project: int


@dataclass(frozen=True)
class ProjectFacts:
    id: str
    environment_id: int
    slug: str
    state: str
    volumes: tuple[str, ...]  # every PVC: project-storage + svc-{dir}-data


@dataclass(frozen=True)
class SnapshotFacts:
    key: str
    environment_id: int
    project_id: str  # "" when no project matched
    project_state: str  # "" when no project matched
    volume_name: str
    state: str
    started_at: datetime | None
    encrypted: bool | None
    seen_in_aws: bool
    monthly_cost: object  # Decimal
    error_message: str


@dataclass(frozen=True)
class SourceFacts:
    environment_id: int
    kind: str
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str


@dataclass(frozen=True)
class AuditInputs:
    environments: tuple[EnvironmentFacts, ...]
    projects: tuple[ProjectFacts, ...]
    snapshots: tuple[SnapshotFacts, ...]
    sources: tuple[SourceFacts, ...]


def audit_inputs() -> AuditInputs:
    """Everything the audit evaluates, read in five queries whatever the number of projects and snapshots."""
    environments = tuple(
        EnvironmentFacts(id=pk, name=name, supports_snapshots=(kind == Environment.Kind.EKS and prov == "ebs-gp3"),
                         retention_days=days, max_per_project=most)
        for pk, name, kind, prov, days, most in Environment.objects.order_by("name").values_list(
            "id", "name", "kind", "storage_provisioner", "snapshot_retention_days", "max_snapshots_per_project"))
    services: dict[str, list[str]] = defaultdict(list)
    for project_id, directory in Container.objects.filter(role__in=Container.SERVICE_ROLES).values_list(
            "project_id", "directory"):
        services[str(project_id)].append(directory)
    projects = tuple(
        ProjectFacts(id=str(pk), environment_id=env_id, slug=slug, state=state,
                     volumes=rules.project_volume_names(services.get(str(pk), ())))
        for pk, env_id, slug, state in Project.objects.order_by("environment_id", "slug").values_list(
            "id", "environment_id", "slug", "state"))
    snapshots = tuple(
        SnapshotFacts(key=key, environment_id=env_id, project_id=str(project_id) if project_id else "",
                      project_state=project_state or "", volume_name=volume, state=state, started_at=started,
                      encrypted=encrypted, seen_in_aws=in_aws, monthly_cost=cost,
                      error_message=cluster_error or (ebs_message if ebs_state == "error" else ""))
        for key, env_id, project_id, project_state, volume, state, started, encrypted, in_aws, cost, cluster_error,
        ebs_state, ebs_message in Snapshot.objects.current().order_by("environment_id", "key").values_list(
            "key", "environment_id", "project_id", "project__state", "volume_name", "state", "started_at",
            "encrypted", "seen_in_aws", "monthly_cost", "cluster_error", "ebs_state", "ebs_state_message"))
    sources = tuple(SourceFacts(environment_id=env_id, kind=kind, last_success_at=ok, last_attempt_at=tried,
                                last_error=error)
                    for env_id, kind, ok, tried, error in SnapshotSource.objects.values_list(
                        "environment_id", "kind", "last_success_at", "last_attempt_at", "last_error"))
    return AuditInputs(environments=environments, projects=projects, snapshots=snapshots, sources=sources)


def sources_for_environment(environment: Environment) -> list[SnapshotSource]:
    """Both data sources of an environment (unsaved placeholders for those never attempted)."""
    found = {source.kind: source for source in SnapshotSource.objects.filter(environment=environment)}
    return [found.get(kind) or SnapshotSource(environment=environment, kind=kind) for kind in SnapshotSource.Kind]


def project_snapshots(project: Project) -> list[Snapshot]:
    """A project's current snapshots, oldest first."""
    return list(Snapshot.objects.current().filter(project=project).order_by("started_at", "key"))


def environment_snapshots(environment: Environment) -> QuerySet[Snapshot]:
    return Snapshot.objects.current().filter(environment=environment).select_related("project")


def orphan_snapshots(environment: Environment | None = None) -> QuerySet[Snapshot]:
    """Snapshots with no project or a deleted one, largest monthly cost first."""
    queryset = Snapshot.objects.current().orphans().select_related("environment", "project")
    if environment is not None:
        queryset = queryset.filter(environment=environment)
    return queryset.order_by("-monthly_cost", "key")


@dataclass(frozen=True)
class OverRetention:
    snapshot: Snapshot
    too_old: bool
    beyond_count: bool


def over_retention_snapshots(*, now: datetime, environment: Environment | None = None) -> list[OverRetention]:
    """Snapshots older than their environment's retention, or beyond its maximum per project (rules.over_retention)."""
    queryset = Snapshot.objects.current().filter(project__isnull=False).select_related("environment", "project")
    if environment is not None:
        queryset = queryset.filter(environment=environment)
    by_project: dict[object, list[Snapshot]] = defaultdict(list)
    for snapshot in queryset.order_by("project_id", "started_at", "key"):
        by_project[snapshot.project_id].append(snapshot)
    found = []
    for snapshots in by_project.values():
        env = snapshots[0].environment
        too_old, too_many = rules.over_retention(snapshots, retention_days=env.snapshot_retention_days,
                                                 max_count=env.max_snapshots_per_project, now=now)
        old_set, many_set = set(too_old), set(too_many)
        found += [OverRetention(snapshot=snap, too_old=i in old_set, beyond_count=i in many_set)
                  for i, snap in enumerate(snapshots) if i in old_set or i in many_set]
    return found


def audit_trend(*, limit: int = 30) -> list[AuditReport]:
    """The newest ``limit`` finished reports, oldest first (for the compliance trend chart)."""
    reports = AuditReport.objects.filter(evaluated_at__isnull=False).order_by("-evaluated_at")[:limit]
    return list(reversed(reports))
