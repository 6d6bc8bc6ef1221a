"""Cost Explorer sync on a real moto_server: every page followed, cached, at most one fetch a day, faults."""

import datetime
import socket
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from clients import cost_explorer
from costs import services
from costs.models import CostActual, CostSyncRun, EnvironmentCostSettings
from tests.factories import eks_environment_factory, environment_factory

pytest_plugins = ["tests.aws"]
pytestmark = pytest.mark.django_db

TODAY = datetime.date(2026, 11, 30)


def group(service, amount):
    return {"Keys": [service], "Metrics": {"UnblendedCost": {"Amount": str(amount), "Unit": "USD"}}}


def month(start, end, *groups, estimated=False):
    return {"TimePeriod": {"Start": start, "End": end}, "Total": {}, "Groups": list(groups), "Estimated": estimated}


# Monthly answer in two pages (the second page continues October), daily answer in two pages.
MONTHLY_PAGE_1 = {"ResultsByTime": [
    month("2026-09-01", "2026-10-01", group("Amazon Elastic Container Service for Kubernetes", "73.00"),
          group("Amazon Elastic Compute Cloud - Compute", "118.20")),
    month("2026-10-01", "2026-11-01", group("Amazon Elastic Container Service for Kubernetes", "74.40")),
], "DimensionValueAttributes": [], "NextPageToken": "monthly-page-2"}
MONTHLY_PAGE_2 = {"ResultsByTime": [
    month("2026-10-01", "2026-11-01", group("Amazon Elastic Compute Cloud - Compute", "125.10"),
          group("EC2 - Other", "80.15")),
], "DimensionValueAttributes": []}
DAILY_PAGE_1 = {"ResultsByTime": [
    month("2026-11-01", "2026-11-02", group("Amazon Elastic Container Service for Kubernetes", "2.40"),
          estimated=True),
], "DimensionValueAttributes": [], "NextPageToken": "daily-page-2"}
DAILY_PAGE_2 = {"ResultsByTime": [
    month("2026-11-02", "2026-11-03", group("Amazon Elastic Container Service for Kubernetes", "2.40"),
          group("Amazon Simple Storage Service", "0.01"), estimated=True),
], "DimensionValueAttributes": []}
PAGES = [MONTHLY_PAGE_1, MONTHLY_PAGE_2, DAILY_PAGE_1, DAILY_PAGE_2]


@pytest.fixture
def fast_retries(settings):
    settings.COST_SYNC_BACKOFF_SECONDS = 0
    settings.COST_HISTORY_MONTHS = 2
    return settings


def test_client_follows_every_page_on_moto(seed_ce):
    seed_ce([MONTHLY_PAGE_1, MONTHLY_PAGE_2])
    result = cost_explorer.cost_and_usage(start=datetime.date(2026, 9, 1), end=datetime.date(2026, 11, 1),
                                          granularity="MONTHLY", tag_key="tesslate:environment", tag_value="prod")
    assert result.requests == 2
    assert {(c.start.isoformat(), c.service, c.amount) for c in result.costs} == {
        ("2026-09-01", "Amazon Elastic Container Service for Kubernetes", Decimal("73.00")),
        ("2026-09-01", "Amazon Elastic Compute Cloud - Compute", Decimal("118.20")),
        ("2026-10-01", "Amazon Elastic Container Service for Kubernetes", Decimal("74.40")),
        ("2026-10-01", "Amazon Elastic Compute Cloud - Compute", Decimal("125.10")),
        ("2026-10-01", "EC2 - Other", Decimal("80.15")),
    }


def test_sync_caches_every_page_and_makes_at_most_one_fetch_a_day(seed_ce, fast_retries):
    env = eks_environment_factory(name="aws-production")
    seed_ce(PAGES)
    first = services.cost_sync_run_execute(run_id=services.cost_sync_run_create().pk, today=TODAY)
    assert first.status == CostSyncRun.Status.SUCCEEDED, first.error
    assert (first.request_count, first.fetched_count, first.attempt_count) == (4, 1, 1)
    monthly = CostActual.objects.filter(environment=env, granularity="MONTHLY")
    assert monthly.count() == 5
    assert monthly.get(period_start="2026-10-01", service="EC2 - Other").amount == Decimal("80.15")
    daily = CostActual.objects.filter(environment=env, granularity="DAILY")
    assert sorted(daily.values_list("period_start", "service")) == [
        (datetime.date(2026, 11, 1), "Amazon Elastic Container Service for Kubernetes"),
        (datetime.date(2026, 11, 2), "Amazon Elastic Container Service for Kubernetes"),
        (datetime.date(2026, 11, 2), "Amazon Simple Storage Service"),
    ]
    assert all(daily.values_list("estimated", flat=True))

    second = services.cost_sync_run_execute(run_id=services.cost_sync_run_create().pk, today=TODAY)
    assert (second.status, second.request_count, second.cached_count) == (CostSyncRun.Status.NO_CHANGE, 0, 1)
    assert EnvironmentCostSettings.objects.get(environment=env).request_count == 4

    forced = services.cost_sync_run_execute(run_id=services.cost_sync_run_create(force=True).pk, today=TODAY)
    assert (forced.status, forced.request_count) == (CostSyncRun.Status.SUCCEEDED, 4)
    assert EnvironmentCostSettings.objects.get(environment=env).request_count == 8
    assert CostActual.objects.filter(environment=env).count() == 8  # replaced, not duplicated


def test_sync_costs_command_and_scheduled_job(seed_ce, fast_retries, settings):
    eks_environment_factory(name="aws-production")
    seed_ce(PAGES)
    call_command("sync_costs", "--environment", "aws-production")
    run = CostSyncRun.objects.get()
    assert run.request_count == 4
    from costs.tasks import cost_sync_scheduled_job

    assert cost_sync_scheduled_job() == CostSyncRun.Status.NO_CHANGE  # fetched today already: no request
    assert EnvironmentCostSettings.objects.get().request_count == 4
    assert any(e["func"] == "costs.tasks.cost_sync_scheduled_job" for e in settings.PORTAL_SCHEDULE)
    from jobs.scheduler import schedule_entries

    assert schedule_entries()  # every entry importable, queues known


def test_sync_costs_refuses_unknown_and_non_eks_environments(aws):
    environment_factory(name="minikube")
    with pytest.raises(CommandError, match="No environment named nope"):
        call_command("sync_costs", "--environment", "nope")
    with pytest.raises(CommandError, match="Not EKS"):
        call_command("sync_costs", "--environment", "minikube")


def test_throttling_is_retried_with_backoff_then_fails_visibly(aws_error_endpoint, fast_retries, settings):
    settings.COST_SYNC_ATTEMPTS = 2
    env = eks_environment_factory()
    run = services.cost_sync_run_execute(run_id=services.cost_sync_run_create().pk, today=TODAY)
    assert run.status == CostSyncRun.Status.FAILED
    assert run.error_kind == CostSyncRun.ErrorKind.SOURCE
    assert run.attempt_count == 2
    assert "throttled" in run.error and "after 2 attempts" in run.error
    assert "retrying in 0 s" in run.log
    row = EnvironmentCostSettings.objects.get(environment=env)
    assert row.last_error_kind == "throttled" and row.last_fetched_at is None
    assert row.request_count == 2  # one per attempt (botocore's own retries are below the portal's count)
    assert aws_error_endpoint.requests >= 2


def test_expired_credentials_are_not_retried(aws_error_endpoint, fast_retries):
    aws_error_endpoint.answer = (400, "ExpiredTokenException", "The security token included in the request is expired")
    env = eks_environment_factory()
    run = services.cost_sync_run_execute(run_id=services.cost_sync_run_create().pk, today=TODAY)
    assert (run.status, run.error_kind, run.attempt_count) == (CostSyncRun.Status.FAILED,
                                                               CostSyncRun.ErrorKind.CREDENTIALS, 1)
    assert aws_error_endpoint.requests == 1
    assert EnvironmentCostSettings.objects.get(environment=env).last_error_kind == "credentials"


def test_unreachable_endpoint_fails_visibly(aws, fast_retries, settings, monkeypatch):
    settings.COST_SYNC_ATTEMPTS = 1
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    env = eks_environment_factory()
    run = services.cost_sync_run_execute(run_id=services.cost_sync_run_create().pk, today=TODAY)
    assert run.status == CostSyncRun.Status.FAILED and "cannot be reached" in run.error
    assert EnvironmentCostSettings.objects.get(environment=env).last_error_kind == "unreachable"


def test_sync_periods_monthly_history_and_this_month_daily():
    assert services.sync_periods(datetime.date(2026, 1, 1), 2) == [
        ("MONTHLY", datetime.date(2025, 11, 1), datetime.date(2026, 1, 1)),
        ("DAILY", datetime.date(2026, 1, 1), datetime.date(2026, 1, 2)),
    ]


