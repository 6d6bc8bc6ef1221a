"""The audit's database queries do not grow with the number of projects and snapshots."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from benchmarks.audit_bench import populate
from snapshots.models import AuditReport
from snapshots.services import audit_run

pytestmark = pytest.mark.django_db


def _audit_queries() -> tuple[int, AuditReport]:
    report = AuditReport.objects.create()
    with CaptureQueriesContext(connection) as queries:
        audit_run(report=report, sync=False)
    report.refresh_from_db()
    return len(queries), report


def test_query_count_is_the_same_at_two_sizes():
    populate(projects=20, snapshots=100)
    small, small_report = _audit_queries()
    populate(projects=200, snapshots=1000)
    large, large_report = _audit_queries()

    assert large_report.total > 5 * small_report.total  # the second audit really covers ten times more
    assert large_report.non_compliant_count > small_report.non_compliant_count > 0
    assert small == large, f"{small} queries for 20 projects, {large} for 220"
    assert large <= 20
