"""Audit reports as files: CSV, JSON and a standalone HTML page (what `audit_backups --format` prints, what the
admin downloads and what is uploaded to S3)."""

from __future__ import annotations

import csv
import io
import json

from django.template.loader import render_to_string

from snapshots.audit import CONTROLS
from snapshots.models import AuditFinding, AuditReport

COLUMNS = ("control", "result", "scope", "environment", "resource", "project_id", "monthly_cost_usd", "detail")


def finding_rows(report: AuditReport) -> list[dict]:
    """The report's findings as plain dicts (one query), in COLUMNS order."""
    rows = AuditFinding.objects.filter(report=report).order_by("control", "environment_name", "resource").values_list(
        "control", "result", "scope", "environment_name", "resource", "project_id", "monthly_cost", "detail")
    return [dict(zip(COLUMNS, (control, result, scope, env, resource, str(project or ""),
                               "" if cost is None else f"{cost:.4f}", detail), strict=True))
            for control, result, scope, env, resource, project, cost, detail in rows]


def report_summary(report: AuditReport) -> dict:
    return {
        "id": report.pk, "uuid": str(report.uuid),
        "evaluated_at": report.evaluated_at.isoformat() if report.evaluated_at else None,
        "status": report.status, "compliant": report.compliant_count, "non_compliant": report.non_compliant_count,
        "unknown": report.unknown_count, "compliance_percent": report.compliance_percent,
        "data_sources": report.data_sources,
    }


def report_csv(report: AuditReport, rows: list[dict] | None = None) -> str:
    """CSV with a header row (COLUMNS); one line per finding."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(finding_rows(report) if rows is None else rows)
    return buffer.getvalue()


def report_json(report: AuditReport, rows: list[dict] | None = None) -> str:
    """``{"report": summary, "controls": {name: description}, "findings": [...]}``, sorted keys."""
    return json.dumps({"report": report_summary(report), "controls": CONTROLS,
                       "findings": finding_rows(report) if rows is None else rows}, indent=1, sort_keys=True)


def report_html(report: AuditReport, rows: list[dict] | None = None) -> str:
    """A standalone HTML page (no external assets) with the summary and the findings table."""
    return render_to_string("admin/snapshots/audit_report_standalone.html", {
        "report": report, "summary": report_summary(report), "controls": CONTROLS,
        "rows": finding_rows(report) if rows is None else rows})
