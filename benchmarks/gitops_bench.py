#!/usr/bin/env python
"""Benchmark: render + commit of the GitOps tree for 100, 1,000 and 5,000 projects, against the git floor.

For each size it measures, on a fresh SQLite database and a fresh local repository:
  full      first render + commit of the whole tree (validation excluded; measured separately as `validate`)
  noop      a second run with nothing changed (must write no file and make no commit)
  one       one project's container port changed (must write only that project's files)
  floor     the git command line adding and committing the same tree (`git add -A && git commit`),
            with the files already on disk (write_only: writing those files with plain Python, for scale)
  preview   the preview of every environment before anything was rendered (the whole tree shows as added)
  first_validated  a first render + commit with the validation gate on every file (`kubectl kustomize` of every
            kustomization, every object schema-checked), in a fresh repository
  one_validated  then one container's port changed, through the gate, as a render run does it
Each size runs --repeat rounds (fresh repository each) and reports medians, since disk timings here are noisy.
The floor's `git add` and the full run each start on a settled machine (earlier writes synced, cores idle).
Prints a table, then one JSON object with the figures and ratios as the last line.

Usage: .venv/bin/python benchmarks/gitops_bench.py [--sizes 100,1000,5000] [--containers 3] [--no-validate]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_reference import file_creation_ms, settle  # noqa: E402


def _setup_django(workdir: Path) -> None:
    os.environ["PORTAL_IGNORE_DOTENV"] = "1"
    os.environ["DEBUG"] = "true"
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["REDIS_URL"] = ""
    os.environ["GITOPS_REMOTE_URL"] = ""
    os.environ.setdefault("PORTAL_ENCRYPTION_KEYS", "n1kJ2b6zqYxVhB7gVJ0p3m8Xq9sR4tU5wY6zA7bC8dE=")
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _populate(size: int, containers: int):
    from deployments.models import Environment, NodeGroup
    from projects.models import Container, Project

    Container.objects.all().delete()
    Project.objects.all().delete()
    NodeGroup.objects.all().delete()
    Environment.objects.all().delete()
    environment = Environment.objects.create(
        name="bench", kind="eks", app_domain="bench.example.com", tls_mode="cert-manager-dns01",
        acme_email="ops@example.com", storage_provisioner="ebs-gp3",
        image_registry="123456789012.dkr.ecr.us-east-1.amazonaws.com",
        image_tag="production", aws_account_id="123456789012", aws_region="us-east-1", eks_cluster_name="bench",
    )
    NodeGroup.objects.create(environment=environment, name="spot", capacity_type="SPOT", instance_types="t3.large",
                             min_size=0, desired_size=0, max_size=10, labels="tesslate.io/workload-type=user-project",
                             taints="tesslate.io/spot=true:PreferNoSchedule", hosts="user-projects")
    projects = Project.objects.bulk_create(
        Project(environment=environment, name=f"Project {i}", slug=f"p{i}", owner=f"user-{i % 97}")
        for i in range(size)
    )
    roles = [("frontend", "frontend", 5173), ("backend", "backend", 8000), ("db", "database", 5432)]
    Container.objects.bulk_create(
        Container(project=project, directory=directory, role=role, port=port,
                  image="postgres:16-alpine" if role == "database" else "tesslate-devserver:latest")
        for project in projects for directory, role, port in roles[:containers]
    )
    return environment, projects


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def _floor(files: dict[str, bytes], workdir: Path) -> tuple[float, float]:
    """(seconds to write the files with plain Python, seconds for `git add -A && git commit` of them)."""
    repo = workdir / "floor"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    start = time.perf_counter()
    for path, data in files.items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    written = time.perf_counter()
    settle()
    started = time.perf_counter()
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=bench", "-c", "user.email=bench@portal.invalid", "commit", "-q", "-m", "floor")
    return written - start, time.perf_counter() - started


def _validate_changed(workdir: Path, changed_paths: list[str]) -> None:
    from deployments.validation import tree_validate_or_raise

    tree_validate_or_raise(root=workdir, paths=changed_paths)


def _run(full: bool = False, validate: bool = False):
    from deployments.git import gitops_commit
    from deployments.rendering import snapshot_scopes, tree_units
    from deployments.selectors import environments_snapshot

    start = time.perf_counter()
    snapshot = environments_snapshot(lazy=True)  # as a render run reads it
    result = gitops_commit(units=tree_units(snapshot), scopes=snapshot_scopes(snapshot), message="bench",
                           trailers={"Portal-Run": "bench"}, author_name="bench", author_email="bench@portal.invalid",
                           full=full, validate=_validate_changed if validate else None)
    return time.perf_counter() - start, result


def _change_one(project) -> None:
    container = project.containers.order_by("directory").first()
    container.port += 1
    container.save()


def _preview_seconds() -> tuple[float, int]:
    """Seconds for the first page of the preview of every environment against the repository (nothing rendered
    yet: the whole tree is added), as the admin's preview page asks for it (the diff of its first files)."""
    from deployments.admin import PREVIEW_PAGE_FILES
    from deployments.models import Environment
    from deployments.runs import environment_preview

    start = time.perf_counter()
    preview = environment_preview(environment_ids=list(Environment.objects.values_list("pk", flat=True)),
                                  diff_page=(0, PREVIEW_PAGE_FILES))
    return time.perf_counter() - start, len(preview.diff)


def bench_size(size: int, containers: int, workdir: Path, validate: bool, repeat: int) -> dict:
    """Median of `repeat` rounds; each round renders into a fresh repository."""
    from django.conf import settings

    from deployments.rendering import render_tree
    from deployments.selectors import environments_snapshot

    environment, projects = _populate(size, containers)
    files = render_tree(environments_snapshot())
    file_count = len(files)
    floors, writes, fulls, noops, ones, ones_validated, previews = [], [], [], [], [], [], []
    for round_number in range(repeat):
        write_seconds, floor_seconds = _floor(files, workdir)
        writes.append(write_seconds)
        floors.append(floor_seconds)

        repo_dir = workdir / f"repo-{size}-{round_number}"
        settings.GITOPS_REPO_DIR = repo_dir
        preview_seconds, preview_chars = _preview_seconds()  # nothing rendered yet: the whole tree is added
        previews.append(preview_seconds)
        settle()
        full_seconds, full = _run()
        noop_seconds, noop = _run()
        changed = projects[(size // 2 + round_number) % size]
        _change_one(changed)
        one_seconds, one = _run()
        fulls.append(full_seconds)
        noops.append(noop_seconds)
        ones.append(one_seconds)
        if round_number < repeat - 1:
            shutil.rmtree(repo_dir, ignore_errors=True)
    floor_seconds, full_seconds = statistics.median(floors), statistics.median(fulls)
    noop_seconds, one_seconds = statistics.median(noops), statistics.median(ones)
    touched = sorted({p.split("/")[3] for p in one.added + one.changed + one.deleted if p.startswith("environments/")
                      and p.count("/") >= 4})

    first_validated_seconds = None
    if validate:
        # A first render as a run makes it: render, commit from memory, and the gate on every file (the whole tree:
        # every kustomization built, every object schema-checked) before the commit. Then one change, validated.
        settings.GITOPS_REPO_DIR = workdir / f"repo-{size}-validated"
        first_validated_seconds, first = _run(validate=True)
        if first.sha is None:
            raise SystemExit("the validated first render committed nothing")
        for round_number in range(repeat):
            _change_one(projects[(size // 3 + round_number) % size])
            ones_validated.append(_run(validate=True)[0])
        shutil.rmtree(settings.GITOPS_REPO_DIR, ignore_errors=True)

    return {
        "projects": size, "files": file_count,
        "floor_s": round(floor_seconds, 3), "write_only_s": round(statistics.median(writes), 3),
        "full_s": round(full_seconds, 3),
        "noop_s": round(noop_seconds, 3), "one_s": round(one_seconds, 3),
        "one_validated_s": round(statistics.median(ones_validated), 3) if ones_validated else None,
        "first_validated_s": round(first_validated_seconds, 3) if first_validated_seconds is not None else None,
        "preview_s": round(statistics.median(previews), 3), "preview_diff_chars": preview_chars,
        "full_ratio": round(full_seconds / floor_seconds, 2) if floor_seconds else None,
        # The portal must put the files on disk too (kustomize builds them); this ratio counts that for the floor.
        "full_ratio_incl_write": round(full_seconds / (floor_seconds + statistics.median(writes)), 2),
        "noop_commit": noop.sha is not None, "noop_files_written": len(noop.added + noop.changed + noop.deleted),
        "one_files_written": len(one.added + one.changed + one.deleted),
        "one_only_that_project": touched == [f"proj-{changed.id}"],
        "full_files": len(full.added),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--containers", type=int, default=3, choices=[1, 2, 3])
    parser.add_argument("--no-validate", action="store_true", help="skip the validation timing")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per size; medians are reported")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    files_ms = {"before": file_creation_ms(str(workdir))}
    try:
        _setup_django(workdir)
        rows = [bench_size(int(size), args.containers, workdir, not args.no_validate, args.repeat)
                for size in args.sizes.split(",")]
        files_ms["after"] = file_creation_ms(str(workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"creating files in the work directory: {files_ms['before']} ms per 1,000 before, {files_ms['after']} "
          "after (benchmarks/cpu_reference.py: write_only_s, floor_s and first_validated_s follow it)")

    header = ("projects", "files", "write_only_s", "floor_s", "full_s", "full_ratio", "full_ratio_incl_write",
              "noop_s", "one_s", "one_validated_s", "one_files_written", "first_validated_s", "preview_s")
    print(" | ".join(f"{h:>12}" for h in header))
    for row in rows:
        print(" | ".join(f"{str(row[h]):>12}" for h in header))
    targets = {"full_ratio_max": 1.0, "one_s_max": 1.0, "noop_s_max": 0.5, "noop_files_written": 0,
               "first_validated_s_max_at_5000": 20, "preview_s_max_at_5000": 3}
    print(json.dumps({"results": rows, "file_creation_ms_per_1000": files_ms, "targets": targets}, sort_keys=True))


if __name__ == "__main__":
    main()
