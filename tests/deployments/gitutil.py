"""Helpers for the GitOps writer's tests: bare remotes, second clones, hand-made render units, and a child
process that runs gitops_commit and parks at a chosen step so a test can SIGKILL it there.

Run as `python -m tests.deployments.gitutil SPEC.json` (what `start_commit_process` does).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Unit:
    """Same fields as deployments.rendering.RenderUnit; built here so these tests do not depend on the renderer."""

    key: str
    directory: str
    fingerprint: str
    render: Callable[[], dict[str, bytes]]
    essential: tuple[str, ...] = ()


class UnitFactory:
    """Builds units from {relative path: text} and counts how often each one is rendered."""

    def __init__(self) -> None:
        self.renders: Counter[str] = Counter()

    def __call__(self, key: str, directory: str, files: dict[str, str | bytes],
                 essential: tuple[str, ...] = ()) -> Unit:
        data = {directory + relative: value.encode() if isinstance(value, str) else value
                for relative, value in files.items()}
        fingerprint = hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()

        def render() -> dict[str, bytes]:
            self.renders[key] += 1
            return dict(data)

        return Unit(key=key, directory=directory, fingerprint=fingerprint, render=render,
                    essential=tuple(directory + path for path in essential))


# --- git --------------------------------------------------------------------------------------------
def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def bare_remote(path: Path, branch: str = "main") -> Path:
    subprocess.run(["git", "init", "-q", "--bare", "-b", branch, str(path)], check=True)
    return path


def clone(remote: Path, dest: Path) -> Path:
    """A second clone, as another engineer (or another portal) would have."""
    subprocess.run(["git", "clone", "-q", str(remote), str(dest)], check=True, capture_output=True)
    git(dest, "config", "user.name", "Other Person")
    git(dest, "config", "user.email", "other@example.com")
    return dest


def commit_files(repo: Path, files: dict[str, str | None], message: str, *, push: bool = True) -> str:
    """Write (or delete, for None) files in a clone, commit them and push. Returns the commit sha."""
    if push and remote_has_branch(repo):
        git(repo, "pull", "-q", "--ff-only", "origin", "main")
    for path, text in files.items():
        target = repo / path
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    if push:
        git(repo, "push", "-q", "origin", "HEAD:refs/heads/main")
    return git(repo, "rev-parse", "HEAD")


def remote_has_branch(repo: Path, branch: str = "main") -> bool:
    return bool(git(repo, "ls-remote", "--heads", "origin", branch))


def head(repo: Path, ref: str = "refs/heads/main") -> str | None:
    result = subprocess.run(["git", "rev-parse", "--verify", "-q", ref], cwd=repo, capture_output=True, text=True)
    return result.stdout.strip() or None


def tree_files(repo: Path, ref: str = "refs/heads/main") -> dict[str, bytes]:
    """Every file of a commit (works on bare repositories)."""
    names = git(repo, "ls-tree", "-r", "-z", "--name-only", ref).split("\0")
    return {name: subprocess.run(["git", "show", f"{ref}:{name}"], cwd=repo, check=True, capture_output=True).stdout
            for name in names if name}


def subjects(repo: Path, ref: str = "refs/heads/main") -> list[str]:
    """Commit subjects, newest first."""
    return git(repo, "log", "--format=%s", ref).splitlines()


def work_files(root: Path) -> dict[str, bytes]:
    """Files of a working tree, .git left out."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def age_files(root: Path, seconds: int = 3600) -> None:
    """Move every working-tree mtime into the past, so any later write shows up however coarse the clock."""
    past = time.time() - seconds
    for p in root.rglob("*"):
        if p.is_file() and ".git" not in p.relative_to(root).parts:
            os.utime(p, (past, past))


# --- a gitops_commit in a child process, to be killed ------------------------------------------------
def child_env(*, repo_dir: Path, remote: str, lock: str) -> dict[str, str]:
    """The environment of a child process that uses the repository lock the test uses: the same test database
    (an advisory lock is per database) and lock backend ("auto": advisory on PostgreSQL; "file")."""
    from django.db import connection

    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    if db.get("PASSWORD"):
        url = url.replace("@", f":{db['PASSWORD']}@", 1)
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "GITOPS_REPO_DIR": str(repo_dir),
            "GITOPS_REMOTE_URL": remote, "DATABASE_URL": url, "GITOPS_LOCK_BACKEND": lock,
            "PYTHONPATH": str(ROOT)}


def start_commit_process(tmp_path: Path, *, repo_dir: Path, remote: str, lock: str, units: list[dict],
                         scopes: list[str], pause_at: str,
                         validate_sleep: float = 0.0) -> tuple[subprocess.Popen, Path]:
    """Start a child running gitops_commit that touches a marker file and sleeps when it reaches `pause_at`
    ("validate": files written, nothing committed; "push": committed locally, not pushed; "never": runs to the
    end, for tests that kill it at a random moment; `validate_sleep` seconds in its validate callback widen the
    window). Returns the process and the marker path; wait for the marker, then kill the process."""
    marker = tmp_path / f"paused-at-{pause_at}"
    spec = tmp_path / f"spec-{pause_at}.json"
    spec.write_text(json.dumps({"units": units, "scopes": scopes, "pause_at": pause_at, "marker": str(marker),
                                "validate_sleep": validate_sleep}))
    env = child_env(repo_dir=repo_dir, remote=remote, lock=lock)
    # Its own process group: os.killpg(process.pid, SIGKILL) kills it with the git commands it runs, as a machine
    # or container death does (a lone SIGKILL would leave a running `git push` to finish on its own).
    process = subprocess.Popen([sys.executable, "-m", "tests.deployments.gitutil", str(spec)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    return process, marker


def wait_for(marker: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"child exited early ({process.returncode}): {process.stdout.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("child never reached the pause point")
        time.sleep(0.05)


def _child(spec_path: str) -> None:
    import django

    django.setup()

    from deployments.git import gitops_commit

    spec = json.loads(Path(spec_path).read_text())
    make = UnitFactory()
    units = [make(u["key"], u["directory"], u["files"]) for u in spec["units"]]

    def park() -> None:
        Path(spec["marker"]).touch()
        time.sleep(300)  # the test kills us here

    def validate(workdir: Path, paths: list[str], read_base=None) -> None:
        if spec["pause_at"] == "validate":
            park()
        time.sleep(spec.get("validate_sleep") or 0)

    def progress(percent: int, message: str) -> None:
        if spec["pause_at"] == "push" and message.startswith("Pushing"):
            park()

    gitops_commit(units=units, scopes=spec["scopes"], message="Killed run", trailers={"Portal-Run": "killed"},
                  author_name="Child", author_email="child@example.com", validate=validate, progress=progress)


def start_lock_holder(tmp_path: Path, *, repo_dir: Path, lock: str,
                      ) -> tuple[subprocess.Popen, Path]:
    """Start a child that takes repository_lock(), touches a marker and sleeps while holding it."""
    marker = tmp_path / "holding-lock"
    env = child_env(repo_dir=repo_dir, remote="", lock=lock)
    process = subprocess.Popen([sys.executable, "-m", "tests.deployments.gitutil", "--hold-lock", str(marker),
                                ], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    return process, marker


def _hold_lock(marker: str) -> None:
    import django

    django.setup()

    from deployments.locks import repository_lock

    with repository_lock():
        Path(marker).touch()
        time.sleep(300)  # the test kills us here


if __name__ == "__main__":
    if sys.argv[1] == "--hold-lock":
        _hold_lock(sys.argv[2])
    else:
        _child(sys.argv[1])
