"""Cost pages and `manage.py costs`: actual vs estimate, the drawn trend chart, faults shown with cached data."""

import datetime
import json
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from costs import services
from costs.charts import monthly_trend_svg
from costs.models import CostActual, CostSyncRun, EnvironmentCostSettings
from deployments.models import Environment
from projects.demo import demo_load
from tests.costs.test_sync import PAGES

pytest_plugins = ["tests.aws"]
pytestmark = pytest.mark.django_db

# The guide's lines as `manage.py costs` prints them: label, amount (each within 5 % of the guide).
GUIDE_LINES = [("EKS cluster (control plane)", 73), ("EC2 nodes", 121), ("EBS volumes and snapshots", 10),
               ("S3 storage", 0.23), ("NAT gateway", 66), ("Data transfer", 50), ("Total", 320)]


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "a-long-test-password")
    client.force_login(user)
    return client


@pytest.fixture
def production(settings):
    settings.COST_SYNC_BACKOFF_SECONDS = 0
    settings.COST_HISTORY_MONTHS = 2
    demo_load()
    return Environment.objects.get(name="aws-production")


def _chart(html: str) -> str:
    start = html.index('<svg xmlns="http://www.w3.org/2000/svg" class="cost-chart"')
    return html[start:html.index("</svg>", start)]


def _sync(today=datetime.date(2026, 11, 30), force=False):
    return services.cost_sync_run_execute(run_id=services.cost_sync_run_create(force=force).pk, today=today)


def test_costs_command_prints_the_guides_baseline_line_by_line(production, capsys):
    call_command("costs", "--environment", "aws-production")
    out = capsys.readouterr().out
    for label, guide in GUIDE_LINES:
        match = re.search(rf"^  {re.escape(label)}\s+\$([\d,.]+)\s+\(guide ~\$", out, re.MULTILINE)
        assert match, label
        assert abs(Decimal(match[1].replace(",", "")) - Decimal(str(guide))) <= Decimal(str(guide)) * Decimal("0.05")
    assert "Spot savings: $0.00 a month" in out
    assert "crm-dashboard" in out and "Finding [spot_savings]" in out


def test_costs_command_json_and_unknown_environment(production, seed_ce, capsys):
    seed_ce(PAGES)
    assert _sync().status == CostSyncRun.Status.SUCCEEDED
    call_command("costs", "--environment", "aws-production", "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["estimate"]["total_usd"] == 320.25
    assert data["estimate"]["by_category"]["nat"] == 65.70
    assert [m["month"] for m in data["actuals"]["months"]] == ["2026-09", "2026-10", "2026-11"]
    assert data["actuals"]["months"][1]["total_usd"] == 279.65  # 74.40 + 125.10 + 80.15 over two pages
    assert data["actuals"]["months"][2]["partial"] is True
    assert data["actuals"]["request_count"] == 4
    with pytest.raises(CommandError, match="No environment named nope"):
        call_command("costs", "--environment", "nope")


def test_report_page_shows_actual_vs_estimate_and_draws_the_trend(production, seed_ce, admin_client):
    seed_ce(PAGES)
    _sync()
    response = admin_client.get(reverse("admin:costs_report", args=[production.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    svg = _chart(html)
    assert svg.count('<rect class="bar') == 3  # Sep, Oct, Nov (so far)
    assert svg.count('class="bar partial"') == 1
    assert "Oct 2026" in svg and "$280</text>" in svg  # October's total placed above its bar
    assert 'class="estimate"' in svg and "estimate $320/month" in svg
    table = html[html.index('id="cost-by-service"'):]
    assert "EC2 - Other" in table and "$80.15" in table and "$75.51" in table  # actual last month, estimate
    assert 'id="cost-total">$320.25<' in html
    assert "Spot node groups save $0.00" in html
    assert "crm-dashboard" in html[html.index('id="cost-projects"'):]
    assert "User projects run on on-demand nodes" in html
    assert 'id="cost-error"' not in html


def test_report_page_shows_the_error_and_the_cached_data_with_its_age(production, seed_ce, admin_client,
                                                                         aws_error_endpoint):
    # Cached figures from three days ago, then a fetch that fails on expired credentials.
    fetched = timezone.now() - datetime.timedelta(days=3)
    EnvironmentCostSettings.objects.create(environment=production, last_fetched_at=fetched)
    CostActual.objects.create(environment=production, granularity="MONTHLY", period_start="2026-10-01",
                              period_end="2026-11-01", service="EC2 - Other", amount=Decimal("80.15"),
                              fetched_at=fetched)
    aws_error_endpoint.answer = (400, "ExpiredTokenException", "The security token included in the request is expired")
    run = _sync(today=timezone.now().date())
    assert run.status == CostSyncRun.Status.FAILED
    html = admin_client.get(reverse("admin:costs_report", args=[production.pk])).content.decode()
    error = html[html.index('id="cost-error"'):]
    assert "credentials" in error and "expired" in error
    assert "3 days ago" in error
    assert "$80.15" in html[html.index('id="cost-by-service"'):]
    assert _chart(html).count('<rect class="bar') == 1


def test_report_post_requests_a_forced_sync(production, seed_ce, admin_client, settings,
                                            django_capture_on_commit_callbacks):
    settings.REDIS_URL = ""  # jobs run inline after the commit
    seed_ce(PAGES)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:costs_report", args=[production.pk]))
    assert response.status_code == 302
    run = CostSyncRun.objects.get()
    assert run.forced and run.status == CostSyncRun.Status.SUCCEEDED and run.request_count == 4


def test_report_index_and_other_kinds(production, admin_client):
    html = admin_client.get(reverse("admin:costs_report_index")).content.decode()
    assert "aws-production" in html and "$320.25" in html and "$0.00" in html  # minikube is free
    minikube = Environment.objects.get(name="minikube")
    html = admin_client.get(reverse("admin:costs_report", args=[minikube.pk])).content.decode()
    assert "Minikube" in html and "Cost Explorer" not in html.split('id="content-main"')[1].split("Estimate")[0]
    assert admin_client.get(reverse("admin:costs_report", args=[999999])).status_code == 404


def test_report_needs_login(production, client):
    response = client.get(reverse("admin:costs_report", args=[production.pk]))
    assert response.status_code == 302 and "login" in response["Location"]


def test_chart_escapes_text_and_places_values():
    svg = monthly_trend_svg([("<script>", Decimal("12.5"), False), ("Nov", Decimal("40"), True)],
                            estimate=Decimal("50"), title='a "title" & more')
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "&quot;title&quot; &amp; more" in svg
    assert svg.count("<rect") == 2 and "$40</text>" in svg and "estimate $50/month" in svg
    empty = monthly_trend_svg([])
    assert "No Cost Explorer data cached yet." in empty


def test_sync_run_page_and_progress_json(production, aws_error_endpoint, admin_client):
    aws_error_endpoint.answer = (400, "ExpiredTokenException", "The security token included in the request is expired")
    run = _sync()
    html = admin_client.get(reverse("admin:costs_costsyncrun_change", args=[run.pk])).content.decode()
    assert "aws-production" in html and "refused the credentials" in html
    progress = admin_client.get(reverse("admin:costs_costsyncrun_progress", args=[run.pk])).json()
    assert progress["status"] == "failed" and progress["attempt_count"] == 1 and progress["finished"]
