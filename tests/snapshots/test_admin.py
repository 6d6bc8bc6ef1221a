"""Admin pages of the snapshots app: inventory, timeline, orphans, over-retention, faults, audit reports."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from jobs.models import JobRun
from snapshots.models import AuditReport, SnapshotSyncRun
from snapshots.services import audit_run, snapshot_sync

pytest_plugins = ["tests.aws", "tests.kube_store"]

pytestmark = pytest.mark.django_db


def _timeline(html: str) -> str:
    return re.search(r'<svg[^>]*class="snapshot-timeline".*?</svg>', html, re.S).group(0)


def _sync(env):
    snapshot_sync(run=SnapshotSyncRun.objects.create(environment=env))


def test_inventory_timeline_orphans_and_over_retention_pages(planted, admin_client):
    _sync(planted["env"])
    page = admin_client.get(reverse("admin:snapshots_snapshot_changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert planted["ids"]["active"] in html and "Sync now" in html and "AWS EBS snapshots of" in html

    hoarder = planted["hoarder"]
    page = admin_client.get(reverse("admin:snapshots_snapshot_timeline", args=[hoarder.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    svg = _timeline(html)
    assert svg.count('class="snapshot state-completed"') == 3
    assert 'class="retention-window"' in svg and "retention: 30 days" in svg
    assert svg.count('stroke="#cf222e" stroke-width="3"') == 3 + 1  # all three over retention, plus the legend
    assert ">project-storage</text>" in svg and "snap-0aaaaaaaaaaaaaa00" in svg

    active = planted["active"]
    svg = _timeline(admin_client.get(reverse("admin:snapshots_snapshot_timeline", args=[active.pk])).content.decode())
    assert 'class="snapshot state-error"' in svg and ">svc-db-data</text>" in svg

    page = admin_client.get(reverse("admin:snapshots_snapshot_orphans"))
    html = page.content.decode()
    assert page.status_code == 200 and "costing <strong>$0.30</strong> a month" in html
    assert planted["ids"]["unknown"] in html and planted["ids"]["deleted"] in html
    assert planted["ids"]["active"] not in html

    page = admin_client.get(reverse("admin:snapshots_snapshot_over_retention"),
                            {"environment": planted["env"].pk})
    html = page.content.decode()
    assert page.status_code == 200 and "<strong>3</strong> snapshot(s)" in html
    assert "older than 30 days" in html and "more than 2 per project" in html

    assert admin_client.get(reverse("admin:snapshots_snapshot_orphans"), {"environment": "x"}).status_code == 404
    assert admin_client.get(reverse("admin:snapshots_snapshot_sync")).status_code == 405


def test_pages_show_the_error_and_the_age_of_the_last_data(planted, admin_client, monkeypatch):
    _sync(planted["env"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    planted["kube_store"].fail_status = 403
    _sync(planted["env"])
    html = admin_client.get(reverse("admin:snapshots_snapshot_changelist")).content.decode()
    assert "endpoint unreachable" in html and "the API server answered 403" in html
    assert html.count("showing data from") == 2
    assert planted["ids"]["unknown"] in html  # the last data is still listed
    run = SnapshotSyncRun.objects.latest("created_at")
    page = admin_client.get(reverse("admin:snapshots_snapshotsyncrun_change", args=[run.pk])).content.decode()
    assert run.status == JobRun.Status.FAILED and "endpoint unreachable" in page


def test_audit_report_page_downloads_and_run_now(planted, admin_client, settings,
                                                 django_capture_on_commit_callbacks):
    first = audit_run(report=AuditReport.objects.create())
    second = audit_run(report=AuditReport.objects.create(), sync=False)
    page = admin_client.get(reverse("admin:snapshots_auditreport_change", args=[second.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    trend = re.search(r'<svg[^>]*class="compliance-trend".*?</svg>', html, re.S).group(0)
    assert trend.count('class="bar COMPLIANT"') == 2 and trend.count('class="bar NON_COMPLIANT"') == 2
    first.refresh_from_db()
    assert f">{100 * first.compliant_count / first.total:.0f}%</text>" in trend
    assert 'class="finding-NON_COMPLIANT"' in html and "hibernated-project-snapshots" in html
    assert html.index("finding-NON_COMPLIANT") < html.index("finding-COMPLIANT")  # problems first
    filtered = admin_client.get(reverse("admin:snapshots_auditreport_change", args=[second.pk]),
                                {"result": "UNKNOWN"}).content.decode()
    assert "finding-UNKNOWN" in filtered and "finding-NON_COMPLIANT" not in filtered

    response = admin_client.get(reverse("admin:snapshots_auditreport_download", args=[second.pk, "json"]))
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    assert json.loads(response.content)["report"]["id"] == second.pk
    response = admin_client.get(reverse("admin:snapshots_auditreport_download", args=[second.pk, "csv"]))
    assert response.content.decode().splitlines()[0].startswith("control,result,scope")
    assert admin_client.get(reverse("admin:snapshots_auditreport_download", args=[second.pk, "xml"])).status_code == 404

    listing = admin_client.get(reverse("admin:snapshots_auditreport_changelist")).content.decode()
    assert "Run audit now" in listing and 'class="compliance-trend"' in listing

    settings.REDIS_URL = ""  # inline: the job runs when the request's transaction commits
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:snapshots_auditreport_run"))
    report = AuditReport.objects.latest("created_at")
    assert response.status_code == 302 and response["Location"].endswith(f"/{report.pk}/change/")
    report.refresh_from_db()
    assert report.status == JobRun.Status.WARNINGS and report.total > 0
    assert report.triggered_by.username == "admin"


def test_pages_need_permissions(planted, client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw-123-not-real", is_staff=True)
    client.force_login(user)
    assert client.get(reverse("admin:snapshots_snapshot_timeline", args=[planted["active"].pk])).status_code == 403
    assert client.get(reverse("admin:snapshots_snapshot_orphans")).status_code == 403
    assert client.post(reverse("admin:snapshots_auditreport_run")).status_code == 403
    assert client.post(reverse("admin:snapshots_snapshot_sync")).status_code == 403
    assert not AuditReport.objects.exists() and not SnapshotSyncRun.objects.exists()


def test_commands_fill_the_admin_views(planted, admin_client, capsys):
    from django.core.management import call_command

    call_command("sync_snapshots")
    assert "9 snapshots, 9 new, 0 gone, 2 orphans" in capsys.readouterr().out
    call_command("audit_backups", "--format", "csv")
    assert capsys.readouterr().out.startswith("control,result,scope")
    report = AuditReport.objects.get()
    inventory = admin_client.get(reverse("admin:snapshots_snapshot_changelist")).content.decode()
    assert planted["ids"]["hibernated"] in inventory
    page = admin_client.get(reverse("admin:snapshots_auditreport_change", args=[report.pk])).content.decode()
    assert f"{planted['env'].name}/ebs" in page and planted["bare"].slug in page
