"""The estimate from the model: the guide's ~$320 baseline for the demo's aws-production, projects, findings."""

from decimal import Decimal

import pytest

from costs import estimator
from costs.models import EnvironmentCostSettings, Price
from costs.selectors import environment_estimate
from deployments.models import Environment, NodeGroup
from projects.demo import demo_load
from projects.models import Project
from tests.factories import (
    container_factory,
    eks_environment_factory,
    environment_factory,
    node_group_factory,
    project_factory,
)

pytestmark = pytest.mark.django_db

# The operator guide's "AWS Cost Estimation" table (monthly USD).
GUIDE_BASELINE = {"control_plane": 73, "compute": 121, "ebs": 10, "s3": 0.23, "nat": 66, "data_transfer": 50}


@pytest.fixture
def demo():
    demo_load()
    return Environment.objects.get(name="aws-production")


def test_demo_aws_production_reproduces_the_guides_baseline_line_by_line(demo):
    estimate = environment_estimate(environment=demo)
    by_category = estimate.by_category()
    assert list(by_category) == list(GUIDE_BASELINE)
    for category, guide in GUIDE_BASELINE.items():
        assert abs(by_category[category] - Decimal(str(guide))) <= Decimal(str(guide)) * Decimal("0.05"), category
    assert abs(estimate.total_usd - 320) <= 320 * Decimal("0.05")
    assert estimator.money(by_category["control_plane"]) == Decimal("73.00")
    assert estimator.money(by_category["compute"]) == Decimal("121.47")  # 2 × 0.0832 × 730
    assert estimator.money(by_category["nat"]) == Decimal("65.70")  # 2 × 0.045 × 730
    assert estimate.missing_prices == ()


def test_demo_projects_volumes_snapshots_and_no_spot_share_while_spot_is_scaled_to_zero(demo):
    projects = {p.slug: p for p in environment_estimate(environment=demo).projects}
    assert projects["crm-dashboard"].volume_gib == 7  # 5Gi project-storage + 2Gi svc-db-data
    assert estimator.money(projects["crm-dashboard"].volume_usd) == Decimal("0.56")
    assert projects["blog"].volume_gib == 0 and projects["blog"].snapshot_gib == 5  # hibernated: snapshot only
    assert estimator.money(projects["blog"].snapshot_usd) == Decimal("0.25")
    assert all(p.spot_compute_usd == 0 for p in projects.values())


def test_assumptions_and_prices_drive_the_estimate(demo):
    EnvironmentCostSettings.objects.create(environment=demo, availability_zones=3, data_transfer_out_gb=0,
                                           s3_storage_gb=1000)
    Price.objects.filter(key="ebs.gp3").update(amount=Decimal("0.10"))
    by_category = environment_estimate(environment=demo).by_category()
    assert estimator.money(by_category["nat"]) == Decimal("98.55")
    assert by_category["data_transfer"] == 0
    assert estimator.money(by_category["s3"]) == Decimal("23.00")
    # 112 GiB of volumes at 0.10 + 17 GiB of snapshots at 0.05
    assert estimator.money(by_category["ebs"]) == Decimal("12.05")


def test_spot_group_is_discounted_and_shared_by_cpu_request():
    env = eks_environment_factory()
    node_group_factory(env, name="primary", desired_size=1, min_size=1)
    node_group_factory(env, name="spot", capacity_type=NodeGroup.CapacityType.SPOT, min_size=0, desired_size=2,
                       instance_types="t3.xlarge, t3a.xlarge", hosts=NodeGroup.Hosts.USER_PROJECTS)
    big = project_factory(env, containers=())
    container_factory(big, directory="frontend", cpu_request="950m")
    small = project_factory(env, containers=())
    container_factory(small, directory="frontend", cpu_request="450m", cpu_limit="1")
    estimate = environment_estimate(environment=env)
    spot_line = next(line for line in estimate.lines if line.item.startswith("spot"))
    assert estimator.money(spot_line.monthly_usd) == Decimal("72.88")  # 2 × 0.1664 × 0.30 × 730
    assert estimator.money(estimate.spot_savings_usd) == Decimal("170.06")
    shares = {p.slug: p.spot_compute_usd for p in estimate.projects}
    # 1.0 vs 0.5 cores (the file-manager's 50m included): two thirds and one third
    assert estimator.money(shares[big.slug]) == estimator.money(spot_line.monthly_usd * 2 / 3)
    assert estimator.money(shares[small.slug]) == estimator.money(spot_line.monthly_usd / 3)
    assert [f.kind for f in estimate.findings][:1] == ["spot_savings"]


def test_findings_from_the_guides_cost_tips(demo):
    import datetime

    from django.utils import timezone

    EnvironmentCostSettings.objects.create(environment=demo, baseline_volume_type="gp2")
    NodeGroup.objects.filter(environment=demo, name="primary").update(desired_size=4, max_size=5)
    Project.objects.filter(slug="blog").update(last_activity_at=timezone.now() - datetime.timedelta(days=90))
    findings = {f.kind: f for f in environment_estimate(environment=demo).findings}
    assert set(findings) == {"spot_savings", "idle_on_demand", "snapshot_lifecycle", "gp2_to_gp3"}
    # 2 backend replicas × 1 CPU fit on 2 t3.large: 2 of 4 are idle.
    assert estimator.money(findings["idle_on_demand"].monthly_savings_usd) == Decimal("121.47")
    assert estimator.money(findings["gp2_to_gp3"].monthly_savings_usd) == Decimal("2.00")
    assert estimator.money(findings["snapshot_lifecycle"].monthly_savings_usd) == Decimal("0.25")
    assert findings["spot_savings"].monthly_savings_usd > 0
    assert "blog" in findings["snapshot_lifecycle"].detail


def test_compose_is_the_flat_server_price_and_minikube_is_free():
    compose = environment_factory(kind=Environment.Kind.COMPOSE)
    assert environment_estimate(environment=compose).total_usd == Decimal("120")
    assert environment_estimate(environment=environment_factory()).total_usd == 0


def test_missing_instance_price_is_reported_not_raised():
    env = eks_environment_factory()
    node_group_factory(env, instance_types="m5.large")
    estimate = environment_estimate(environment=env)
    assert estimate.missing_prices == ("ec2.m5.large",)
    assert not [line for line in estimate.lines if line.category == "compute"]


def test_price_clean_refuses_bad_values():
    from tests.factories import field_errors

    assert "amount" in field_errors(Price(key="spot.discount", description="d", unit="fraction",
                                          amount=Decimal("1.5"), as_of="2026-01-01"))
    assert "vcpu" in field_errors(Price(key="ec2.m5.large", description="d", unit="hour", amount=Decimal("0.096"),
                                        as_of="2026-01-01"))
