"""Reads about costs: the price table, an environment's settings, its estimate and its cached actuals."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Max, Min, Sum
from django.utils import timezone

from costs import estimator
from costs.models import CostActual, CostSyncRun, EnvironmentCostSettings, Price
from deployments import domain
from deployments import validators as v
from deployments.models import Environment, NodeGroup
from projects.models import Container, Project


def price_table() -> dict[str, estimator.PriceInfo]:
    """Every price by key (``Price.key``)."""
    return {p.key: estimator.PriceInfo(amount=p.amount, unit=p.unit, vcpu=p.vcpu, memory_gib=p.memory_gib)
            for p in Price.objects.all()}


def prices_as_of() -> datetime.date | None:
    """The oldest date among the prices: how current the table is."""
    return Price.objects.aggregate(oldest=Min("as_of"))["oldest"]


def cost_settings_for(*, environment: Environment) -> EnvironmentCostSettings:
    """The environment's cost settings; an unsaved row with the guide's defaults when none was saved yet."""
    try:
        return environment.cost_settings
    except EnvironmentCostSettings.DoesNotExist:
        return EnvironmentCostSettings(environment=environment)


def _gib(quantity: str) -> Decimal:
    return v.parse_quantity(quantity) / estimator.GIB


def _cores(quantity: str) -> Decimal:
    return v.parse_quantity(quantity)


def estimate_input(*, environment: Environment, today: datetime.date | None = None) -> estimator.EnvironmentInput:
    """The model of one environment as the estimator's plain input (node groups, projects and their volumes)."""
    groups = tuple(
        estimator.NodeGroupInput(
            name=g.name, capacity_type=g.capacity_type, instance_types=tuple(g.instance_type_list),
            min_size=g.min_size, desired_size=g.desired_size,
            hosts_platform=g.hosts in (NodeGroup.Hosts.PLATFORM, NodeGroup.Hosts.BOTH),
            hosts_user_projects=g.hosts_user_projects)
        for g in environment.node_groups.order_by("name"))
    # Two queries of plain rows (no model instances): the estimate reads every project of the environment.
    containers: dict[object, list[tuple[str, str, str]]] = {}
    for project_id, role, cpu_request, data_volume_size in (
            Container.objects.filter(project__environment=environment).order_by()
            .values_list("project_id", "role", "cpu_request", "data_volume_size")):
        containers.setdefault(project_id, []).append((role, cpu_request, data_volume_size))
    projects = []
    for project_id, slug, state, volume_size, last_activity_at in (
            Project.objects.filter(environment=environment).order_by("slug")
            .values_list("id", "slug", "state", "volume_size", "last_activity_at")):
        own = containers.get(project_id, ())
        volume = _gib(volume_size) + sum((_gib(size) for role, _, size in own if domain.is_service_role(role)),
                                         Decimal(0))
        cpu = estimator.FILE_MANAGER_CPU + sum((_cores(request) for _, request, _ in own), Decimal(0))
        projects.append(estimator.ProjectInput(
            id=str(project_id), slug=slug, state=state, volume_gib=volume, cpu_request=cpu,
            last_activity=last_activity_at.date() if last_activity_at else None))
    return estimator.EnvironmentInput(
        name=environment.name, kind=environment.kind, backend_replicas=environment.backend_replicas,
        backend_cpu=_cores(environment.backend_cpu_request),
        backend_memory_gib=_gib(environment.backend_memory_request),
        snapshot_retention_days=environment.snapshot_retention_days,
        max_snapshots_per_project=environment.max_snapshots_per_project,
        node_groups=groups, projects=tuple(projects), today=today or timezone.now().date())


def assumptions_for(*, environment: Environment) -> estimator.Assumptions:
    s = cost_settings_for(environment=environment)
    return estimator.Assumptions(
        availability_zones=s.availability_zones, baseline_ebs_gb=s.baseline_ebs_gb,
        baseline_volume_type=s.baseline_volume_type, s3_storage_gb=s.s3_storage_gb,
        data_transfer_out_gb=s.data_transfer_out_gb)


def environment_estimate(*, environment: Environment, today: datetime.date | None = None) -> estimator.Estimate:
    """The monthly estimate of ``environment`` from the model and the price table (USD per month)."""
    return estimator.environment_estimate(estimate_input(environment=environment, today=today), price_table(),
                                          assumptions_for(environment=environment))


# --- actuals and the report ----------------------------------------------------------------------

# The guide's baseline table (monthly USD), for the comparison next to the estimate of an EKS environment.
GUIDE_BASELINE = {"control_plane": Decimal("73"), "compute": Decimal("121"), "ebs": Decimal("10"),
                  "s3": Decimal("0.23"), "nat": Decimal("66"), "data_transfer": Decimal("50")}


@dataclass(frozen=True)
class MonthActual:
    month: datetime.date  # first day
    total: Decimal
    by_service: dict[str, Decimal]
    partial: bool  # the current month, summed from daily figures so far


@dataclass(frozen=True)
class ServiceRow:
    service: str
    estimate: Decimal | None
    last_month: Decimal | None
    month_to_date: Decimal | None


@dataclass(frozen=True)
class CostReport:
    """Everything the cost page and ``manage.py costs`` show for one environment."""

    environment: Environment
    estimate: estimator.Estimate
    months: tuple[MonthActual, ...]
    services: tuple[ServiceRow, ...]
    guide_baseline: dict[str, Decimal]
    fetched_at: datetime.datetime | None
    last_error: str
    last_error_kind: str
    last_error_at: datetime.datetime | None
    request_count: int
    prices_as_of: datetime.date | None
    now: datetime.datetime

    @property
    def has_actuals(self) -> bool:
        return bool(self.months)

    @property
    def data_age(self) -> datetime.timedelta | None:
        return self.now - self.fetched_at if self.fetched_at else None

    @property
    def top_projects(self) -> tuple[estimator.ProjectCost, ...]:
        return tuple(p for p in self.estimate.projects if p.total_usd > 0)[:10]


def environment_months(*, environment: Environment) -> list[MonthActual]:
    """Cached actuals per month, oldest first: MONTHLY rows, then the current month summed from DAILY rows."""
    months: dict[datetime.date, dict[str, Decimal]] = {}
    partial: set[datetime.date] = set()
    rows = CostActual.objects.filter(environment=environment).values_list("granularity", "period_start", "service",
                                                                          "amount")
    for granularity, start, service, amount in rows:
        key = start.replace(day=1)
        services = months.setdefault(key, {})
        services[service] = services.get(service, Decimal(0)) + amount
        if granularity == CostActual.Granularity.DAILY:
            partial.add(key)
    return [MonthActual(month, sum(by.values(), Decimal(0)), dict(sorted(by.items())), month in partial)
            for month, by in sorted(months.items())]


def environment_cost_report(*, environment: Environment, now: datetime.datetime | None = None) -> CostReport:
    """The estimate, the cached actuals by month and by service, and the state of the cache (age, last error)."""
    now = now or timezone.now()
    estimate = environment_estimate(environment=environment, today=now.date())
    months = environment_months(environment=environment)
    full = [m for m in months if not m.partial]
    last_month = full[-1].by_service if full else {}
    current = months[-1].by_service if months and months[-1].partial else {}
    estimated = estimate.by_service() if environment.kind == Environment.Kind.EKS else {}
    names = sorted(set(estimated) | set(last_month) | set(current))
    services = tuple(ServiceRow(name, estimated.get(name), last_month.get(name), current.get(name)) for name in names)
    settings_row = cost_settings_for(environment=environment)
    return CostReport(
        environment=environment, estimate=estimate, months=tuple(months), services=services,
        guide_baseline=GUIDE_BASELINE if environment.kind == Environment.Kind.EKS else {},
        fetched_at=settings_row.last_fetched_at, last_error=settings_row.last_error,
        last_error_kind=settings_row.last_error_kind, last_error_at=settings_row.last_error_at,
        request_count=settings_row.request_count, prices_as_of=prices_as_of(), now=now)


def cost_sync_runs_recent(*, limit: int = 5):
    return CostSyncRun.objects.order_by("-created_at")[:limit]


def environments_for_costs():
    return Environment.objects.order_by("name").select_related("cost_settings")


def last_month_totals() -> dict[int, Decimal]:
    """Environment id → total of its latest full cached month."""
    latest = (CostActual.objects.filter(granularity=CostActual.Granularity.MONTHLY)
              .values("environment_id").annotate(month=Max("period_start")))
    totals = {}
    for row in latest:
        totals[row["environment_id"]] = CostActual.objects.filter(
            environment_id=row["environment_id"], granularity=CostActual.Granularity.MONTHLY,
            period_start=row["month"]).aggregate(total=Sum("amount"))["total"] or Decimal(0)
    return totals
