"""The one GitOps writer (deployments.git) and its lock (deployments.locks), on the real git command line.

Remotes are bare repositories in tmp_path; "another engineer" is a second clone pushing to them. Crash tests
run gitops_commit in a child process and SIGKILL it at a chosen step. The portal's repository is bare (no
working tree, no index): files are read from its branch, and the plain-file tree the validation gate reads is the
mirror beside it (`mirror(repo_dir)`).
"""

import itertools
import logging
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from deployments.git import (
    MANIFEST_PATH,
    CommitResult,
    GitOpsError,
    GitOpsPushError,
    GitOpsPushRejected,
    RepositoryLockTimeout,
    gitops_commit,
    gitops_head,
    gitops_preview,
    repository_lock,
)
from deployments.git.manifest import Manifest, ManifestError, UnitEntry, blob_id
from deployments.git.repository import Repository, TreeStream
from deployments.locks import repository_lock_key, repository_lock_path
from tests.deployments import gitutil as g

# The repository lock is a PostgreSQL advisory lock: every test here talks to the test database.
pytestmark = pytest.mark.django_db

AUTHOR = {"author_name": "Ada Admin", "author_email": "ada@example.com"}


@pytest.fixture(params=["postgresql", "file"])
def lock_backend(request, settings):
    settings.GITOPS_LOCK_BACKEND = "file" if request.param == "file" else "auto"
    return request.param


def mirror(repo_dir: Path) -> Path:
    """The validation mirror's tree (deployments.git.mirror), beside the bare repository."""
    return Path(str(repo_dir) + ".validate") / "tree"


def accept(root, paths, read_base=None):
    """A validate callback that accepts everything (keeps the validation mirror up to date)."""


def assert_no_working_copy(repo_dir: Path) -> None:
    """The repository is bare: there is no working tree or index that could be lost or left dirty."""
    assert g.git(repo_dir, "rev-parse", "--is-bare-repository") == "true"
    assert not (repo_dir / "index").exists() and not (repo_dir / ".git").exists()


def commit(units, scopes=("envs/",), message="Render", **kwargs):
    kwargs.setdefault("trailers", {"Portal-Run": "7"})
    return gitops_commit(units=units, scopes=list(scopes), message=message, **AUTHOR, **kwargs)


def three_units(make, version=1):
    return [make("a", "envs/a/", {"app.yaml": f"a: {version}\n", "sub/extra.yaml": "x: 1\n"}),
            make("b", "envs/b/", {"app.yaml": "b: 1\n"}),
            make("c", "envs/c/", {"app.yaml": "c: 1\n"})]


ALL_FILES = ["envs/a/app.yaml", "envs/a/sub/extra.yaml", "envs/b/app.yaml", "envs/c/app.yaml"]


def spec(units):
    """The child process builds its units from this (see gitutil._child)."""
    return [{"key": key, "directory": directory, "files": files} for key, directory, files in units]


# --- writing ------------------------------------------------------------------------------------------
def test_first_write_commits_every_file_and_the_manifest(repo_dir, make):
    result = commit(three_units(make), message="Render minikube\n\nRequested from the admin.",
                    trailers={"Portal-Run": "7", "Changed-By": "ada"})

    assert result.sha and result.sha == gitops_head() == g.head(repo_dir)
    assert (result.added, result.changed, result.deleted) == (ALL_FILES, [], [])
    assert (result.pushed, result.push_attempts) == (False, 0)
    files = g.tree_files(repo_dir)
    assert set(files) == {*ALL_FILES, MANIFEST_PATH}
    assert files["envs/a/app.yaml"] == b"a: 1\n"
    manifest = Manifest.loads(files[MANIFEST_PATH])
    assert sorted(manifest.units) == ["a", "b", "c"]
    assert manifest.units["a"].directory == "envs/a/"
    assert manifest.units["a"].files == {
        path: g.git(repo_dir, "rev-parse", f"HEAD:{path}") for path in ("envs/a/app.yaml", "envs/a/sub/extra.yaml")
    }
    assert "+a: 1" in result.diff and "new file mode" in result.diff and MANIFEST_PATH not in result.diff

    message = g.git(repo_dir, "log", "-1", "--format=%B")
    assert message.startswith("Render minikube\n\nRequested from the admin.\n\n"
                              "4 files: 4 added, 0 changed, 0 deleted\n")
    assert "  envs/a/ (2 added)\n" in message and "  envs/c/ (1 added)\n" in message
    assert g.git(repo_dir, "log", "-1", "--format=%(trailers:only,unfold)") == "Portal-Run: 7\nChanged-By: ada"
    assert g.git(repo_dir, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == \
        "Ada Admin <ada@example.com>|Ada Admin <ada@example.com>"
    assert_no_working_copy(repo_dir)


def test_no_op_run_renders_and_writes_nothing(repo_dir, make):
    first = commit(three_units(make))
    g.age_files(repo_dir)
    before = g.mtimes(repo_dir)
    make.renders.clear()

    result = commit(three_units(make))  # new unit objects, same fingerprints

    assert result == CommitResult(sha=None)
    assert not make.renders
    assert g.mtimes(repo_dir) == before
    assert g.head(repo_dir) == first.sha


def test_changing_one_unit_renders_it_alone_and_writes_only_its_changed_file(repo_dir, make):
    commit(three_units(make), validate=accept)
    g.age_files(mirror(repo_dir))
    before = g.mtimes(mirror(repo_dir))
    make.renders.clear()

    result = commit(three_units(make, version=2), validate=accept)

    assert (result.added, result.changed, result.deleted) == ([], ["envs/a/app.yaml"], [])
    assert dict(make.renders) == {"a": 1}
    after = g.mtimes(mirror(repo_dir))
    assert {path for path in after if after[path] != before[path]} == {"envs/a/app.yaml", MANIFEST_PATH}
    assert (mirror(repo_dir) / "envs/a/app.yaml").read_text() == "a: 2\n"
    assert g.tree_files(repo_dir)["envs/a/app.yaml"] == b"a: 2\n"
    assert "-a: 1\n+a: 2\n" in result.diff
    assert g.git(repo_dir, "show", "--name-only", "--format=", "HEAD").splitlines() == [MANIFEST_PATH,
                                                                                      "envs/a/app.yaml"]


def test_removed_unit_is_deleted_with_its_folder(repo_dir, make):
    a, b, c = three_units(make)
    commit([a, b, c])

    result = commit([a, c])

    assert (result.added, result.changed, result.deleted) == ([], [], ["envs/b/app.yaml"])
    files = g.tree_files(repo_dir)
    assert not any(path.startswith("envs/b/") for path in files)
    assert "envs/b/app.yaml" not in files and "b" not in Manifest.loads(files[MANIFEST_PATH]).units


def test_files_a_unit_no_longer_renders_are_deleted_and_emptied_folders_removed(repo_dir, make):
    a, b, c = three_units(make)
    commit([a, b, c])

    result = commit([make("a", "envs/a/", {"app.yaml": "a: 1\n"}), b, c])

    assert result.deleted == ["envs/a/sub/extra.yaml"]
    files = g.tree_files(repo_dir)
    assert not any(path.startswith("envs/a/sub/") for path in files) and "envs/a/app.yaml" in files


def test_unowned_files_are_never_modified_or_deleted(repo_dir, remote, make, tmp_path):
    a, b, c = three_units(make)
    commit([a, b, c])
    other = g.clone(remote, tmp_path / "other")
    g.commit_files(other, {"README.md": "# GitOps\n", "envs/b/NOTES.md": "by hand\n", "docs/x.md": "x\n"}, "Docs")

    result = commit([a])  # b and c are gone, inside the scope envs/

    assert result.deleted == ["envs/b/app.yaml", "envs/c/app.yaml"]
    files = g.tree_files(remote)
    assert files["README.md"] == b"# GitOps\n" and files["envs/b/NOTES.md"] == b"by hand\n"
    assert files["docs/x.md"] == b"x\n"
    assert g.tree_files(repo_dir) == files and not any(path.startswith("envs/c/") for path in files)


def test_scopes_limit_deletion(repo_dir, make):
    a, b, c = three_units(make)
    commit([a, b, c])

    # A render of envs/a/ alone does not speak for b and c.
    assert commit([a], scopes=["envs/a/"]).sha is None
    assert {"envs/b/app.yaml", "envs/c/app.yaml"} <= set(g.tree_files(repo_dir))

    result = commit([a], scopes=["envs/a/", "envs/c/"])
    assert result.deleted == ["envs/c/app.yaml"]
    assert "envs/b/app.yaml" in g.tree_files(repo_dir)
    assert sorted(Manifest.loads(g.tree_files(repo_dir)[MANIFEST_PATH]).units) == ["a", "b"]


def test_a_new_unit_may_take_over_the_paths_of_a_gone_one(repo_dir, make):
    a, b, c = three_units(make)
    commit([a, b, c])

    moved = make("a-renamed", "envs/a/", {"app.yaml": "a: 9\n", "sub/extra.yaml": "x: 1\n"})
    result = commit([moved, b, c])

    assert (result.added, result.changed, result.deleted) == ([], ["envs/a/app.yaml"], [])
    units = Manifest.loads(g.tree_files(repo_dir)[MANIFEST_PATH]).units
    assert "a" not in units and sorted(units["a-renamed"].files) == ["envs/a/app.yaml", "envs/a/sub/extra.yaml"]


def test_identical_files_without_a_manifest_are_adopted_in_a_bookkeeping_commit(repo_dir, make):
    repo_dir.mkdir()
    g.git(repo_dir, "init", "-q", "-b", "main")
    for path, text in {"envs/a/app.yaml": "a: 1\n", "envs/a/sub/extra.yaml": "x: 1\n", "envs/b/app.yaml": "b: 1\n",
                       "envs/c/app.yaml": "c: 1\n"}.items():
        (repo_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (repo_dir / path).write_text(text)
    g.git(repo_dir, "add", "-A")
    g.git(repo_dir, "-c", "user.name=x", "-c", "user.email=x@example.com", "commit", "-q", "-m", "By hand")
    # An existing clone: its .git is used, its working tree and index are never read or written.
    g.age_files(repo_dir)
    untouched = (g.mtimes(repo_dir), g.work_files(repo_dir), (repo_dir / ".git/index").read_bytes())

    result = commit(three_units(make))

    assert result.sha and (result.added, result.changed, result.deleted, result.diff) == ([], [], [], "")
    assert g.git(repo_dir, "show", "--name-only", "--format=", "HEAD") == MANIFEST_PATH
    assert "only the portal's record" in g.git(repo_dir, "log", "-1", "--format=%B")
    assert (g.mtimes(repo_dir), g.work_files(repo_dir), (repo_dir / ".git/index").read_bytes()) == untouched
    make.renders.clear()
    assert commit(three_units(make)).sha is None and not make.renders


def test_a_fingerprint_change_without_new_bytes_makes_no_commit(repo_dir, make):
    first = commit(three_units(make))
    a, b, c = three_units(make)

    result = commit([g.Unit(a.key, a.directory, "another fingerprint", a.render), b, c])

    assert result.sha is None and g.head(repo_dir) == first.sha
    assert_no_working_copy(repo_dir)


def test_full_re_render_repairs_hand_edits(repo_dir, remote, make, tmp_path):
    commit(three_units(make))
    other = g.clone(remote, tmp_path / "other")
    g.commit_files(other, {"envs/b/app.yaml": "b: edited by hand\n"}, "Hand edit")

    assert commit(three_units(make)).sha is None  # fingerprints unchanged: nothing is rendered or compared

    result = commit(three_units(make), full=True)
    assert result.changed == ["envs/b/app.yaml"] and result.pushed
    assert g.tree_files(remote)["envs/b/app.yaml"] == b"b: 1\n"


def test_many_files_are_staged_by_folder_into_one_pack(repo_dir, make):
    units = [make(f"u{n}", f"envs/u{n}/", {f"f{i}.yaml": f"n: {n}-{i}\n" for i in range(400)}) for n in range(3)]

    result = commit(units)

    assert len(result.added) == 1200
    counts = dict(line.split(": ") for line in g.git(repo_dir, "count-objects", "-v").splitlines())
    assert int(counts["in-pack"]) >= 1200  # bulk check-in, not 1,200 loose objects
    assert_no_working_copy(repo_dir)

    units[1] = make("u1", "envs/u1/", {f"f{i}.yaml": f"n: 1-{i}{'!' if i == 7 else ''}\n" for i in range(400)})
    assert commit(units).changed == ["envs/u1/f7.yaml"]


def test_files_reach_git_while_the_render_goes_on(repo_dir, make):
    """Each rendered file is handed to git fast-import as soon as it is rendered, not after the whole render."""
    stored_before_render: list[int] = []
    written: list[bytes] = []
    original_add = TreeStream.add

    def add(self, data):
        written.append(data)
        original_add(self, data)

    def render(n):
        def files():
            stored_before_render.append(len(written))
            return {f"envs/u{n}/app.yaml": f"n: {n}\n".encode()}
        return files

    units = [g.Unit(key=f"u{n}", directory=f"envs/u{n}/", fingerprint="1", render=render(n)) for n in range(3)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TreeStream, "add", add)
        result = commit(units)

    assert stored_before_render == [0, 1, 2]  # unit n renders after the files of units 0..n-1 went to git
    assert sorted(written) == [b"n: 0\n", b"n: 1\n", b"n: 2\n"]
    assert g.tree_files(repo_dir) == {f"envs/u{n}/app.yaml": f"n: {n}\n".encode() for n in range(3)} | {
        MANIFEST_PATH: g.tree_files(repo_dir)[MANIFEST_PATH]}
    assert result.added == [f"envs/u{n}/app.yaml" for n in range(3)]


def test_a_tree_stream_refuses_an_unknown_blob_and_ends_cleanly_when_abandoned(repo_dir, make):
    commit(three_units(make))
    repo = Repository.open(repo_dir, remote_url="", branch="main")
    try:
        with repo.tree_stream() as stream:
            stream.add(b"stored\n")
            tree = stream.tree(repo.head(), {"envs/new.yaml": blob_id(b"stored\n"), "envs/inline.yaml": b"i\n"},
                               ["envs/b/app.yaml"])
        listing = g.git(repo_dir, "ls-tree", "-r", "--name-only", tree).splitlines()
        assert "envs/new.yaml" in listing and "envs/inline.yaml" in listing and "envs/b/app.yaml" not in listing

        with pytest.raises(GitOpsError, match="Blob not found"), repo.tree_stream() as stream:
            stream.add(b"other\n")
            stream.tree(repo.head(), {"envs/missing.yaml": blob_id(b"never stored\n")}, [])

        with repo.tree_stream() as stream:  # abandoned while small: what it held back is dropped
            stream.add(b"abandoned\n")
        assert subprocess.run(["git", "-C", str(repo_dir), "cat-file", "-e", blob_id(b"abandoned\n")]).returncode
        big = b"x" * (TreeStream.SMALL_STREAM_BYTES + 1)
        with repo.tree_stream() as stream:  # abandoned once git had it: stored, nothing referenced, no crash report
            stream.add(b"abandoned too\n")
            stream.add(big)
        assert g.git(repo_dir, "cat-file", "-t", blob_id(b"abandoned too\n")) == "blob"
        assert g.git(repo_dir, "cat-file", "-t", blob_id(big)) == "blob"
        assert repo.resolve("refs/portal/build") is None
        assert not list(repo_dir.glob("fast_import_crash_*"))
    finally:
        repo.close()


def _stored_sizes(repo_dir: Path) -> dict[str, tuple[int, int]]:
    """{object id: (size, size in its pack)} of every packed object, from git verify-pack."""
    sizes = {}
    git_dir = Path(g.git(repo_dir, "rev-parse", "--absolute-git-dir"))
    for pack in (git_dir / "objects" / "pack").glob("*.idx"):
        for line in g.git(repo_dir, "verify-pack", "-v", str(pack)).splitlines():
            fields = line.split()
            if len(fields) >= 5 and len(fields[0]) == 40 and fields[1] in ("blob", "tree", "commit"):
                sizes[fields[0]] = (int(fields[2]), int(fields[3]))
    return sizes


def test_a_small_stream_stores_its_large_manifest_uncompressed_and_a_large_stream_compresses(repo_dir, make):
    """A change to a few files is mostly the manifest: deflating it is the commit's largest cost, so a small stream
    is stored at zlib level 0; a render of many files is stored compressed."""
    commit(three_units(make))
    repo = Repository.open(repo_dir, remote_url="", branch="main")
    manifest_like = b"".join(b"unit-%06d fingerprint blob-ids\n" % n for n in range(40_000))  # 1.3 MB, compressible
    files = {f"envs/many/f{n}.yaml": b"kind: ConfigMap\nmetadata: {name: f%d}\n" % n + b"#" * 2_000
             for n in range(200)}  # 400 kB, beyond SMALL_STREAM_BYTES
    try:
        with repo.tree_stream() as small:
            small.add(b"changed: 1\n")
            small.tree(repo.head(), {"envs/one.yaml": blob_id(b"changed: 1\n"), "manifest.txt": manifest_like}, [])
        with repo.tree_stream() as large:
            for data in files.values():
                large.add(data)
            large.tree(repo.head(), {path: blob_id(data) for path in files.keys()}, [])
    finally:
        repo.close()

    assert (small.compression, large.compression) == (0, 1)
    sizes = _stored_sizes(repo_dir)
    size, stored = sizes[blob_id(manifest_like)]
    assert stored >= size  # deflate's stored blocks: not smaller than the bytes
    assert sum(sizes[blob_id(data)][1] for data in files.values()) < sum(map(len, files.values())) / 4


def test_progress_is_reported_in_order_up_to_100(repo_dir, remote, make):
    reports = []

    commit(three_units(make), progress=lambda percent, message: reports.append((percent, message)))

    percents = [percent for percent, _ in reports]
    assert percents == sorted(percents) and percents[0] == 0 and percents[-1] == 100
    messages = " | ".join(message for _, message in reports)
    assert "Fetching origin" in messages and "Pushing" in messages and "Committed and pushed" in messages


# --- validation and errors ----------------------------------------------------------------------------
def test_failed_validation_restores_the_working_copy_and_propagates(repo_dir, make):
    first = commit(three_units(make))
    seen = []

    def validate(workdir, paths):
        seen.append(paths)
        assert (workdir / "envs/d/app.yaml").read_text() == "d: 1\n"
        assert not (workdir / "envs/c/app.yaml").exists()
        raise RuntimeError("kustomize build failed")

    units = [*three_units(make, version=2)[:2], make("d", "envs/d/", {"app.yaml": "d: 1\n"})]
    with pytest.raises(RuntimeError, match="kustomize build failed"):
        commit(units, validate=validate)

    assert seen == [["envs/a/app.yaml", "envs/c/app.yaml", "envs/d/app.yaml"]]
    assert g.head(repo_dir) == first.sha
    assert_no_working_copy(repo_dir)
    # The validation tree is back at the branch head (and marked so): nothing of the refused change is left.
    assert g.work_files(mirror(repo_dir)) == g.tree_files(repo_dir)
    assert (mirror(repo_dir).parent / "COMMIT").read_text().strip() == first.sha


def test_a_unit_failing_to_render_leaves_nothing_behind(repo_dir, make):
    first = commit(three_units(make))

    def broken():
        raise KeyError("missing value")

    units = [make("0-new", "envs/new/", {"app.yaml": "new\n"}), *three_units(make, 2),
             g.Unit(key="z", directory="envs/z/", fingerprint="z", render=broken)]
    with pytest.raises(KeyError):
        commit(units)

    assert g.head(repo_dir) == first.sha
    assert_no_working_copy(repo_dir)
    assert "envs/new/app.yaml" not in g.tree_files(repo_dir)


BAD_UNITS = {
    "path outside the unit's folder": lambda make: [make("a", "envs/a/", {}),
                                                     g.Unit("b", "envs/b/", "f", lambda: {"envs/a/x.yaml": b"x"})],
    "dot-dot in a path": lambda make: [g.Unit("a", "envs/a/", "f", lambda: {"envs/a/../../x.yaml": b"x"})],
    "path into .git": lambda make: [g.Unit("a", "envs/", "f", lambda: {"envs/.git/config": b"x"})],
    "directory without slash": lambda make: [g.Unit("a", "envs/a", "f", lambda: {})],
    "manifest folder": lambda make: [g.Unit("a", ".tesslate-portal/", "f", lambda: {})],
    "duplicate keys": lambda make: [make("a", "envs/a/", {"x": "1"}), make("a", "envs/b/", {"x": "1"})],
    "two units, one path": lambda make: [make("a", "envs/", {"a/app.yaml": "1"}),
                                         make("b", "envs/a/", {"app.yaml": "2"})],
    "text instead of bytes": lambda make: [g.Unit("a", "envs/a/", "f", lambda: {"envs/a/x.yaml": "text"})],
    "scope without slash": None,
}


@pytest.mark.parametrize("case", sorted(BAD_UNITS))
def test_malformed_units_are_refused_and_nothing_is_written(repo_dir, make, case):
    first = commit(three_units(make))
    scopes = ["envs"] if case == "scope without slash" else ["envs/"]
    units = three_units(make) if BAD_UNITS[case] is None else BAD_UNITS[case](make)

    with pytest.raises((ValueError, TypeError)):
        commit(units, scopes=scopes)

    assert g.head(repo_dir) == first.sha
    assert_no_working_copy(repo_dir)
    assert g.tree_files(repo_dir) == g.tree_files(repo_dir, first.sha)


def test_remote_credentials_never_appear_in_errors_or_logs(settings, repo_dir, make, caplog):
    caplog.set_level(logging.DEBUG)
    settings.GITOPS_REMOTE_URL = "https://portal:s3cr3t-token@127.0.0.1:9/gitops.git"

    with pytest.raises(GitOpsError) as info:
        commit(three_units(make))

    assert "s3cr3t-token" not in str(info.value) and "s3cr3t-token" not in caplog.text
    assert "***@127.0.0.1:9" in str(info.value)


def test_gitops_head_is_none_before_the_first_commit(repo_dir):
    assert gitops_head() is None


# --- pushing ------------------------------------------------------------------------------------------
def test_push_to_an_empty_bare_remote_and_then_on_top_of_it(repo_dir, remote, make, tmp_path):
    first = commit(three_units(make))

    assert first.pushed and first.push_attempts == 1
    assert g.head(remote) == first.sha == gitops_head()
    other = g.clone(remote, tmp_path / "other")
    assert (other / "envs/a/app.yaml").read_text() == "a: 1\n"

    second = commit(three_units(make, 2), message="Second")
    assert second.pushed and g.head(remote) == second.sha
    assert g.git(remote, "rev-parse", f"{second.sha}^") == first.sha


def test_first_render_builds_on_existing_remote_history(repo_dir, remote, make, tmp_path):
    other = g.clone(remote, tmp_path / "other")
    existing = g.commit_files(other, {"README.md": "# GitOps\n"}, "Initial commit")

    result = commit(three_units(make))

    assert g.git(remote, "rev-parse", f"{result.sha}^") == existing
    assert set(g.tree_files(remote)) == {"README.md", MANIFEST_PATH, *ALL_FILES}


def test_push_race_keeps_both_changes_without_forcing(repo_dir, remote, make, tmp_path):
    commit(three_units(make))
    other = g.clone(remote, tmp_path / "other")
    calls = []

    def validate(workdir, paths):
        calls.append(paths)
        if len(calls) == 1:  # someone else pushes while this run is between writing and pushing
            g.commit_files(other, {"README.md": "unrelated\n"}, "Unrelated change")

    result = commit(three_units(make, 2), message="Render v2", validate=validate)

    assert result.pushed and result.push_attempts == 2
    assert len(calls) == 2  # re-applied and validated again on the new head
    assert g.subjects(remote)[:2] == ["Render v2", "Unrelated change"]
    assert g.git(remote, "rev-parse", f"{result.sha}^") == g.head(other)
    files = g.tree_files(remote)
    assert files["README.md"] == b"unrelated\n" and files["envs/a/app.yaml"] == b"a: 2\n"
    assert result.changed == ["envs/a/app.yaml"]


def test_push_gives_up_after_the_configured_attempts(settings, repo_dir, remote, make, tmp_path):
    settings.GITOPS_PUSH_RETRIES = 3
    commit(three_units(make))
    other = g.clone(remote, tmp_path / "other")
    edits = []

    def validate(workdir, paths):
        edits.append(g.commit_files(other, {"README.md": f"edit {len(edits)}\n"}, f"Edit {len(edits)}"))

    with pytest.raises(GitOpsPushRejected) as info:
        commit(three_units(make, 2), message="Render v2", validate=validate)

    assert info.value.attempts == 3 and len(edits) == 3
    assert "rejected 3 times" in str(info.value) and "GITOPS_PUSH_RETRIES=3" in str(info.value)
    assert g.head(remote) == edits[-1] and "Render v2" not in g.subjects(remote)
    # No unpushed commit is left behind: the working copy is back on the remote head its last attempt built on.
    assert gitops_head() == edits[-2]


def test_a_push_refused_by_the_remote_is_not_retried(repo_dir, remote, make):
    first = commit(three_units(make))
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)

    with pytest.raises(GitOpsPushError) as info:
        commit(three_units(make, 2))

    assert not isinstance(info.value, GitOpsPushRejected) and "protected branch" in str(info.value)
    assert g.head(remote) == first.sha == gitops_head()


def test_concurrent_runs_are_serialized_by_the_lock(repo_dir, remote, make):
    a, b, _ = three_units(make)
    results, errors = {}, []

    def run(name, unit):
        try:
            results[name] = commit([unit], scopes=[unit.directory], message=f"Render {name}")
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name, unit)) for name, unit in (("a", a), ("b", b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    # Serialized runs never race each other's push: one attempt each, a linear history holding both.
    assert results["a"].push_attempts == results["b"].push_attempts == 1
    assert sorted(g.subjects(remote)) == ["Render a", "Render b"]
    assert {"envs/a/app.yaml", "envs/b/app.yaml"} <= set(g.tree_files(remote))


# --- crashes ------------------------------------------------------------------------------------------
def test_stale_git_lock_files_from_a_dead_process_do_not_block(repo_dir, make, caplog):
    commit(three_units(make))
    (repo_dir / "index.lock").write_text("")
    (repo_dir / "refs/heads/main.lock").write_text("")
    blocked = subprocess.run(["git", "update-ref", "refs/heads/main", "HEAD"], cwd=repo_dir, capture_output=True,
                             text=True)
    assert blocked.returncode != 0 and "main.lock" in blocked.stderr  # git itself would refuse to work
    caplog.set_level(logging.WARNING, logger="deployments.git")

    result = commit(three_units(make, 2))

    assert result.changed == ["envs/a/app.yaml"]
    assert not (repo_dir / "index.lock").exists() and not (repo_dir / "refs/heads/main.lock").exists()
    assert "index.lock" in caplog.text and "refs/heads/main.lock" in caplog.text and "stale" in caplog.text


UNITS_V2_WITH_D = [("a", "envs/a/", {"app.yaml": "a: 2\n", "sub/extra.yaml": "x: 1\n"}),
                   ("b", "envs/b/", {"app.yaml": "b: 1\n"}), ("c", "envs/c/", {"app.yaml": "c: 1\n"}),
                   ("d", "envs/d/", {"app.yaml": "d: 1\n"})]


@pytest.mark.slow
def test_run_killed_while_validating_leaves_the_remote_intact(settings, repo_dir, remote, make, tmp_path):
    first = commit(three_units(make))
    # The advisory lock dies with the killed holder's connection instead of blocking the next run.
    process, marker = g.start_commit_process(tmp_path, repo_dir=repo_dir, remote=str(remote),
                                             lock="auto", units=spec(UNITS_V2_WITH_D),
                                             scopes=["envs/"], pause_at="validate")
    g.wait_for(marker, process)
    assert (mirror(repo_dir) / "envs/d/app.yaml").exists()  # written for validation, not committed
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert g.head(remote) == first.sha

    result = commit(three_units(make, 3))  # the next run converges on what it renders; d never existed

    assert result.pushed and g.git(remote, "rev-parse", f"{result.sha}^") == first.sha
    assert (result.added, result.changed, result.deleted) == ([], ["envs/a/app.yaml"], [])
    assert not (mirror(repo_dir) / "envs/d").exists()
    assert_no_working_copy(repo_dir)
    assert g.work_files(mirror(repo_dir)) == g.tree_files(remote)


@pytest.mark.slow
@pytest.mark.parametrize("remote_before", ["rendered", "empty"])
def test_run_killed_after_the_local_commit_before_the_push(settings, repo_dir, remote, make, tmp_path,
                                                           remote_before):
    settings.GITOPS_LOCK_BACKEND = "file"  # file lock: released by the kernel when the holder dies
    first = commit(three_units(make)) if remote_before == "rendered" else None
    process, marker = g.start_commit_process(tmp_path, repo_dir=repo_dir, remote=str(remote), lock="file",
                                             units=spec(UNITS_V2_WITH_D), scopes=["envs/"], pause_at="push")
    g.wait_for(marker, process)
    assert g.subjects(repo_dir, "refs/portal/candidate")[0] == "Killed run"  # committed locally
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert g.head(remote) == (first.sha if first else None)

    result = commit(three_units(make, 3))

    assert result.pushed and g.head(remote) == result.sha
    assert g.subjects(remote) == (["Render", "Render"] if first else ["Render"])
    if first:
        assert g.git(remote, "rev-parse", f"{result.sha}^") == first.sha
        assert (result.added, result.changed) == ([], ["envs/a/app.yaml"])
    else:
        assert result.added == ALL_FILES  # the never-pushed commit was discarded, not built upon
    assert g.head(repo_dir, "refs/portal/candidate") is None
    assert g.work_files(mirror(repo_dir)) == g.tree_files(remote)
    assert "envs/d/app.yaml" not in g.tree_files(remote)


@pytest.mark.slow
def test_run_killed_without_a_remote_leaves_a_half_written_mirror_the_next_run_rebuilds(settings, repo_dir, make,
                                                                                        tmp_path):
    settings.GITOPS_LOCK_BACKEND = "file"
    first = commit(three_units(make), validate=accept)
    process, marker = g.start_commit_process(tmp_path, repo_dir=repo_dir, remote="", lock="file",
                                             units=spec(UNITS_V2_WITH_D), scopes=["envs/"], pause_at="validate")
    g.wait_for(marker, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (mirror(repo_dir) / "envs/d/app.yaml").exists()
    assert not (mirror(repo_dir).parent / "COMMIT").exists()  # half-written: marked unknown, never trusted

    result = commit(three_units(make))  # what the branch already holds

    assert result.sha is None and g.head(repo_dir) == first.sha
    assert "envs/d/app.yaml" not in g.tree_files(repo_dir)
    seen = []

    def validate(root, paths, read_base):
        seen.append(paths)
        assert not (root / "envs/d").exists() and (root / "envs/a/app.yaml").read_text() == "a: 2\n"
        assert read_base("envs/a/app.yaml") == b"a: 1\n" and read_base("envs/d/app.yaml") is None

    assert commit(three_units(make, 2), validate=validate).changed == ["envs/a/app.yaml"]
    assert seen == [["envs/a/app.yaml"]]
    assert g.work_files(mirror(repo_dir)) == g.tree_files(repo_dir)


# --- preview ------------------------------------------------------------------------------------------
def test_preview_of_a_repository_that_does_not_exist_yet(repo_dir, make):
    preview = gitops_preview(units=three_units(make), scopes=["envs/"])

    assert (preview.added, preview.changed, preview.deleted) == (ALL_FILES, [], [])
    assert "+a: 1" in preview.diff and MANIFEST_PATH not in preview.diff
    assert not repo_dir.exists()


def test_preview_against_an_empty_remote_pushes_nothing(repo_dir, remote, make):
    preview = gitops_preview(units=three_units(make), scopes=["envs/"])

    assert preview.added == ALL_FILES
    assert g.head(remote) is None


def test_preview_diffs_against_the_remote_head_and_touches_nothing(repo_dir, remote, make, tmp_path):
    first = commit(three_units(make))
    other = g.clone(remote, tmp_path / "other")
    g.commit_files(other, {"README.md": "newer remote head\n"}, "Unrelated change")
    g.age_files(repo_dir)
    before = (g.mtimes(repo_dir), g.git(repo_dir, "for-each-ref"), g.head(repo_dir))
    a, b, _ = three_units(make, 2)

    preview = gitops_preview(units=[a, b], scopes=["envs/"])

    assert (preview.added, preview.changed, preview.deleted) == ([], ["envs/a/app.yaml"], ["envs/c/app.yaml"])
    assert "+a: 2" in preview.diff and "-c: 1" in preview.diff and "README" not in preview.diff
    assert (g.mtimes(repo_dir), g.git(repo_dir, "for-each-ref"), g.head(repo_dir)) == before
    assert g.head(repo_dir) == first.sha and g.subjects(remote)[0] == "Unrelated change"
    # The rendered bytes went to the preview's private object store, not into the working copy's.
    new_blob = subprocess.run(["git", "hash-object", "--stdin"], input=b"a: 2\n", capture_output=True).stdout
    missing = subprocess.run(["git", "cat-file", "-e", new_blob.decode().strip()], cwd=repo_dir)
    assert missing.returncode != 0


def test_preview_matches_the_commit_that_follows(repo_dir, make):
    commit(three_units(make))
    units = [make("a", "envs/a/", {"app.yaml": "a: 5\n"}), make("e", "envs/e/", {"app.yaml": "e\n"})]

    preview = gitops_preview(units=units, scopes=["envs/"])
    result = commit(units)

    assert (preview.added, preview.changed, preview.deleted) == (result.added, result.changed, result.deleted)
    assert preview.diff == result.diff


def many_units(make, version):
    """30 units; `version` changes the first ten's files, the rest stay as they are."""
    units = []
    for number in range(30):
        text = f"n: {number}\nv: {version if number < 10 else 0}\n"
        units.append(make(f"u{number:02}", f"envs/u{number:02}/", {"app.yaml": text, "more/x.yaml": f"x: {number}\n"}))
    return units


def test_paged_preview_rendered_in_processes_matches_the_commit(repo_dir, make, settings, monkeypatch):
    from deployments.git import writer

    commit(many_units(make, 1)[:25])  # u25..u29 are new below; u00..u09 change
    monkeypatch.setattr(writer, "PREVIEW_PARALLEL_MIN_UNITS", 2)
    monkeypatch.setattr(writer, "_PREVIEW_CHUNK_UNITS", 3)
    settings.GITOPS_PREVIEW_PROCESSES = 2
    units = [*many_units(make, 2)[:24], *many_units(make, 2)[25:]]  # u24 is gone: its files are deleted
    make.renders.clear()

    pages = [gitops_preview(units=units, scopes=["envs/"], diff_page=(first, 7)) for first in range(0, 35, 7)]
    assert not make.renders  # every unit was rendered in a render process, none in this one
    result = commit(units)

    first = pages[0]
    assert (first.added, first.changed, first.deleted) == (result.added, result.changed, result.deleted)
    assert len(result.added) == 10 and len(result.changed) == 10 and len(result.deleted) == 2
    assert [path for page in pages for path in page.diff_paths] == first.paths
    assert "".join(page.diff for page in pages) == result.diff


def test_preview_render_error_in_a_process_is_the_real_error(repo_dir, make, settings, monkeypatch):
    from deployments.git import writer

    monkeypatch.setattr(writer, "PREVIEW_PARALLEL_MIN_UNITS", 2)
    settings.GITOPS_PREVIEW_PROCESSES = 2
    units = many_units(make, 1)

    def broken() -> dict[str, bytes]:
        raise RuntimeError("template u03 is broken")

    units[3] = g.Unit(key="u03", directory="envs/u03/", fingerprint="f", render=broken)

    with pytest.raises(RuntimeError, match="template u03 is broken"):
        gitops_preview(units=units, scopes=["envs/"], diff_page=(0, 5))


@dataclass(frozen=True)
class ListedUnit:
    """A unit that knows its paths without rendering (as the renderer's project folders do)."""

    key: str
    directory: str
    fingerprint: str
    render: object
    paths: object
    essential: tuple[str, ...] = ()


def listed(make, key, directory, files, *, paths=None):
    unit = make(key, directory, files)
    listing = tuple(sorted(directory + name for name in (files if paths is None else paths)))
    return ListedUnit(key=unit.key, directory=unit.directory, fingerprint=unit.fingerprint, render=unit.render,
                      paths=lambda: listing)


def test_paged_preview_lists_never_rendered_units_and_renders_only_the_page(repo_dir, make):
    commit([make("base", "envs/base/", {"app.yaml": "base: 1\n"})])
    units = [make("base", "envs/base/", {"app.yaml": "base: 2\n"}),
             *(listed(make, f"p{n:02}", f"envs/p{n:02}/", {"a.yaml": f"a: {n}\n", "b.yaml": f"b: {n}\n"})
               for n in range(20))]
    pages = []
    for first in range(0, 45, 5):
        make.renders.clear()
        pages.append(gitops_preview(units=units, scopes=["envs/"], diff_page=(first, 5)))
        # The changed unit is rendered (it is in the manifest); of the listed ones only those on the page.
        shown = {path.split("/")[1] for path in pages[-1].diff_paths} - {"base"}
        assert make.renders == {"base": 1, **dict.fromkeys(shown, 1)}
    result = commit(units)
    first = pages[0]
    assert (first.added, first.changed, first.deleted) == (result.added, result.changed, result.deleted)
    assert len(first.added) == 40 and first.changed == ["envs/base/app.yaml"]
    assert "".join(page.diff for page in pages) == result.diff


def test_paged_preview_renders_a_listed_unit_whose_folder_has_files(repo_dir, remote, make, tmp_path):
    other = g.clone(remote, tmp_path / "other")
    g.commit_files(other, {"envs/p01/a.yaml": "a: 1\n", "envs/p02/a.yaml": "old\n"}, "Hand-made files")
    units = [listed(make, f"p{n:02}", f"envs/p{n:02}/", {"a.yaml": f"a: {n}\n"}) for n in range(4)]

    preview = gitops_preview(units=units, scopes=["envs/"], diff_page=(0, 10))
    assert make.renders["p01"] == 1 and make.renders["p02"] == 1  # present in the base: rendered to compare
    assert preview.added == ["envs/p00/a.yaml", "envs/p03/a.yaml"] and preview.changed == ["envs/p02/a.yaml"]
    result = commit(units)
    assert (preview.added, preview.changed, preview.deleted) == (result.added, result.changed, result.deleted)
    assert preview.diff == result.diff


def test_paged_preview_of_a_unit_listing_wrong_paths_renders_everything(repo_dir, make, caplog):
    units = [listed(make, "p00", "envs/p00/", {"a.yaml": "a\n"}),
             listed(make, "p01", "envs/p01/", {"a.yaml": "a\n", "extra.yaml": "x\n"}, paths=["a.yaml"])]

    with caplog.at_level(logging.WARNING):
        preview = gitops_preview(units=units, scopes=["envs/"], diff_page=(0, 10))
    assert "p01 rendered other files than its paths() list" in caplog.text
    assert preview.added == ["envs/p00/a.yaml", "envs/p01/a.yaml", "envs/p01/extra.yaml"]
    assert preview.diff == commit(units).diff


def test_listed_units_producing_the_same_path_are_refused(repo_dir, make):
    units = [listed(make, "p00", "envs/p00/", {"a.yaml": "a\n"}),
             ListedUnit(key="p01", directory="envs/", fingerprint="f", render=lambda: {},
                        paths=lambda: ("envs/p00/a.yaml",))]
    with pytest.raises(ValueError, match="both produce 'envs/p00/a.yaml'"):
        gitops_preview(units=units, scopes=["envs/"], diff_page=(0, 10))
    for bad in ("../escape.yaml", "x\ny.yaml", "sub//a.yaml"):
        unit = listed(make, "p02", "envs/p02/", {"a.yaml": "a\n"}, paths=[bad])
        with pytest.raises(ValueError, match="Unit 'p02' path 'envs/p02/"):
            gitops_preview(units=[unit], scopes=["envs/"], diff_page=(0, 10))


# --- the lock -----------------------------------------------------------------------------------------
def test_lock_serializes_threads(lock_backend, repo_dir):
    intervals = []

    def hold():
        with repository_lock(timeout=20):
            start = time.monotonic()
            time.sleep(0.25)
            intervals.append((start, time.monotonic()))

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    intervals.sort()
    assert len(intervals) == 3
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(intervals))


@pytest.mark.slow
def test_lock_held_by_another_process_times_out_and_frees_when_it_dies(lock_backend, settings, repo_dir, tmp_path):
    process, marker = g.start_lock_holder(tmp_path, repo_dir=repo_dir,
                                         lock="file" if lock_backend == "file" else "auto")
    g.wait_for(marker, process)
    try:
        with pytest.raises(RepositoryLockTimeout), repository_lock(timeout=0.3):
            pass
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    started = time.monotonic()
    with repository_lock(timeout=20):
        waited = time.monotonic() - started
    # The kernel frees a file lock at once; PostgreSQL frees an advisory lock when the holder's session ends.
    assert waited < (0.5 if lock_backend == "file" else 5)


def test_lock_is_reentrant_within_a_thread(lock_backend, repo_dir):
    with repository_lock(timeout=1), repository_lock(timeout=0.2):
        nested = True  # a second acquire by the holder's own thread would otherwise time out
    assert nested


def test_lock_key_and_file_follow_the_repository_directory(tmp_path):
    spelled_differently = tmp_path / "x" / ".." / "work"
    assert repository_lock_key(tmp_path / "work") == repository_lock_key(spelled_differently)
    assert repository_lock_key(tmp_path / "work") != repository_lock_key(tmp_path / "other")
    assert repository_lock_path(tmp_path / "work") == tmp_path.resolve() / ".work.lock"



def test_a_validate_callback_gets_the_mirror_state_it_started_from(repo_dir, make):
    """The writer names the mirror's state before it wrote the changed paths (mirror.mirror_state): the gate
    trusts its cached file states for the other paths only at that state. A commit, or a refused change put back,
    marks the mirror anew, so the state moves even when the commit named is the same."""
    from deployments.git.mirror import mirror_state

    marker_dir = mirror(repo_dir).parent
    first = commit(three_units(make), validate=accept)
    before = mirror_state(marker_dir)
    assert before is not None and before.startswith(first.sha)
    seen = []

    def refuse(root, paths, read_base, unchanged_since=None):
        seen.append(unchanged_since)
        assert mirror_state(marker_dir) is None  # unmarked while the changed paths are written
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        commit(three_units(make, version=2), validate=refuse)
    assert seen == [before]
    after_revert = mirror_state(marker_dir)
    assert after_revert is not None and after_revert.startswith(first.sha) and after_revert != before

    def record(root, paths, read_base, unchanged_since=None):
        seen.append(unchanged_since)

    second = commit(three_units(make, version=2), validate=record)
    assert seen[-1] == after_revert
    assert mirror_state(marker_dir).startswith(second.sha)
    # What differs between two marked states: the diff of their commits (the worker re-checks only those paths).
    from django.conf import settings

    from deployments.git.mirror import mirror_changes
    from deployments.git.repository import Repository

    repo = Repository.open(repo_dir, remote_url="", branch=settings.GITOPS_BRANCH)
    try:
        assert sorted(mirror_changes(repo, before, mirror_state(marker_dir))) == [MANIFEST_PATH, "envs/a/app.yaml"]
        assert mirror_changes(repo, before, after_revert) == []
        assert mirror_changes(repo, None, before) is None
    finally:
        repo.close()


def test_a_manifest_written_from_the_previous_bytes_equals_one_written_in_full():
    """dumps(previous=...) copies the lines of entries it was loaded with and encodes only new entries; the bytes
    are those of a full dump. Bytes not laid out one unit per line are not copied from."""
    from deployments.git.manifest import UnitEntry

    units = {f"env:e:project:{n}": UnitEntry(directory=f"envs/p{n}/", fingerprint=f"f{n}",
                                             files={f"envs/p{n}/a.yaml": "1" * 40, f"envs/p{n}/b.yaml": "2" * 40})
             for n in range(5)}
    old = Manifest(units=units)
    data = old.dumps()
    loaded = Manifest.loads(data)
    changed = dict(loaded.units)
    changed["env:e:project:2"] = UnitEntry(directory="envs/p2/", fingerprint="new", files={"envs/p2/a.yaml": "3" * 40})
    del changed["env:e:project:4"]
    changed["env:e:project:9"] = UnitEntry(directory="envs/p9/", fingerprint="f9", files={})
    new = Manifest(units=changed)
    assert new.dumps(previous=(loaded, data)) == new.dumps()
    assert Manifest.loads(new.dumps(previous=(loaded, data))) == new
    # Pretty-printed by hand: nothing is copied, the result is still the full dump.
    import json

    pretty = json.dumps(json.loads(data), indent=2).encode()
    assert new.dumps(previous=(Manifest.loads(pretty), pretty)) == new.dumps()


_unit_keys = st.sampled_from([f"env:e:project:{n}" for n in range(12)] + ["env:e:base", "env:\u00e9:project:\"q\""])
_unit_entries = st.builds(
    lambda folder, fingerprint, names: UnitEntry(directory=f"envs/{folder}/", fingerprint=fingerprint,
                                                 files={f"envs/{folder}/{name}.yaml": "ab" * 20 for name in names}),
    st.sampled_from(["p1", "p2", "\u00e9t\u00e9"]), st.text(max_size=6),
    st.lists(st.sampled_from(["a", "b", "c\u00fc", "d/e"]), max_size=3))


@hypothesis_settings(max_examples=200, deadline=None)
@given(old=st.dictionaries(_unit_keys, _unit_entries, max_size=8),
       new=st.dictionaries(_unit_keys, _unit_entries, max_size=8), keep=st.sets(_unit_keys))
def test_a_manifest_loaded_against_the_previous_one_equals_one_parsed_in_full(old, new, keep):
    """loads(previous=...) shares the entries of lines that are the same bytes as the previous manifest's and parses
    only the others; the result equals a full parse, whatever was added, changed or removed."""
    previous = Manifest(units=old)
    previous_data = previous.dumps()
    previous_loaded = Manifest.loads(previous_data)
    units = {**new, **{key: previous_loaded.units[key] for key in keep if key in previous_loaded.units}}
    data = Manifest(units=units).dumps()

    loaded = Manifest.loads(data, previous=(previous_loaded, previous_data))

    assert loaded == Manifest.loads(data)
    for key, entry in loaded.units.items():
        if key in previous_loaded.units and entry == previous_loaded.units[key]:
            assert entry is previous_loaded.units[key]  # the same line: not parsed again
    assert Manifest(units=loaded.units).dumps(previous=(loaded, data)) == data


def test_a_manifest_not_laid_out_one_unit_per_line_is_parsed_whole():
    """Bytes edited by hand (reordered, repeated keys, pretty-printed, broken) are parsed in full: the same result
    or the same error as without ``previous``."""
    import json

    units = {f"env:e:project:{n}": UnitEntry(directory=f"envs/p{n}/", fingerprint=f"f{n}",
                                             files={f"envs/p{n}/a.yaml": "1" * 40}) for n in range(4)}
    data = Manifest(units=units).dumps()
    previous = (Manifest.loads(data), data)
    lines = data.split(b"\n")
    swapped = b"\n".join([lines[0], lines[1], lines[3], lines[2], *lines[4:]])  # two units out of key order
    repeated = data.replace(lines[3], lines[2].replace(b"f0", b"zz"))  # key 0 twice: JSON keeps the last one
    pretty = json.dumps(json.loads(data), indent=2).encode()
    for variant in (repeated, pretty, swapped):
        try:
            expected = Manifest.loads(variant)
        except ManifestError as exc:
            with pytest.raises(ManifestError, match=re.escape(str(exc))):
                Manifest.loads(variant, previous=previous)
        else:
            assert Manifest.loads(variant, previous=previous) == expected
    assert Manifest.loads(repeated, previous=previous).units["env:e:project:0"].fingerprint == "zz"
    broken = data.replace(b'"fingerprint": "f2"', b'"fingerprint": f2')
    with pytest.raises(ManifestError, match="not a valid portal manifest"):
        Manifest.loads(broken, previous=previous)


def test_split_lines_are_kept_only_for_the_same_manifest_and_bytes(monkeypatch):
    """The worker splits the head's manifest into lines before forking (manifest_lines_warm), and a dump keeps the
    lines it wrote; a dump from those very objects uses them and equals a full dump, and other objects (equal or
    not) are split anew."""
    from deployments.git import manifest as manifest_module
    from deployments.git.manifest import UnitEntry, manifest_lines_warm

    splits = []
    real_split = manifest_module._split_lines
    monkeypatch.setattr(manifest_module, "_split_lines", lambda *args: splits.append(args[0]) or real_split(*args))
    units = {f"env:e:project:{n}": UnitEntry(directory=f"envs/p{n}/", fingerprint=f"f{n}",
                                             files={f"envs/p{n}/a.yaml": "1" * 40}) for n in range(4)}
    data = Manifest(units=units).dumps()
    loaded = Manifest.loads(data)
    manifest_lines_warm(loaded, data)
    kept = manifest_module._LINES_MEMO[0]
    assert kept is not None and kept[0] is loaded and kept[1] is data and len(kept[2]) == 4 and splits == [loaded]
    changed = Manifest(units={**loaded.units, "env:e:project:1": UnitEntry("envs/p1/", "new", {})})
    written = changed.dumps(previous=(loaded, data))
    assert splits == [loaded]  # answered from the memo
    assert manifest_module._LINES_MEMO[0][:2] == (changed, written)  # the next commit starts from these lines
    following = Manifest(units={**changed.units, "env:e:project:2": UnitEntry("envs/p2/", "newer", {})})
    assert following.dumps(previous=(changed, written)) == Manifest(units=dict(following.units)).dumps()
    assert splits == [loaded]
    assert written == Manifest(units=dict(changed.units)).dumps()
    other = Manifest.loads(data)  # equal, not the same object: its entries are other objects
    assert changed.dumps(previous=(other, data)) == written
    assert splits == [loaded, other]


@pytest.mark.parametrize("directory, essential", [
    ("envs/a", ()),  # no trailing slash
    ("envs/../a/", ()),
    (".tesslate-portal/", ()),
    ("envs/a/", ("envs/a/../../x.yaml",)),
    ("envs/a/", ("envs/a/",)),  # a folder is not a file, even once accepted as a folder
    ("envs/a/", ("envs/.git/config",)),
])
def test_accepted_unit_paths_never_admit_what_the_checks_refuse(directory, essential):
    """check_unit_paths remembers folders and files it accepted (and those of the warmed manifest); what
    check_directory / check_file_in refuse is refused every time, before and after a manifest holding good and bad
    paths was accepted."""
    from deployments.git.manifest import UnitEntry, accept_manifest_paths, check_unit_paths

    for _ in range(2):
        with pytest.raises(ValueError):
            check_unit_paths(directory, essential, what="Unit 'x'")
        accept_manifest_paths(Manifest(units={
            "good": UnitEntry("envs/a/", "f", {"envs/a/namespace.yaml": "1" * 40}),
            "bad": UnitEntry(directory, "f", {path: "1" * 40 for path in essential})}))
    check_unit_paths("envs/a/", ("envs/a/namespace.yaml",), what="Unit 'x'")  # accepted, and still accepted


def test_the_manifest_is_parsed_once_per_blob(repo_dir, make, monkeypatch):
    from deployments.git import writer

    commit(three_units(make), validate=accept)
    loads = []
    real = Manifest.loads
    monkeypatch.setattr(Manifest, "loads", staticmethod(
        lambda data, previous=None: loads.append(previous) or real(data, previous=previous)))
    writer._MANIFEST_MEMO[0] = None
    assert writer.gitops_manifest_warm()
    second = commit(three_units(make, version=2), validate=accept)
    assert len(loads) == 1  # the commit found it parsed
    third = commit(three_units(make, version=3), validate=accept)
    assert len(loads) == 1 and second.sha != third.sha  # the manifest the second commit wrote is kept parsed
    assert Manifest.loads(g.git(repo_dir, "show", f"{third.sha}:{MANIFEST_PATH}").encode()).units.keys() == \
        {"a", "b", "c"}

    # A process that read an earlier manifest (the worker's parent after a job) parses only the changed lines.
    read_before = writer._MANIFEST_MEMO[0]
    writer._MANIFEST_MEMO[0] = (blob_id(b"another"), *read_before[1:])
    loads.clear()
    assert writer.gitops_manifest_warm()
    assert [previous[0] for previous in loads] == [read_before[1]]
    fresh = writer._MANIFEST_MEMO[0][1]
    assert fresh == read_before[1] and all(fresh.units[key] is read_before[1].units[key] for key in fresh.units)
