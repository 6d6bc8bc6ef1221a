"""The backup audit (snapshots/audit.py, services.audit_run, reports, audit_backups) end to end."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import pytest
from django.core.management import call_command

from jobs.models import JobRun
from jobs.scheduler import schedule_entries
from snapshots.models import AuditFinding, AuditReport
from snapshots.reports import report_csv, report_json
from snapshots.services import audit_run

pytest_plugins = ["tests.aws", "tests.kube_store"]

pytestmark = pytest.mark.django_db


def _results(report: AuditReport, control: str) -> dict[str, str]:
    return dict(report.findings.filter(control=control).values_list("resource", "result"))


def test_audit_flags_orphans_over_retention_and_missing_snapshots(planted):
    report = audit_run(report=AuditReport.objects.create())
    report.refresh_from_db()

    assert report.status == JobRun.Status.WARNINGS  # no DB backup bucket and no GitOps remote configured
    env = planted["env"].name
    hibernated = _results(report, "hibernated-project-snapshots")
    assert hibernated[planted["bare"].slug] == "NON_COMPLIANT"
    assert hibernated[planted["partial"].slug] == "NON_COMPLIANT"
    assert hibernated[planted["hibernated"].slug] == "COMPLIANT"
    detail = report.findings.get(control="hibernated-project-snapshots", resource=planted["partial"].slug).detail
    assert detail == "no completed snapshot of svc-db-data"

    assert _results(report, "snapshot-retention")[planted["hoarder"].slug] == "NON_COMPLIANT"
    assert _results(report, "snapshot-max-count")[planted["hoarder"].slug] == "NON_COMPLIANT"
    assert _results(report, "snapshot-retention")[planted["active"].slug] == "COMPLIANT"

    orphans = _results(report, "orphan-snapshots")
    assert orphans[env] == "NON_COMPLIANT"
    assert orphans[planted["ids"]["unknown"]] == orphans[planted["ids"]["deleted"]] == "NON_COMPLIANT"
    env_orphans = report.findings.get(control="orphan-snapshots", resource=env)
    assert str(env_orphans.monthly_cost) == "0.3000"  # 2 GiB + 4 GiB at $0.05
    assert "$0.30 a month" in env_orphans.detail
    assert _results(report, "snapshot-encryption")[planted["ids"]["unknown"]] == "NON_COMPLIANT"
    errors = _results(report, "snapshot-errors")
    assert errors[env] == "NON_COMPLIANT" and errors[f"vs:{planted['active'].namespace}/snap-a-db"] == "NON_COMPLIANT"
    # The active project's only snapshot is new; the hoarder's newest is 38 days old (limit 7 days).
    ages = _results(report, "active-project-snapshot-age")
    assert ages[planted["active"].slug] == "COMPLIANT" and ages[planted["hoarder"].slug] == "NON_COMPLIANT"
    assert _results(report, "database-backup-recent") == {"(not configured)": "UNKNOWN"}
    assert _results(report, "gitops-remote-in-sync") == {"(no remote)": "UNKNOWN"}
    assert report.data_sources[f"{env}/ebs"]["error"] == "" and report.data_sources[f"{env}/ebs"]["fetched_at"]
    assert report.total == report.findings.count() > 0
    assert report.compliant_count == report.findings.filter(result="COMPLIANT").count()


def test_audit_says_unknown_when_aws_is_down(planted, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    report = audit_run(report=AuditReport.objects.create())
    report.refresh_from_db()

    env = planted["env"].name
    for control in ("hibernated-project-snapshots", "snapshot-retention", "snapshot-max-count"):
        results = _results(report, control)
        assert set(results.values()) == {"UNKNOWN"}, (control, results)
    for control in ("orphan-snapshots", "snapshot-errors", "snapshot-encryption"):
        assert _results(report, control) == {env: "UNKNOWN"}
    detail = report.findings.filter(control="snapshot-retention").first().detail
    assert "AWS EBS" in detail and "unreachable" in detail
    assert "unreachable" in report.data_sources[f"{env}/ebs"]["error"]
    assert report.status == JobRun.Status.WARNINGS and "unreachable" in report.log


def test_database_backup_and_report_upload(planted, settings):
    from clients.aws import aws_client

    s3 = aws_client("s3", region="us-east-1")
    for bucket in ("portal-backups", "audit-reports"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="portal-backups", Key="db/tesslate-2026.sql.gz", Body=b"dump")
    settings.BACKUP_AUDIT_DB_BUCKET, settings.BACKUP_AUDIT_DB_PREFIX = "portal-backups", "db/"
    settings.BACKUP_AUDIT_REPORT_BUCKET, settings.BACKUP_AUDIT_REPORT_PREFIX = "audit-reports", "audits/"

    report = audit_run(report=AuditReport.objects.create())
    report.refresh_from_db()
    assert _results(report, "database-backup-recent") == {"s3://portal-backups/db/": "COMPLIANT"}
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket="audit-reports")["Contents"])
    assert keys == [f"audits/{report.evaluated_at:%Y-%m-%d}/{report.uuid}.{suffix}" for suffix in ("csv", "json")]
    assert report.s3_uri == f"s3://audit-reports/{keys[0]}"
    uploaded = json.loads(s3.get_object(Bucket="audit-reports", Key=keys[1])["Body"].read())
    assert uploaded["report"]["uuid"] == str(report.uuid) and len(uploaded["findings"]) == report.total

    settings.BACKUP_AUDIT_DB_MAX_AGE_HOURS = 0
    stale = audit_run(report=AuditReport.objects.create(), sync=False)
    assert _results(stale, "database-backup-recent") == {"s3://portal-backups/db/": "NON_COMPLIANT"}


def test_gitops_remote_control(db, settings, tmp_path):
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    subprocess.run([*git, "push", "-q", str(remote), "main"], check=True)
    settings.GITOPS_REPO_DIR, settings.GITOPS_REMOTE_URL, settings.GITOPS_BRANCH = work, str(remote), "main"

    report = audit_run(report=AuditReport.objects.create(), sync=False)
    assert _results(report, "gitops-remote-in-sync") == {f"{remote}#main": "COMPLIANT"}

    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "two (not pushed)"], check=True)
    report = audit_run(report=AuditReport.objects.create(), sync=False)
    finding = report.findings.get(control="gitops-remote-in-sync")
    assert finding.result == "NON_COMPLIANT" and "the portal last pushed" in finding.detail

    settings.GITOPS_REMOTE_URL = str(tmp_path / "missing.git")
    report = audit_run(report=AuditReport.objects.create(), sync=False)
    finding = report.findings.get(control="gitops-remote-in-sync")
    assert finding.result == "NON_COMPLIANT" and "unreachable" in finding.detail
    assert report.data_sources["gitops-remote"]["error"]


def test_exports_and_command(planted, capsys):
    report = audit_run(report=AuditReport.objects.create())
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert len(rows) == report.total
    orphan = next(row for row in rows if row["resource"] == planted["ids"]["unknown"]
                  and row["control"] == "orphan-snapshots")
    assert (orphan["result"], orphan["monthly_cost_usd"], orphan["environment"]) == (
        "NON_COMPLIANT", "0.1000", planted["env"].name)
    data = json.loads(report_json(report))
    assert data["report"]["non_compliant"] == report.non_compliant_count
    assert "hibernated-project-snapshots" in data["controls"]

    capsys.readouterr()
    call_command("audit_backups", "--format", "json", "--no-sync")
    printed = json.loads(capsys.readouterr().out)
    assert printed["report"]["id"] == AuditReport.objects.latest("created_at").pk
    call_command("audit_backups", "--format", "html", "--no-sync")
    html = capsys.readouterr().out
    assert "<table>" in html and "NON_COMPLIANT" in html and planted["ids"]["unknown"] in html


def test_audit_is_scheduled_daily(settings):
    entries = {entry["name"]: entry for entry in schedule_entries()}
    assert entries["backup-audit"]["cron"] == "30 4 * * *"
    assert entries["backup-audit"]["func"] == "snapshots.tasks.audit_scheduled_job"
    assert entries["snapshots-sync"]["interval"] == 3600


def test_audit_run_failure_is_recorded(db, monkeypatch):
    def broken():
        raise RuntimeError("database went away")

    monkeypatch.setattr("snapshots.services.audit_inputs", broken)
    report = audit_run(report=AuditReport.objects.create(), sync=False)
    report.refresh_from_db()
    assert report.status == JobRun.Status.FAILED and "database went away" in report.error
    assert not AuditFinding.objects.exists()
