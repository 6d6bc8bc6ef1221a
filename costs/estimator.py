"""The monthly cost estimate of an environment, computed from the portal's model and the price table.

Pure: plain inputs (prices, assumptions, node groups, projects as dataclasses) in, an ``Estimate`` out; no
database, no clock. ``costs.selectors.environment_estimate`` loads the inputs.

Rules (operator guide, "AWS Cost Estimation" and "Cost optimization tips"; DOMAIN.md "Nodes and cost"):
- a month is 730 hours; the EKS control plane is billed per cluster-hour;
- a node group costs desired size × hourly price of its first instance type × 730 h; SPOT groups get the
  ``spot.discount`` fraction off the on-demand price;
- EBS: the baseline assumption (node root disks, platform volumes) at its volume type, plus every active project's
  volume (``volume_size``) and service containers' data volumes (``data_volume_size``) at gp3 (the StorageClass
  ``tesslate-block-storage`` is gp3); sizes are Kubernetes quantities, billed per GiB;
- snapshots: every project that is not deleted keeps one snapshot of each of its volumes (hibernation snapshots
  every volume, VolumeSnapshotClass retains them; EBS snapshots are incremental, so later ones add little);
- NAT gateways: one per availability zone, per hour; S3 Standard and data transfer out from the assumptions;
- Docker Compose: the flat server price; Minikube: free.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

HOURS_PER_MONTH = Decimal("730")
GIB = Decimal(2**30)
CENT = Decimal("0.01")
# Share of a node's vCPU and memory that pods can request (kubelet reserve, system DaemonSets).
ALLOCATABLE_FRACTION = Decimal("0.85")
# The file-manager Deployment every project runs (DOMAIN.md: requests 256Mi / 50m).
FILE_MANAGER_CPU = Decimal("0.05")

# Cost Explorer SERVICE names the estimate lines compare with.
SERVICE_EKS = "Amazon Elastic Container Service for Kubernetes"
SERVICE_EC2 = "Amazon Elastic Compute Cloud - Compute"
SERVICE_EC2_OTHER = "EC2 - Other"  # EBS volumes, snapshots, NAT gateway hours
SERVICE_S3 = "Amazon Simple Storage Service"
SERVICE_DATA_TRANSFER = "AWS Data Transfer"

# The guide's baseline table, in its order: category → label.
CATEGORIES = {
    "control_plane": "EKS cluster (control plane)",
    "compute": "EC2 nodes",
    "ebs": "EBS volumes and snapshots",
    "s3": "S3 storage",
    "nat": "NAT gateway",
    "data_transfer": "Data transfer",
    "compose": "Docker Compose server",
    "local": "Minikube (local)",
}


class EstimateError(Exception):
    """The estimate cannot be made (a price the model needs is missing from the table)."""


@dataclass(frozen=True)
class PriceInfo:
    amount: Decimal
    unit: str
    vcpu: int | None = None
    memory_gib: Decimal | None = None


@dataclass(frozen=True)
class Assumptions:
    """What the model does not size; defaults are the guide's baseline (EnvironmentCostSettings)."""

    availability_zones: int = 2
    baseline_ebs_gb: int = 100
    baseline_volume_type: str = "gp3"
    s3_storage_gb: int = 10
    data_transfer_out_gb: int = 556


@dataclass(frozen=True)
class NodeGroupInput:
    name: str
    capacity_type: str  # ON_DEMAND | SPOT
    instance_types: tuple[str, ...]
    min_size: int
    desired_size: int
    hosts_platform: bool
    hosts_user_projects: bool


@dataclass(frozen=True)
class ProjectInput:
    id: str
    slug: str
    state: str  # active | hibernating | hibernated | deleted
    volume_gib: Decimal  # project-storage plus every svc-*-data volume
    cpu_request: Decimal  # cores: containers plus the file-manager
    last_activity: date | None = None


@dataclass(frozen=True)
class EnvironmentInput:
    name: str
    kind: str  # eks | compose | minikube
    backend_replicas: int = 1
    backend_cpu: Decimal = Decimal("0.5")
    backend_memory_gib: Decimal = Decimal("1")
    snapshot_retention_days: int = 30
    max_snapshots_per_project: int = 5
    node_groups: tuple[NodeGroupInput, ...] = ()
    projects: tuple[ProjectInput, ...] = ()
    today: date | None = None  # reference date for ages (the estimator reads no clock)


@dataclass(frozen=True)
class EstimateLine:
    """One priced item: ``quantity`` × ``unit_price`` = ``monthly_usd`` (USD per month)."""

    category: str
    aws_service: str
    item: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    monthly_usd: Decimal
    price_key: str


@dataclass(frozen=True)
class ProjectCost:
    project_id: str
    slug: str
    state: str
    volume_gib: Decimal
    volume_usd: Decimal
    snapshot_gib: Decimal
    snapshot_usd: Decimal
    spot_compute_usd: Decimal

    @property
    def total_usd(self) -> Decimal:
        return self.volume_usd + self.snapshot_usd + self.spot_compute_usd


@dataclass(frozen=True)
class Finding:
    """A cost tip of the guide that applies, with the monthly saving it would bring (0 when not priced)."""

    kind: str  # spot_savings | idle_on_demand | snapshot_lifecycle | gp2_to_gp3
    title: str
    detail: str
    monthly_savings_usd: Decimal = Decimal("0")


@dataclass(frozen=True)
class Estimate:
    environment: str
    kind: str
    lines: tuple[EstimateLine, ...]
    projects: tuple[ProjectCost, ...] = ()
    findings: tuple[Finding, ...] = ()
    spot_savings_usd: Decimal = Decimal("0")
    missing_prices: tuple[str, ...] = ()

    @property
    def total_usd(self) -> Decimal:
        return sum((line.monthly_usd for line in self.lines), Decimal("0"))

    def by_category(self) -> dict[str, Decimal]:
        """Monthly USD per category, in the guide's order (categories without lines are left out)."""
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for line in self.lines:
            totals[line.category] += line.monthly_usd
        return {key: totals[key] for key in CATEGORIES if key in totals}

    def by_service(self) -> dict[str, Decimal]:
        """Monthly USD per Cost Explorer SERVICE name (lines that AWS does not bill are left out)."""
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for line in self.lines:
            if line.aws_service:
                totals[line.aws_service] += line.monthly_usd
        return dict(sorted(totals.items()))


def money(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT)


class _Prices:
    def __init__(self, prices: dict[str, PriceInfo]) -> None:
        self.prices = prices
        self.missing: list[str] = []

    def get(self, key: str) -> PriceInfo | None:
        price = self.prices.get(key)
        if price is None and key not in self.missing:
            self.missing.append(key)
        return price


def _node_group_hourly(group: NodeGroupInput, prices: _Prices, discount: Decimal) -> tuple[Decimal, PriceInfo] | None:
    """On-demand (or spot) hourly price of one node of the group: its first instance type, which EKS prefers."""
    if not group.instance_types:
        return None
    price = prices.get(f"ec2.{group.instance_types[0]}")
    if price is None:
        return None
    hourly = price.amount * (1 - discount) if group.capacity_type == "SPOT" else price.amount
    return hourly, price


def environment_estimate(env: EnvironmentInput, price_table: dict[str, PriceInfo],
                         assumptions: Assumptions) -> Estimate:
    """The monthly estimate of one environment (USD per month; see the module docstring for the rules).

    A price the model needs but the table lacks is listed in ``missing_prices`` and its line is left out, so a
    page can say which price to add instead of failing.
    """
    prices = _Prices(price_table)
    if env.kind == "compose":
        server = prices.get("compose.server")
        lines = []
        if server is not None:
            lines.append(EstimateLine("compose", "", "Single server (Docker Compose, Traefik)", Decimal(1), "month",
                                      server.amount, server.amount, "compose.server"))
        return Estimate(env.name, env.kind, tuple(lines), missing_prices=tuple(prices.missing))
    if env.kind != "eks":
        line = EstimateLine("local", "", "Minikube runs on the operator's machine", Decimal(0), "month",
                            Decimal(0), Decimal(0), "")
        return Estimate(env.name, env.kind, (line,))

    lines: list[EstimateLine] = []

    def add(category, service, item, quantity, unit, key, price: PriceInfo | None, factor=Decimal(1)):
        if price is None:
            return Decimal(0)
        unit_price = price.amount * factor
        amount = Decimal(quantity) * unit_price
        lines.append(EstimateLine(category, service, item, Decimal(quantity), unit, unit_price, amount, key))
        return amount

    add("control_plane", SERVICE_EKS, "EKS control plane (1 cluster)", HOURS_PER_MONTH, "h", "eks.control_plane",
        prices.get("eks.control_plane"))

    discount_price = prices.get("spot.discount")
    discount = discount_price.amount if discount_price is not None else Decimal(0)
    spot_cost = Decimal(0)
    spot_savings = Decimal(0)
    on_demand_nodes: list[tuple[NodeGroupInput, Decimal, PriceInfo]] = []
    for group in env.node_groups:
        priced = _node_group_hourly(group, prices, discount)
        if priced is None:
            continue
        hourly, price = priced
        spot = group.capacity_type == "SPOT"
        kind = "spot" if spot else "on-demand"
        node_hours = Decimal(group.desired_size) * HOURS_PER_MONTH
        item = f"{group.name}: {group.desired_size} × {group.instance_types[0]} ({kind})"
        amount = add("compute", SERVICE_EC2, item, node_hours, "node-h", f"ec2.{group.instance_types[0]}", price,
                     factor=(1 - discount) if spot else Decimal(1))
        if spot:
            spot_cost += amount
            spot_savings += node_hours * price.amount - amount
        else:
            on_demand_nodes.append((group, hourly, price))

    ebs_key = f"ebs.{assumptions.baseline_volume_type}"
    add("ebs", SERVICE_EC2_OTHER, f"Baseline volumes: node root disks, platform ({assumptions.baseline_volume_type}, "
        "assumption)", assumptions.baseline_ebs_gb, "GB-month", ebs_key, prices.get(ebs_key))
    gp3 = prices.get("ebs.gp3")
    snapshot_price = prices.get("ebs.snapshot")
    live = [p for p in env.projects if p.state != "deleted"]
    active = [p for p in env.projects if p.state == "active"]
    project_volume_gib = sum((p.volume_gib for p in active), Decimal(0))
    snapshot_gib = sum((p.volume_gib for p in live), Decimal(0))
    add("ebs", SERVICE_EC2_OTHER, f"Project volumes: {len(active)} active projects (gp3)", project_volume_gib,
        "GB-month", "ebs.gp3", gp3)
    add("ebs", SERVICE_EC2_OTHER, f"Snapshots: {len(live)} projects, one snapshot of each volume", snapshot_gib,
        "GB-month", "ebs.snapshot", snapshot_price)
    add("s3", SERVICE_S3, "Project bucket, S3 Standard (assumption)", assumptions.s3_storage_gb, "GB-month",
        "s3.standard", prices.get("s3.standard"))
    add("nat", SERVICE_EC2_OTHER, f"NAT gateways: {assumptions.availability_zones} AZs",
        HOURS_PER_MONTH * assumptions.availability_zones, "gateway-h", "vpc.nat_gateway",
        prices.get("vpc.nat_gateway"))
    add("data_transfer", SERVICE_DATA_TRANSFER, "Data transfer out to the internet (assumption)",
        assumptions.data_transfer_out_gb, "GB", "data_transfer.out", prices.get("data_transfer.out"))

    # Per project: its volumes, its snapshots and its share of the spot compute (by CPU requested).
    total_cpu = sum((p.cpu_request for p in active), Decimal(0))
    projects = []
    for p in env.projects:
        is_active = p.state == "active"
        volume = p.volume_gib if is_active else Decimal(0)
        snap = p.volume_gib if p.state != "deleted" else Decimal(0)
        share = spot_cost * p.cpu_request / total_cpu if is_active and total_cpu else Decimal(0)
        projects.append(ProjectCost(
            project_id=p.id, slug=p.slug, state=p.state, volume_gib=volume,
            volume_usd=volume * gp3.amount if gp3 else Decimal(0), snapshot_gib=snap,
            snapshot_usd=snap * snapshot_price.amount if snapshot_price else Decimal(0), spot_compute_usd=share))
    projects.sort(key=lambda c: (-c.total_usd, c.slug))

    findings = _findings(env, assumptions, prices, discount, on_demand_nodes, active, total_cpu, spot_savings)
    return Estimate(env.name, env.kind, tuple(lines), tuple(projects), tuple(findings), spot_savings,
                    tuple(prices.missing))


def _findings(env, assumptions, prices, discount, on_demand_nodes, active, total_cpu, spot_savings) -> list[Finding]:
    findings: list[Finding] = []
    # 1. Spot savings (guide: "Add a Spot node group (90% savings on compute for dev containers)").
    spot_running = [g for g in env.node_groups if g.capacity_type == "SPOT" and g.desired_size > 0
                    and g.hosts_user_projects]
    if spot_running:
        findings.append(Finding(
            "spot_savings", "Spot node groups save on compute",
            f"{', '.join(g.name for g in spot_running)} run at {discount:.0%} below on-demand: "
            f"${money(spot_savings)} a month saved.", Decimal(0)))
    elif active and on_demand_nodes and discount:
        capacity = sum((Decimal(g.desired_size) * (p.vcpu or 0) for g, _, p in on_demand_nodes), Decimal(0))
        cost = sum((Decimal(g.desired_size) * h * HOURS_PER_MONTH for g, h, _ in on_demand_nodes), Decimal(0))
        if capacity:
            share = min(Decimal(1), total_cpu / capacity)
            saving = cost * share * discount
            findings.append(Finding(
                "spot_savings", "User projects run on on-demand nodes",
                f"{len(active)} active projects request {total_cpu.normalize():f} vCPU, {share:.0%} of the on-demand "
                f"nodes' vCPU. A Spot node group for user projects (label tesslate.io/workload-type=user-project, "
                f"taint tesslate.io/spot=true:PreferNoSchedule) with desired size ≥ 1 would cost {discount:.0%} less "
                "for them.", saving))
    # 2. Idle on-demand nodes (guide: "Cluster autoscaling: Scale down during off-hours", "Right-size nodes").
    for group, hourly, price in on_demand_nodes:
        if not price.vcpu or not price.memory_gib:
            continue
        cpu = Decimal(0)
        memory = Decimal(0)
        if group.hosts_platform:
            cpu += env.backend_replicas * env.backend_cpu
            memory += env.backend_replicas * env.backend_memory_gib
        if group.hosts_user_projects and not spot_running:
            cpu += total_cpu
        per_node_cpu = price.vcpu * ALLOCATABLE_FRACTION
        per_node_memory = price.memory_gib * ALLOCATABLE_FRACTION
        needed = max(group.min_size, math.ceil(cpu / per_node_cpu), math.ceil(memory / per_node_memory), 1)
        if group.desired_size > needed:
            idle = group.desired_size - needed
            findings.append(Finding(
                "idle_on_demand", f"Idle on-demand nodes in {group.name}",
                f"{group.desired_size} × {group.instance_types[0]} run, but the requests they host ({cpu:.2f} vCPU, "
                f"{memory:.1f} GiB) fit on {needed}. Lower the desired size or let the cluster autoscaler scale "
                "down off-hours; consider t3.medium if usage stays low.",
                idle * hourly * HOURS_PER_MONTH))
    # 3. Snapshot lifecycle (snapshot-cleanup CronJob, retention 30 days, at most 5 per project).
    snapshot = prices.get("ebs.snapshot")
    stale = [p for p in env.projects if p.state == "hibernated" and p.last_activity is not None and env.today
             and (env.today - p.last_activity).days > env.snapshot_retention_days]
    if snapshot is not None and stale:
        gib = sum((p.volume_gib for p in stale), Decimal(0))
        findings.append(Finding(
            "snapshot_lifecycle", "Hibernated projects past the snapshot retention",
            f"{len(stale)} hibernated projects ({', '.join(p.slug for p in stale)}) were last active more than "
            f"{env.snapshot_retention_days} days ago; their {gib.normalize():f} GiB of snapshots are kept only for a "
            "restore. Delete the projects or archive the data.", gib * snapshot.amount))
    if snapshot is not None and (env.snapshot_retention_days > 30 or env.max_snapshots_per_project > 5):
        findings.append(Finding(
            "snapshot_lifecycle", "Snapshot retention above the guide's defaults",
            f"Retention {env.snapshot_retention_days} days and up to {env.max_snapshots_per_project} snapshots per "
            "project (the guide: 30 days, 5): every snapshot kept longer is billed per GB-month.", Decimal(0)))
    # 4. gp2 → gp3 (guide: "EBS gp3: 20% cheaper than gp2").
    if assumptions.baseline_volume_type == "gp2":
        gp2, gp3 = prices.get("ebs.gp2"), prices.get("ebs.gp3")
        if gp2 is not None and gp3 is not None:
            findings.append(Finding(
                "gp2_to_gp3", "gp2 volumes: move to gp3",
                f"{assumptions.baseline_ebs_gb} GB of baseline volumes are gp2; gp3 is "
                f"{(1 - gp3.amount / gp2.amount):.0%} cheaper per GB-month with the same baseline performance.",
                assumptions.baseline_ebs_gb * (gp2.amount - gp3.amount)))
    return findings
