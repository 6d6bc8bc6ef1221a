"""The GitOps writer's safety nets (issue 7): the invariant checked before every push, the deletion budget and
essential paths, recovery that repairs from git's own records, commits kept when a push fails, and previews that
never wait for the repository lock. Real git command line, bare remotes in tmp_path.
"""

import logging
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from deployments.git import (
    MANIFEST_PATH,
    GitOpsDeletionRefused,
    GitOpsInvariantError,
    GitOpsPushError,
    gitops_commit,
    gitops_head,
    gitops_preview,
    repository_lock,
)
from deployments.git.repository import Repository, TreeStream
from tests.deployments import gitutil as g

# The repository lock is a PostgreSQL advisory lock: every test here talks to the test database.
pytestmark = pytest.mark.django_db

AUTHOR = {"author_name": "Ada Admin", "author_email": "ada@example.com"}


def commit(units, scopes=("envs/",), message="Render", **kwargs):
    kwargs.setdefault("trailers", {"Portal-Run": "7"})
    return gitops_commit(units=units, scopes=list(scopes), message=message, **AUTHOR, **kwargs)


def accept(root, paths, read_base):
    """Accepts everything; passing it keeps the validation mirror up to date."""


def mirror(repo_dir: Path) -> Path:
    return Path(str(repo_dir) + ".validate") / "tree"


def units_v(make, version=1, *, count=3, files=1):
    """`count` units envs/u<n>/ of `files` files each; unit u0's first file carries `version`."""
    return [make(f"u{n}", f"envs/u{n}/", {f"f{i}.yaml": f"n: {n}-{i}{'' if n or i else f' v{version}'}\n"
                                          for i in range(files)}) for n in range(count)]


def rendered(units) -> dict[str, bytes]:
    return {path: data for unit in units for path, data in unit.render().items()}


# --- the reported reproduction: a lost or corrupt index -------------------------------------------------------
@pytest.mark.parametrize("fault", ["clone-index-deleted", "clone-index-corrupt", "bare-index-planted"])
def test_lost_or_corrupt_index_with_many_files_pushes_no_deletion(settings, repo_dir, remote, make, tmp_path,
                                                                   fault):
    # 1,250 rendered files (the reported run had 2,090 deletions above the 1,000-path bulk threshold).
    units = units_v(make, count=25, files=50)
    first = commit(units)
    assert len(first.added) == 1250
    if fault.startswith("clone"):
        # The operator's setup: GITOPS_REPO_DIR a clone with a working tree at the remote head, index gone/broken.
        settings.GITOPS_REPO_DIR = g.clone(remote, tmp_path / "clone")
        index = settings.GITOPS_REPO_DIR / ".git/index"
        if fault == "clone-index-deleted":
            index.unlink()
        else:
            index.write_bytes(b"DIRC\x00\x00\x00\x02garbage" + os.urandom(64))
    else:
        (repo_dir / "index").write_bytes(b"not an index")

    result = commit(units_v(make, 2, count=25, files=50))  # the routine change: one file of one unit

    assert (result.added, result.changed, result.deleted) == ([], ["envs/u0/f0.yaml"], [])
    assert result.pushed and g.git(remote, "rev-parse", f"{result.sha}^") == first.sha
    files = g.tree_files(remote)
    assert len(files) == 1251 and files["envs/u0/f0.yaml"] == b"n: 0-0 v2\n"
    assert {path: files[path] for path in rendered(units_v(make, 2, count=25, files=50))} == \
        rendered(units_v(make, 2, count=25, files=50))


# --- the invariant ---------------------------------------------------------------------------------------
def drop_from_tree(monkeypatch, extra_deletes=(), extra_writes=None):
    """Make the tree builder wrong on purpose: delete more, or write other bytes, than the plan says."""
    original = TreeStream.tree

    def wrong_tree(self, base, files, deletes):
        files = {path: data for path, data in files.items() if path not in extra_deletes}
        return original(self, base, {**files, **(extra_writes or {})}, [*deletes, *extra_deletes])

    monkeypatch.setattr(TreeStream, "tree", wrong_tree)


@pytest.mark.parametrize("case", ["kept file dropped", "rendered file dropped", "unowned file dropped",
                                  "rendered bytes swapped", "unowned file written"])
def test_the_invariant_refuses_a_wrong_tree_and_leaves_the_remote_untouched(monkeypatch, repo_dir, remote, make,
                                                                           tmp_path, case):
    first = commit(units_v(make))
    other = g.clone(remote, tmp_path / "other")
    readme = g.commit_files(other, {"README.md": "# GitOps\n"}, "Docs")
    wrong_path = {"kept file dropped": "envs/u1/f0.yaml", "rendered file dropped": "envs/u0/f0.yaml",
                  "unowned file dropped": "README.md", "rendered bytes swapped": "envs/u0/f0.yaml",
                  "unowned file written": "envs/u1/extra.yaml"}[case]
    if case.endswith("dropped"):
        drop_from_tree(monkeypatch, extra_deletes=[wrong_path])
    else:
        drop_from_tree(monkeypatch, extra_writes={wrong_path: b"not the render\n"})

    with pytest.raises(GitOpsInvariantError) as info:
        commit(units_v(make, 2))

    assert wrong_path in info.value.paths and wrong_path in str(info.value)
    assert "nothing was committed or pushed" in str(info.value)
    assert g.head(remote) == readme and first.sha in g.git(remote, "rev-list", "main").split()
    assert g.head(repo_dir, "refs/portal/unpushed") is None and g.head(repo_dir, "refs/portal/candidate") is None


def test_files_edited_or_deleted_by_hand_in_unchanged_units_are_repaired_not_refused(repo_dir, remote, make,
                                                                                     tmp_path, caplog):
    commit(units_v(make))
    other = g.clone(remote, tmp_path / "other")
    g.commit_files(other, {"envs/u1/f0.yaml": "edited by hand\n", "envs/u2/f0.yaml": None}, "Hand edits")
    caplog.set_level(logging.WARNING, logger="deployments.git")

    result = commit(units_v(make, 2))  # u0 changes; u1 and u2 are unchanged units whose files drifted in git

    assert (result.added, result.changed) == (["envs/u2/f0.yaml"], ["envs/u0/f0.yaml", "envs/u1/f0.yaml"])
    assert {p: d for p, d in g.tree_files(remote).items() if p != MANIFEST_PATH} == rendered(units_v(make, 2))
    assert "differ from their render" in caplog.text


def _whole_tree_listings(monkeypatch) -> list[str]:
    """Record every listing of a whole tree (tree_entries without folders) the writer makes."""
    calls: list[str] = []
    original = Repository.tree_entries

    def spy(self, treeish, folders=None):
        if folders is None:
            calls.append(treeish)
        return original(self, treeish, folders)

    monkeypatch.setattr(Repository, "tree_entries", spy)
    return calls


def test_the_invariant_lists_no_whole_tree_after_a_consistent_commit(monkeypatch, repo_dir, remote, make):
    listings = _whole_tree_listings(monkeypatch)
    first = commit(units_v(make))
    assert g.head(repo_dir, "refs/portal/verified") == first.sha
    listings.clear()
    second = commit(units_v(make, 2))
    assert second.changed == ["envs/u0/f0.yaml"] and listings == []
    assert g.head(repo_dir, "refs/portal/verified") == second.sha


def test_a_hand_edited_manifest_makes_the_invariant_list_the_whole_tree_and_still_repair(monkeypatch, repo_dir,
                                                                                          remote, make, tmp_path):
    commit(units_v(make))
    other = g.clone(remote, tmp_path / "other")
    manifest = (other / MANIFEST_PATH).read_text()
    g.commit_files(other, {MANIFEST_PATH: manifest.replace("\n }", "\n }\n", 1), "envs/u1/f0.yaml": "edited\n"},
                   "Hand edits")
    listings = _whole_tree_listings(monkeypatch)

    result = commit(units_v(make, 2))

    assert listings, "a manifest that differs from the verified commit's must not be trusted"
    assert "envs/u1/f0.yaml" in result.changed
    assert {p: d for p, d in g.tree_files(remote).items() if p != MANIFEST_PATH} == rendered(units_v(make, 2))


def test_a_lost_verified_ref_falls_back_to_listing_the_whole_tree(monkeypatch, repo_dir, remote, make):
    commit(units_v(make))
    g.git(repo_dir, "update-ref", "-d", "refs/portal/verified")
    listings = _whole_tree_listings(monkeypatch)
    result = commit(units_v(make, 2))
    assert listings and result.changed == ["envs/u0/f0.yaml"]
    assert g.head(repo_dir, "refs/portal/verified") == result.sha


# --- deletion budget and essential paths ---------------------------------------------------------------------
def test_deletion_budget_refuses_a_mass_deletion_until_confirmed(settings, repo_dir, remote, make):
    settings.GITOPS_DELETION_BUDGET_FILES = 3
    settings.GITOPS_DELETION_BUDGET_SHARE = 0.1
    units = units_v(make, count=10, files=4)  # 40 owned files: budget max(3, 4) = 4
    first = commit(units)
    assert len(commit(units[:9]).deleted) == 4  # within the budget

    with pytest.raises(GitOpsDeletionRefused) as info:
        commit(units[:7])  # 8 more deletions

    assert (info.value.deleted, info.value.budget) == (8, 3)  # 36 owned now: max(3, 3.6 -> 3)
    assert "allow_deletions=True" in str(info.value) and "GITOPS_DELETION_BUDGET_FILES=3" in str(info.value)
    assert len(g.tree_files(remote)) == 37 and g.head(remote) != first.sha

    result = commit(units[:7], allow_deletions=True)
    assert len(result.deleted) == 8 and result.pushed and len(g.tree_files(remote)) == 29


def test_default_budget_is_fifty_files_or_five_percent_of_owned_files(settings, repo_dir, make):
    units = units_v(make, count=20, files=3)  # 60 owned files
    commit(units)

    with pytest.raises(GitOpsDeletionRefused) as info:
        commit(units[:2])  # 54 deletions > max(50, 3)
    assert (info.value.deleted, info.value.budget) == (54, 50)
    assert len(commit(units[:4]).deleted) == 48  # within max(50, 5 % of 60)


def test_essential_paths_are_never_deleted_even_when_deletions_are_allowed(repo_dir, remote, make):
    project = {"namespace.yaml": "kind: Namespace\n", "storage.yaml": "kind: PersistentVolumeClaim\n",
               "app.yaml": "kind: Deployment\n"}
    unit = make("p", "envs/p/", project, essential=("namespace.yaml", "storage.yaml"))
    first = commit([unit])
    # A render bug: the project is still active in the model, but its Namespace and PVC are not rendered.
    broken = make("p", "envs/p/", {"app.yaml": "kind: Deployment\nspec: {}\n"},
                  essential=("namespace.yaml", "storage.yaml"))

    for allow in (False, True):
        with pytest.raises(GitOpsDeletionRefused) as info:
            commit([broken], allow_deletions=allow)
        assert info.value.essential == ["envs/p/namespace.yaml", "envs/p/storage.yaml"]
        assert "no confirmation overrides it" in str(info.value)
    assert g.head(remote) == first.sha


@pytest.mark.django_db
def test_project_units_declare_their_namespace_and_volume_essential(settings):
    from deployments.rendering import tree_units
    from deployments.selectors import environments_snapshot
    from tests.factories import environment_factory, project_factory

    settings.GITOPS_SOURCE_URL = "https://git.example.com/tesslate/gitops.git"
    project = project_factory(environment_factory())

    units = {unit.key: unit for unit in tree_units(environments_snapshot())}

    folder = f"environments/{project.environment.name}/projects/proj-{project.pk}/"
    unit = next(u for u in units.values() if u.directory == folder)
    assert unit.essential == (folder + "namespace.yaml", folder + "storage.yaml")
    files = unit.render()
    assert b"kind: Namespace" in files[folder + "namespace.yaml"]
    assert b"kind: PersistentVolumeClaim" in files[folder + "storage.yaml"]
    assert all(u.essential == () for u in units.values() if u is not unit)


def test_a_malformed_essential_path_is_refused_before_anything_runs(repo_dir, make):
    with pytest.raises(ValueError, match="essential path"):
        commit([g.Unit("a", "envs/a/", "f", lambda: {}, essential=("../x",))])
    assert gitops_head() is None


# --- recovery ----------------------------------------------------------------------------------------------
def test_stale_lock_files_of_every_kind_are_removed(repo_dir, make, caplog):
    commit(units_v(make))
    locks = ["index.lock", "config.lock", "packed-refs.lock", "shallow.lock", "HEAD.lock", "refs/heads/main.lock",
             "objects/pack/tmp_pack_abc"]
    for lock in locks:
        (repo_dir / lock).write_text("")
    caplog.set_level(logging.WARNING, logger="deployments.git")

    assert commit(units_v(make, 2)).changed == ["envs/u0/f0.yaml"]

    assert not [lock for lock in locks if (repo_dir / lock).exists()]
    assert all(lock in caplog.text for lock in locks)


def test_a_pack_kept_by_a_killed_import_is_released(repo_dir, make, caplog):
    """A fast-import killed after storing its pack but before releasing it leaves `pack-*.keep` ("fast-import"),
    which stops git gc from ever merging that pack. Running the same render again (the same pack) works, the stale
    keep goes, and a keep made by a person stays."""
    first = commit(units_v(make))
    packs = repo_dir / "objects" / "pack"
    before = set(packs.glob("pack-*.pack"))
    second = commit(units_v(make, 2))
    made = set(packs.glob("pack-*.pack")) - before
    assert made, "the render stored its objects in a pack of its own"
    g.git(repo_dir, "update-ref", "refs/heads/main", first.sha)  # as if killed before the branch moved
    for pack in made:
        pack.with_suffix(".keep").write_text("fast-import")
    by_hand = packs / "pack-0000000000000000000000000000000000000000.keep"
    by_hand.write_text("kept on purpose\n")
    caplog.set_level(logging.WARNING, logger="deployments.git")

    again = commit(units_v(make, 2))

    assert again.changed == second.changed == ["envs/u0/f0.yaml"]
    assert not [pack for pack in made if pack.with_suffix(".keep").exists()]
    assert by_hand.exists() and "pack-0000000000000000000000000000000000000000.keep" not in caplog.text


def test_interrupted_rebase_or_merge_state_is_cleared(repo_dir, remote, make, caplog):
    first = commit(units_v(make))
    (repo_dir / "rebase-merge").mkdir()
    (repo_dir / "rebase-merge" / "head-name").write_text("refs/heads/main\n")
    (repo_dir / "MERGE_HEAD").write_text(first.sha + "\n")
    caplog.set_level(logging.WARNING, logger="deployments.git")

    result = commit(units_v(make, 2))

    assert result.pushed and g.git(remote, "rev-parse", f"{result.sha}^") == first.sha
    assert not (repo_dir / "rebase-merge").exists() and not (repo_dir / "MERGE_HEAD").exists()
    assert "interrupted rebase/merge" in caplog.text


@pytest.mark.parametrize("damage", ["garbage", "missing object", "empty file"])
def test_a_corrupt_branch_ref_is_repaired_from_the_remote(repo_dir, remote, make, damage):
    first = commit(units_v(make))
    ref = repo_dir / "refs/heads/main"
    ref.write_text({"garbage": "not a sha\n", "missing object": "1" * 40 + "\n", "empty file": ""}[damage])

    result = commit(units_v(make, 2))

    assert result.pushed and g.git(remote, "rev-parse", f"{result.sha}^") == first.sha
    assert result.changed == ["envs/u0/f0.yaml"] and not result.deleted
    assert gitops_head() == result.sha == g.head(remote)


def test_a_corrupt_branch_ref_without_a_remote_is_restored_from_its_reflog(repo_dir, make, caplog):
    commit(units_v(make))
    second = commit(units_v(make, 2))
    (repo_dir / "refs/heads/main").write_text("garbage\n")
    caplog.set_level(logging.WARNING, logger="deployments.git")

    result = commit(units_v(make, 3))

    assert g.git(repo_dir, "rev-parse", f"{result.sha}^") == second.sha and not result.deleted
    assert "from its reflog" in caplog.text


@pytest.mark.parametrize("damage", ["unmarked with strays", "garbage marker", "marker removed mid-write",
                                    "tree removed"])
def test_a_half_written_validation_mirror_is_rebuilt_from_the_base(repo_dir, remote, make, damage):
    first = commit(units_v(make), validate=accept)
    tree, marker = mirror(repo_dir), mirror(repo_dir).parent / "COMMIT"
    assert marker.read_text().strip() == first.sha and g.work_files(tree) == g.tree_files(repo_dir)
    if damage == "tree removed":
        shutil.rmtree(tree)  # by hand, the marker left in place
    else:
        if damage == "garbage marker":
            marker.write_text("not a commit\n")
        else:
            marker.unlink()
        (tree / "envs/u1/f0.yaml").write_text("half written")
        (tree / "envs/stray").mkdir()
        (tree / "envs/stray/left.yaml").write_text("left by a killed run\n")
        if damage == "marker removed mid-write":
            (tree / "envs/u2/f0.yaml").unlink()
    seen = []

    def validate(root, paths, read_base):
        seen.append(paths)
        assert g.work_files(root) == {**g.tree_files(repo_dir, first.sha), "envs/u0/f0.yaml": b"n: 0-0 v2\n",
                                      MANIFEST_PATH: (root / MANIFEST_PATH).read_bytes()}

    result = commit(units_v(make, 2), validate=validate)

    assert seen == [["envs/u0/f0.yaml"]] and result.pushed
    assert g.work_files(tree) == g.tree_files(remote) and marker.read_text().strip() == result.sha


def test_validation_reads_the_base_through_read_base(repo_dir, make):
    commit(units_v(make))
    reads = {}

    def validate(root, paths, read_base):
        reads.update({path: read_base(path) for path in [*paths, "envs/nowhere.yaml"]})

    commit([*units_v(make, 2), make("new", "envs/new/", {"x.yaml": "x\n"})], validate=validate)

    assert reads == {"envs/u0/f0.yaml": b"n: 0-0 v1\n", "envs/new/x.yaml": None, "envs/nowhere.yaml": None}


# --- a push that fails for another reason -------------------------------------------------------------------
def test_remote_unreachable_at_push_keeps_the_commit_and_the_next_run_pushes_it(repo_dir, remote, make, tmp_path):
    first = commit(units_v(make))
    away = tmp_path / "remote-away.git"

    def unplug(percent, message):
        if message.startswith("Pushing"):
            remote.rename(away)  # the network goes down between commit and push

    with pytest.raises(GitOpsPushError) as info:
        commit(units_v(make, 2), progress=unplug)
    kept = g.head(repo_dir, "refs/portal/unpushed")
    assert kept and "refs/portal/unpushed" in str(info.value)
    assert g.git(repo_dir, "rev-parse", f"{kept}^") == first.sha
    away.rename(remote)
    assert g.head(remote) == first.sha

    result = commit(units_v(make, 2))  # the same render: the kept commit is pushed, nothing else to do

    assert (result.sha, result.earlier_pushed, result.pushed) == (None, kept, True)
    assert g.head(remote) == kept == gitops_head()
    assert g.head(repo_dir, "refs/portal/unpushed") is None
    assert g.tree_files(remote)["envs/u0/f0.yaml"] == b"n: 0-0 v2\n"


def test_a_kept_commit_is_dropped_when_the_remote_moved_on(repo_dir, remote, make, tmp_path, caplog):
    commit(units_v(make))
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'read-only remote' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(GitOpsPushError, match="read-only remote"):
        commit(units_v(make, 2))
    kept = g.head(repo_dir, "refs/portal/unpushed")
    hook.unlink()
    other = g.clone(remote, tmp_path / "other")
    moved = g.commit_files(other, {"README.md": "moved on\n"}, "Unrelated change")
    caplog.set_level(logging.INFO, logger="deployments.git")

    result = commit(units_v(make, 3))

    assert result.earlier_pushed is None and result.pushed
    assert g.git(remote, "rev-parse", f"{result.sha}^") == moved and kept not in g.git(remote, "rev-list", "main")
    assert g.tree_files(remote)["envs/u0/f0.yaml"] == b"n: 0-0 v3\n"
    assert g.head(repo_dir, "refs/portal/unpushed") is None and f"Dropped {kept[:12]}" in caplog.text


# --- previews never wait for the lock -------------------------------------------------------------------------
@pytest.mark.parametrize("with_remote", [True, False])
def test_preview_works_while_a_commit_holds_the_repository_lock(request, repo_dir, make, with_remote):
    if with_remote:
        request.getfixturevalue("remote")
    committed = commit(units_v(make))
    held, release = threading.Event(), threading.Event()

    def hold():
        with repository_lock(timeout=10):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        preview = gitops_preview(units=units_v(make, 2)[:2], scopes=["envs/"])
        took = time.monotonic() - started
    finally:
        release.set()
        holder.join()

    assert (preview.added, preview.changed, preview.deleted) == ([], ["envs/u0/f0.yaml"], ["envs/u2/f0.yaml"])
    assert took < 5
    # Nothing of the preview is left in the repository: the only portal ref is the commit's consistency record.
    assert g.git(repo_dir, "for-each-ref", "--format=%(refname) %(objectname)", "refs/portal") == \
        f"refs/portal/verified {committed.sha}"


def test_gitops_head_reads_an_existing_clone_without_touching_it(settings, remote, make, tmp_path):
    first = commit(units_v(make))
    clone = g.clone(remote, tmp_path / "clone")
    settings.GITOPS_REPO_DIR = clone
    assert gitops_head() == first.sha
    shutil.rmtree(clone / ".git")
    assert gitops_head() is None


def test_a_kept_commit_that_reached_the_remote_after_all_is_recognised(repo_dir, remote, make, caplog):
    commit(units_v(make))
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(GitOpsPushError):
        commit(units_v(make, 2))
    kept = g.head(repo_dir, "refs/portal/unpushed")
    hook.unlink()
    # The push did land after all (the connection dropped after the remote updated its branch).
    g.git(repo_dir, "push", "-q", "origin", f"{kept}:refs/heads/main")
    caplog.set_level(logging.INFO, logger="deployments.git")

    result = commit(units_v(make, 2))

    assert (result.sha, result.earlier_pushed) == (None, kept)
    assert g.head(remote) == kept and g.head(repo_dir, "refs/portal/unpushed") is None
    assert "is on the remote already" in caplog.text
