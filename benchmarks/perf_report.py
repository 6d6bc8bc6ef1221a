#!/usr/bin/env python
"""Every figure of the performance targets in one run, each beside its target and its floor or baseline.

Runs the three benchmark scripts one after another (never in parallel: they would measure each other; before each,
it waits up to 2 minutes for PostgreSQL's autovacuum of the previous script's databases and for the load to fall) and
prints one table, then one JSON object (the last line) with every figure and the raw output of each script:

  gitops_bench.py   first render + validation at 5,000 (floor: the same render + commit without validation),
                    full render + commit vs `git add -A && git commit` at 1,000 and 5,000, the no-op run at 5,000
                    (baseline: the one-project run), the preview of a never-rendered environment at 5,000
                    (baseline: the full render + commit)
  worker_bench.py   a one-project change at 10,000 through a fresh `manage.py rqworker` (baseline: rq's plain
                    forking Worker, side by side), project save at 10,000 vs 100 projects
  admin_load.py     admin pages at 10,000 projects, 8 clients, p95 (floor: /health, no database)

Usage: .venv/bin/python benchmarks/perf_report.py [--gitops-sizes 1000,5000] [--worker-projects 10000]
       [--admin-projects 10000] [--skip gitops,worker,admin]
Needs DATABASE_URL (PostgreSQL; the scripts create databases of their own beside it) and REDIS_URL (a Redis
database the worker benchmark may empty; `make bench` uses database 14). Exits 1 when a script fails; a target
that is not met is reported, not an error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cpu_reference import describe as _reference_text  # noqa: E402
from cpu_reference import file_creation_ms  # noqa: E402
from cpu_reference import reference as cpu_reference  # noqa: E402


def _autovacuum_workers() -> int | None:
    """PostgreSQL autovacuum workers running now (None when the database cannot be asked)."""
    try:
        from urllib.parse import urlparse

        import psycopg

        # pg_stat_activity covers the whole server: ask its maintenance database, which always exists
        url = urlparse(os.environ.get("DATABASE_URL", ""))._replace(scheme="postgresql", path="/postgres").geturl()
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
            return row.fetchone()[0]
    except Exception:  # noqa: BLE001 - the wait is a courtesy; a benchmark without it still runs
        return None


def _settle(limit_s: float = 120.0) -> None:
    """Wait (at most ``limit_s``) until the previous script's after-effects are gone: PostgreSQL's autovacuum of
    the databases it filled and a 1-minute load average below 1.0. Prints what it waited for."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        vacuums = _autovacuum_workers()
        load = os.getloadavg()[0]
        if not vacuums and load < 1.0:
            break
        time.sleep(5)
    print(f"(settled for {time.monotonic() - started:.0f} s: load average {os.getloadavg()[0]:.2f}, "
          f"autovacuum workers {_autovacuum_workers()})", flush=True)


def _run(script: str, *args: str) -> dict:
    """Run one benchmark script, echo its output, return the JSON object of its last line."""
    _settle()
    command = [sys.executable, str(HERE / script), *args]
    print(f"$ {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    sys.stdout.write(completed.stdout)
    if completed.returncode != 0:
        sys.stdout.write(completed.stderr[-4000:])
        raise SystemExit(f"{script} failed with exit code {completed.returncode}")
    print(f"({script}: {time.monotonic() - started:.0f} s)\n", flush=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _row(figure: str, value: float | None, unit: str, target: str, ok: bool | None, baseline: str) -> dict:
    return {"figure": figure, "value": value, "unit": unit, "target": target,
            "verdict": "n/a" if ok is None else ("met" if ok else "NOT met"), "baseline": baseline}


def gitops_rows(result: dict) -> list[dict]:
    rows = []
    by_size = {row["projects"]: row for row in result["results"]}
    for size, row in sorted(by_size.items()):
        rows.append(_row(f"full render + commit vs git floor, {size:,} projects", row["full_ratio"], "×", "≤ 1.0",
                         row["full_ratio"] is not None and row["full_ratio"] <= 1.0,
                         f"full {row['full_s']} s, floor {row['floor_s']} s"))
    big = by_size.get(max(by_size)) if by_size else None
    if big is not None:
        size = big["projects"]
        first = big.get("first_validated_s")
        rows.append(_row(f"first render + validation, {size:,} projects", first, "s", "≤ 20 s",
                         None if first is None else first <= 20,
                         f"render + commit without validation {big['full_s']} s; writing the files alone "
                         f"{big['write_only_s']} s"))
        rows.append(_row(f"no-op run, {size:,} projects", big["noop_s"], "s", "≤ 0.5 s, nothing written",
                         big["noop_s"] <= 0.5 and big["noop_files_written"] == 0 and not big["noop_commit"],
                         f"one-project run {big['one_s']} s; {big['noop_files_written']} files written"))
        rows.append(_row(f"preview of a never-rendered environment, {size:,} projects", big["preview_s"], "s",
                         "≤ 3 s to first screen", big["preview_s"] <= 3,
                         f"full render + commit {big['full_s']} s"))
    return rows


def worker_rows(result: dict) -> list[dict]:
    portal, *others = result["workers"]
    plain = others[0] if others else None
    projects = result["projects"]
    samples = portal.get("cold_samples_s") or [portal["change_to_done_s"]]
    return [
        _row(f"one-project change through a fresh rqworker, {projects:,} projects", portal["change_to_done_s"],
             "s", "≤ 1 s (cold worker)", portal["change_to_done_s"] <= 1.0,
             f"median of {len(samples)} fresh workers ({', '.join(map(str, samples))} s); worker start-up "
             f"{portal['startup_s']} s; rq's plain Worker {plain['change_to_done_s'] if plain else '-'} s"),
        _row(f"the same worker's next changes, back to back, {projects:,} projects", portal["warm_s"], "s",
             "≤ 1 s", portal["warm_s"] <= 1.0,
             f"each waits for the warm-up after the job before; rq's plain Worker "
             f"{plain['warm_s'] if plain else '-'} s"),
        _row(f"project save, {projects:,} vs 100 projects", result["save_ratio"], "×", "≤ 1.3",
             result["save_ratio"] <= 1.3, f"{result['save_n_ms']} ms vs {result['save_100_ms']} ms"),
    ]


def admin_rows(result: dict) -> list[dict]:
    pages = result["pages"]
    floor = pages.get("health")
    baseline = f"/health p95 {floor['p95_ms']:.0f} ms" if floor else "-"
    return [_row(f"admin {name}, {result['projects']:,} projects, {result['connections']} clients (p95)",
                 round(row["p95_ms"], 1), "ms", "≤ 250 ms", row["p95_ms"] <= 250,
                 f"p50 {row['p50_ms']:.0f} ms, {row['rps']:.0f} req/s; {baseline}")
            for name, row in pages.items() if name != "health"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gitops-sizes", default="1000,5000")
    parser.add_argument("--worker-projects", type=int, default=10000)
    parser.add_argument("--admin-projects", type=int, default=10000)
    parser.add_argument("--skip", default="", help="comma-separated: gitops, worker, admin")
    args = parser.parse_args()
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    load = os.getloadavg()
    reference = {"before": cpu_reference()}
    files = {"before": file_creation_ms()}
    print(f"Load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores); "
          f"Python reference loop {_reference_text(reference['before'])}; creating files in "
          f"{tempfile.gettempdir()} {files['before']} ms per 1,000 (benchmarks/cpu_reference.py)\n")

    raw: dict[str, dict] = {}
    rows: list[dict] = []
    if "gitops" not in skip:
        raw["gitops"] = _run("gitops_bench.py", "--sizes", args.gitops_sizes, "--repeat", "1")
        rows += gitops_rows(raw["gitops"])
    if "worker" not in skip:
        raw["worker"] = _run("worker_bench.py", "--projects", str(args.worker_projects))
        rows += worker_rows(raw["worker"])
    if "admin" not in skip:
        raw["admin"] = _run("admin_load.py", "--projects", str(args.admin_projects), "--duration", "10")
        rows += admin_rows(raw["admin"])

    reference["after"] = cpu_reference()
    files["after"] = file_creation_ms()
    print(f"Python reference loop: {_reference_text(reference['before'])} before the run, "
          f"{_reference_text(reference['after'])} after; creating files in {tempfile.gettempdir()}: "
          f"{files['before']} ms per 1,000 before, {files['after']} after (the machine's speed: compare runs only at "
          f"similar values)\n")
    width = max((len(row["figure"]) for row in rows), default=10)
    print(f"{'figure':<{width}} | {'measured':>10} | {'target':<26} | {'verdict':<7} | baseline / floor")
    for row in rows:
        value = "-" if row["value"] is None else f"{row['value']} {row['unit']}"
        print(f"{row['figure']:<{width}} | {value:>10} | {row['target']:<26} | {row['verdict']:<7} | "
              f"{row['baseline']}")
    print(json.dumps({"load_average": load, "python_reference_loop": reference, "file_creation_ms_per_1000": files,
                      "figures": rows, "raw": raw}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
