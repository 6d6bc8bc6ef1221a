#!/usr/bin/env python
"""Benchmark: the backup audit over 10,000 projects and 50,000 snapshots (target ≤ 30 s, queries constant).

Seeds one EKS environment with N projects (70 % active, 25 % hibernated, 5 % deleted; every third with a database
service container, so it has two volumes), S snapshots spread over them (some past retention, some beyond the
maximum count, some orphans, unencrypted and in error) and fresh data-source records, then times
``audit_run(sync=False)`` — the evaluation, storing every finding and the report — and counts its queries.
Runs each size and prints a table, then one JSON line.

Usage: .venv/bin/python benchmarks/audit_bench.py [--sizes 1000:5000,10000:50000]
       (DATABASE_URL: a PostgreSQL server; the benchmark uses its own database ``<name>_audit_bench``)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def populate(*, projects: int, snapshots: int, now=None) -> None:
    """Seed one EKS environment with ``projects`` projects and ``snapshots`` snapshots (bulk inserts)."""
    from django.utils import timezone

    from deployments.models import Environment
    from projects.models import Container, Project
    from snapshots.models import Snapshot, SnapshotSource

    now = now or timezone.now()
    environment = Environment.objects.create(
        name=f"bench-{uuid.uuid4().hex[:6]}", kind="eks", app_domain="bench.example.com",
        tls_mode="cert-manager-dns01", acme_email="ops@example.com", storage_provisioner="ebs-gp3",
        image_registry="123456789012.dkr.ecr.us-east-1.amazonaws.com", image_tag="production",
        aws_account_id="123456789012", aws_region="us-east-1", eks_cluster_name="bench")
    states = ["active"] * 14 + ["hibernated"] * 5 + ["deleted"]
    rows = Project.objects.bulk_create(
        Project(environment=environment, name=f"Project {i}", slug=f"p{i}", owner=f"user-{i % 97}",
                state=states[i % len(states)]) for i in range(projects))
    Container.objects.bulk_create(
        Container(project=project, directory="db", role="database", port=5432, image="postgres:16-alpine")
        for index, project in enumerate(rows) if index % 3 == 0)
    price = Decimal("0.05")
    snaps = []
    for n in range(snapshots):
        project = rows[n % projects] if n % 50 else None  # every 50th an orphan
        volume = "svc-db-data" if n % 7 == 0 else "project-storage"
        age_days = (n // projects) * 9 + (n % 5)  # later rounds are older: some past 30 days
        size = 5 if volume == "project-storage" else 1
        snaps.append(Snapshot(
            environment=environment, project=project, project_ref=str(project.pk) if project else str(uuid.uuid4()),
            key=f"snap-{n:017x}", ebs_snapshot_id=f"snap-{n:017x}", namespace=f"proj-{project.pk}" if project else "",
            volume_name=volume, volume_snapshot_name=f"snap-{n}", state="error" if n % 997 == 0 else "completed",
            ebs_state="completed", size_gib=size, started_at=now - timedelta(days=age_days, hours=1),
            ready_at=now - timedelta(days=age_days), encrypted=n % 499 != 0, monthly_cost=size * price,
            seen_in_aws=True, seen_in_cluster=n % 3 != 0, last_seen_at=now))
    Snapshot.objects.bulk_create(snaps, batch_size=5000)
    SnapshotSource.objects.bulk_create(
        SnapshotSource(environment=environment, kind=kind, last_attempt_at=now, last_success_at=now,
                       item_count=snapshots) for kind in ("ebs", "cluster"))


def measure(*, projects: int, snapshots: int) -> dict:
    """Seed a fresh data set and time one audit over it; returns seconds, queries and counts."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from deployments.models import Environment
    from projects.models import Project
    from snapshots.models import AuditReport, Snapshot
    from snapshots.services import audit_run

    AuditReport.objects.all().delete()
    Snapshot.objects.all().delete()
    Project.objects.all().delete()
    Environment.objects.all().delete()
    populate(projects=projects, snapshots=snapshots)
    report = AuditReport.objects.create(reason="benchmark")
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        audit_run(report=report, sync=False)
        seconds = time.perf_counter() - started
    report.refresh_from_db()
    return {"projects": projects, "snapshots": snapshots, "seconds": round(seconds, 2), "queries": len(queries),
            "findings": report.total, "compliant": report.compliant_count,
            "non_compliant": report.non_compliant_count, "unknown": report.unknown_count, "status": report.status}


def _setup_django() -> None:
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal")
    parsed = urlparse(base)
    name = f"{parsed.path.lstrip('/') or 'portal'}_audit_bench"
    import psycopg

    with psycopg.connect(host=parsed.hostname or "127.0.0.1", port=parsed.port or 5432,
                         user=parsed.username or "postgres", password=parsed.password or None, dbname="postgres",
                         autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = urlunparse(parsed._replace(path=f"/{name}"))
    os.environ.update(PORTAL_IGNORE_DOTENV="1", DEBUG="true", REDIS_URL="", GITOPS_REMOTE_URL="", LOG_LEVEL="WARNING",
                      DJANGO_SETTINGS_MODULE="portal.settings", BACKUP_AUDIT_DB_BUCKET="",
                      BACKUP_AUDIT_REPORT_BUCKET="")
    os.environ.setdefault("PORTAL_ENCRYPTION_KEYS", "n1kJ2b6zqYxVhB7gVJ0p3m8Xq9sR4tU5wY6zA7bC8dE=")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000:5000,10000:50000", help="projects:snapshots,…")
    args = parser.parse_args()
    _setup_django()
    results = []
    print(f"{'projects':>9} {'snapshots':>10} {'seconds':>8} {'queries':>8} {'findings':>9} "
          f"{'compliant':>10} {'non_compl':>10} {'unknown':>8}")
    for size in args.sizes.split(","):
        projects, snapshots = (int(part) for part in size.split(":"))
        result = measure(projects=projects, snapshots=snapshots)
        results.append(result)
        print(f"{projects:>9,} {snapshots:>10,} {result['seconds']:>8.2f} {result['queries']:>8} "
              f"{result['findings']:>9,} {result['compliant']:>10,} {result['non_compliant']:>10,} "
              f"{result['unknown']:>8,}")
    print(json.dumps({"audit": results}))


if __name__ == "__main__":
    main()
