#!/usr/bin/env python
"""Django's change list rows against the portal's row plan, side by side in one process.

Fills a PostgreSQL database of its own (as admin_load.py does: --projects projects, 2 containers each, 4
environments, 200 render runs), builds the first page of each planned change list (projects, projects filtered by
container role, render runs, environments) and renders its rows --rounds times both ways, alternating: Django's
``items_for_result`` (what ``{% result_list %}`` runs) and ``deployments.admin_rows.RowPlan``. Prints the CPU
milliseconds per page of rows (time.process_time, medians), checks that both give the same HTML, and prints one
JSON object as the last line.

Usage: .venv/bin/python benchmarks/admin_rows_bench.py [--projects 10000] [--rounds 30]
       [--database-url postgres://postgres@127.0.0.1:5432/portal_rows]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import admin_load  # noqa: E402
from cpu_reference import describe, reference  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/portal_rows")
    args = parser.parse_args()
    os.environ.update(admin_load._env(args.database_url, Path(tempfile.mkdtemp(prefix="admin-rows-"))))
    admin_load._create_database(args.database_url)
    admin_load._populate(args.projects, 200)

    from django.contrib import admin
    from django.contrib.admin.templatetags.admin_list import items_for_result
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory
    from django.urls import resolve, reverse

    from deployments.admin_rows import RowPlan
    from deployments.models import Environment, RenderRun
    from projects.models import Project

    user = get_user_model().objects.get(username="load")
    lists = {"project list": (Project, {}), "project role filter": (Project, {"role": "database"}),
             "render run list": (RenderRun, {}), "environment list": (Environment, {})}
    figures = {"cpu_reference": reference(), "projects": args.projects, "lists": {}}
    print(f"Python reference loop: {describe(figures['cpu_reference'])}\n")
    print(f"{'list':<22} {'rows':>5} {'django ms':>10} {'plan ms':>8} {'ratio':>6}  same HTML")
    for name, (model, params) in lists.items():
        model_admin = admin.site._registry[model]
        url = reverse(f"admin:{model_admin.opts.app_label}_{model_admin.opts.model_name}_changelist")
        request = RequestFactory().get(url, params)
        request.user = user
        request.resolver_match = resolve(url)
        cl = model_admin.get_changelist_instance(request)
        rows = list(cl.result_list)
        django_ms, plan_ms = [], []
        for _ in range(args.rounds):
            started = time.process_time()
            django_html = ["".join(items_for_result(cl, row, None)) for row in rows]
            django_ms.append(1000 * (time.process_time() - started))
            started = time.process_time()
            plan = RowPlan(cl)
            plan_html = [plan.row_html(row) for row in rows]
            plan_ms.append(1000 * (time.process_time() - started))
        same = django_html == plan_html
        row = {"rows": len(rows), "django_ms": round(statistics.median(django_ms), 2),
               "plan_ms": round(statistics.median(plan_ms), 2), "same_html": same}
        row["ratio"] = round(row["plan_ms"] / row["django_ms"], 2) if row["django_ms"] else None
        figures["lists"][name] = row
        print(f"{name:<22} {row['rows']:>5} {row['django_ms']:>10.2f} {row['plan_ms']:>8.2f} {row['ratio']:>6}  "
              f"{'yes' if same else 'NO'}")
    print(json.dumps(figures))
    return 0 if all(row["same_html"] for row in figures["lists"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
