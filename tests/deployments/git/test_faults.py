"""Fault injection for the GitOps writer (issue 7): gitops_commit runs in a child process that is killed with
SIGKILL at random moments, and between runs the index of the repository's clone is deleted or corrupted, stale
locks and a half-written validation mirror are left behind, refs are damaged and the remote moves on. After every
kill the remote holds exactly the render before or the render after the run (never a file lost that the model
still renders, never someone else's file touched), and the next normal run converges to the full render.

The seed is printed; set GITOPS_FAULT_SEED to replay a run.
"""

import os
import random
import signal
import time
from pathlib import Path

import pytest

from deployments.git import MANIFEST_PATH, gitops_commit
from tests.deployments import gitutil as g

# The repository lock is a PostgreSQL advisory lock: every test here talks to the test database.
pytestmark = pytest.mark.django_db

KILLS = 24
UNITS = 30


def unit_files(key: str, version: int) -> dict[str, str]:
    files = {f"f{i}.yaml": f"unit: {key}\nfile: {i}\nversion: {version}\n" for i in range(5)}
    if version % 2 == 0:
        files["extra.yaml"] = f"unit: {key}\nextra: {version}\n"  # comes and goes inside the unit's folder
    return files


def model_spec(model: dict[str, tuple[int, bool]]) -> list[dict]:
    return [{"key": key, "directory": f"envs/{key}/", "files": unit_files(key, version)}
            for key, (version, active) in sorted(model.items()) if active]


def model_render(model: dict[str, tuple[int, bool]]) -> dict[str, bytes]:
    return {unit["directory"] + path: text.encode() for unit in model_spec(model)
            for path, text in unit["files"].items()}


def model_units(model: dict[str, tuple[int, bool]]) -> list[g.Unit]:
    make = g.UnitFactory()
    return [make(unit["key"], unit["directory"], unit["files"]) for unit in model_spec(model)]


def mutate(model: dict[str, tuple[int, bool]], rng: random.Random) -> dict[str, tuple[int, bool]]:
    """A few units change, up to two are hibernated (their folder goes), hibernated ones may come back."""
    model = dict(model)
    for key in rng.sample(sorted(model), rng.randint(1, 5)):
        version, active = model[key]
        model[key] = (version + 1, active)
    for key in rng.sample(sorted(k for k, (_, a) in model.items() if a), rng.randint(0, 2)):
        model[key] = (model[key][0], False)
    for key in [k for k, (_, a) in model.items() if not a]:
        if rng.random() < 0.3:
            model[key] = (model[key][0], True)
    return model


def accept(root, paths, read_base):
    """Validation that accepts everything (keeps the validation mirror in use)."""


def portal_files(files: dict[str, bytes]) -> dict[str, bytes]:
    return {path: data for path, data in files.items() if path.startswith("envs/")}


@pytest.mark.slow
def test_kill_9_at_random_points_with_index_damage_and_remote_races_loses_nothing(settings, tmp_path):
    seed = int(os.environ.get("GITOPS_FAULT_SEED") or time.time())
    print(f"GITOPS_FAULT_SEED={seed}")
    rng = random.Random(seed)
    settings.GITOPS_LOCK_BACKEND = "file"  # file lock: the kernel frees it the moment the killed child dies
    settings.GITOPS_BRANCH = "main"
    settings.GITOPS_PUSH_RETRIES = 5
    remote = g.bare_remote(tmp_path / "remote.git")
    other = g.clone(remote, tmp_path / "other")
    unowned = {"README.md": b"# GitOps\n"}
    g.commit_files(other, {"README.md": "# GitOps\n"}, "Initial commit")
    # The reported setup: GITOPS_REPO_DIR is a clone with a working tree and an index (which the portal ignores).
    repo_dir = g.clone(remote, tmp_path / "work")
    settings.GITOPS_REMOTE_URL = str(remote)
    settings.GITOPS_REPO_DIR = repo_dir

    model = {f"u{n:02d}": (0, True) for n in range(UNITS)}
    gitops_commit(units=model_units(model), scopes=["envs/"], message="Initial render", trailers={},
                  author_name="Ada", author_email="ada@example.com", validate=accept)
    assert portal_files(g.tree_files(remote)) == model_render(model)

    outcomes = {"before": 0, "after": 0}
    faults_seen = set()
    for kill in range(KILLS):
        before = model
        model = mutate(model, rng)
        process, _ = g.start_commit_process(tmp_path, repo_dir=repo_dir, remote=str(remote), lock="file",
                                            units=model_spec(model), scopes=["envs/"], pause_at="never",
                                            validate_sleep=rng.uniform(0, 0.4))
        time.sleep(rng.uniform(0.3, 3.5))
        os.killpg(process.pid, signal.SIGKILL)  # the child and any git command it is running
        process.wait()
        process.stdout.close()

        # Atomic: the remote holds the whole render before the run or the whole render after it, plus what others
        # committed; never a file lost that the model (before or after) still renders.
        files = g.tree_files(remote)
        ours = portal_files(files)
        assert ours in (model_render(before), model_render(model)), f"kill {kill}: the remote holds a mixed tree"
        outcomes["before" if ours == model_render(before) and ours != model_render(model) else "after"] += 1
        assert {path: files.get(path) for path in unowned} == unowned, f"kill {kill}: someone else's file changed"
        assert g.git(remote, "fsck", "--no-dangling") == ""

        fault = rng.choice(["none", "index-deleted", "index-corrupt", "remote-moved", "stale-locks",
                            "mirror-unmarked", "branch-corrupt"])
        faults_seen.add(fault)
        git_dir = repo_dir / ".git"
        if fault == "index-deleted":
            (git_dir / "index").unlink(missing_ok=True)
        elif fault == "index-corrupt":
            (git_dir / "index").write_bytes(b"DIRC" + os.urandom(200))
        elif fault == "remote-moved":
            text = f"# GitOps\nedited before kill {kill}\n"
            g.commit_files(other, {"README.md": text}, f"Docs {kill}")
            unowned["README.md"] = text.encode()
        elif fault == "stale-locks":
            for lock in ("index.lock", "packed-refs.lock", "config.lock", "refs/heads/main.lock"):
                (git_dir / lock).write_text("")
        elif fault == "mirror-unmarked":
            marker = Path(str(repo_dir) + ".validate") / "COMMIT"
            marker.unlink(missing_ok=True)
            stray = Path(str(repo_dir) + ".validate") / "tree" / "envs" / "stray.yaml"
            if stray.parent.exists():
                stray.write_text("left by a dead run\n")
        elif fault == "branch-corrupt":
            (git_dir / "refs/heads/main").write_text("garbage\n")

        # The next normal run converges on the full render, on top of whatever the remote holds.
        seen = []

        def validate(root, paths, read_base, _seen=seen, _model=model, _kill=kill):
            _seen.append(paths)
            on_disk = portal_files(g.work_files(root))
            assert on_disk == model_render(_model), f"kill {_kill}: the validation tree is not the render"

        result = gitops_commit(units=model_units(model), scopes=["envs/"], message=f"Converge {kill}",
                               trailers={}, author_name="Ada", author_email="ada@example.com", validate=validate)
        files = g.tree_files(remote)
        assert portal_files(files) == model_render(model), f"kill {kill} ({fault}): did not converge"
        assert {path: files.get(path) for path in unowned} == unowned
        assert MANIFEST_PATH in files and g.head(remote) == g.head(repo_dir)
        assert result.sha is None or result.pushed
        assert g.head(repo_dir, "refs/portal/candidate") is None

    assert sum(outcomes.values()) == KILLS >= 20
    print(f"kills: {outcomes}, faults: {sorted(faults_seen)}")
