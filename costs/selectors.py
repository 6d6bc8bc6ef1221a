"""Reads about costs: the price table, an environment's settings, its estimate and its cached actuals."""

from __future__ import annotations

import datetime
from decimal import Decimal

from django.db.models import Min
from django.utils import timezone

from costs import estimator
from costs.models import EnvironmentCostSettings, Price
from deployments import validators as v
from deployments.models import Environment, NodeGroup
from projects.models import Project


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
    projects = []
    for project in Project.objects.filter(environment=environment).prefetch_related("containers").order_by("slug"):
        containers = list(project.containers.all())
        volume = _gib(project.volume_size) + sum((_gib(c.data_volume_size) for c in containers if c.is_service),
                                                 Decimal(0))
        cpu = estimator.FILE_MANAGER_CPU + sum((_cores(c.cpu_request) for c in containers), Decimal(0))
        projects.append(estimator.ProjectInput(
            id=str(project.id), slug=project.slug, state=project.state, volume_gib=volume, cpu_request=cpu,
            last_activity=project.last_activity_at.date() if project.last_activity_at else None))
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
