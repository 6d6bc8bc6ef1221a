"""Apply render units to the GitOps repository (gitops_commit) or show what that would change (gitops_preview).

A run holds the repository lock from start to end: fetch the remote head (the base of every commit; without a
remote the local branch is the truth), plan the writes and deletes in memory, store the new blobs and build the
new tree from the base tree plus the plan with one `git fast-import` stream, check it against the render (the
invariant below), validate the result in the plain-file mirror (mirror.py), commit with `commit-tree` and push
`<sha>:refs/heads/<branch>` without forcing; when the push loses a race, start again from the new remote head.
A push that fails for another reason keeps the commit on refs/portal/unpushed for the next run. The repository
is bare (repository.py says why): there is no working copy whose index or files could be lost, and nothing on
disk is ever mistaken for what the repository holds.

Before anything is pushed, the new tree is checked against the render: every file rendered now, or kept from the
manifest for a unit whose fingerprint is unchanged, is in the commit with exactly those bytes, and the only files
removed are files the portal owned and no longer renders. Any other difference raises GitOpsInvariantError and
nothing is pushed. A deletion budget (GITOPS_DELETION_BUDGET_FILES / GITOPS_DELETION_BUDGET_SHARE) refuses mass
deletions unless the caller confirms them, and paths a unit declares essential (a live project's Namespace and
PVC) are never deleted (issue 7 of the portal: "the spine never deletes what it still renders").

The committed manifest (deployments.git.manifest) is what keeps this proportional to the change: a unit whose
fingerprint is unchanged is neither rendered nor read, and only blobs that differ are written.
"""

from __future__ import annotations

import functools
import gc
import inspect
import logging
import multiprocessing
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

from django.conf import settings

from deployments.git.manifest import (
    MANIFEST_DIR,
    MANIFEST_PATH,
    Manifest,
    UnitEntry,
    accept_manifest_paths,
    blob_id,
    check_directory,
    check_path,
    check_unit_paths,
    manifest_lines_warm,
)
from deployments.git.mirror import ValidationMirror
from deployments.git.repository import (
    CANDIDATE_REF,
    UNPUSHED_REF,
    VERIFIED_REF,
    GitOpsError,
    GitOpsPushError,
    GitOpsPushRejected,
    Repository,
)
from deployments.locks import repository_lock

logger = logging.getLogger(__name__)

DEFAULT_DIFF_MAX_CHARS = 1_000_000
DEFAULT_DELETION_BUDGET_FILES = 50
DEFAULT_DELETION_BUDGET_SHARE = 0.05
_MESSAGE_MAX_FOLDERS = 20
_REPORT_MAX_PATHS = 20
_TRAILER_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


class GitOpsInvariantError(GitOpsError):
    """The commit built for a render differs from the render: nothing was pushed. `paths` lists what was wrong."""

    def __init__(self, message: str, *, paths: list[str]) -> None:
        super().__init__(message)
        self.paths = paths


class GitOpsDeletionRefused(GitOpsError):
    """A commit would delete more files than the deletion budget allows, or a path a unit declares essential."""

    def __init__(self, message: str, *, deleted: int, budget: int, essential: list[str]) -> None:
        super().__init__(message)
        self.deleted = deleted
        self.budget = budget
        self.essential = essential


class RenderUnit(Protocol):
    """What the renderer hands over (deployments.rendering.RenderUnit has these fields, and `essential`:
    paths never to be deleted while the unit exists; read with getattr, default ())."""

    @property
    def key(self) -> str: ...  # stable id, e.g. "env:minikube:project:<uuid>"

    @property
    def directory(self) -> str: ...  # repository-relative folder it owns, ending in "/"

    @property
    def fingerprint(self) -> str: ...  # same fingerprint => render() returns the same bytes

    @property
    def render(self) -> Callable[[], dict[str, bytes]]: ...  # path -> bytes, every path under directory

    # Optional (read with getattr): `prefetch(keys)`, shared by units whose input is read when rendered; called
    # once per run with the keys of those about to be rendered, before any of their render().


Progress = Callable[[int, str], None]
ReadBase = Callable[[str], "bytes | None"]
# validate(root, changed_paths, read_base[, unchanged_since=...]); a callback taking only (root, changed_paths) is still
# accepted.
Validate = Callable[..., None]


@dataclass
class CommitResult:
    sha: str | None  # None when nothing changed (no commit made)
    added: list[str] = field(default_factory=list)  # repository-relative paths, sorted
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    diff: str = ""  # unified diff of the commit against its parent (manifest left out); "" if none
    pushed: bool = False
    push_attempts: int = 0
    # A commit an earlier run built but could not push (remote unreachable or read-only), pushed first by this run.
    earlier_pushed: str | None = None


@dataclass
class PreviewResult:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    diff: str = ""  # the unified diff of `diff_paths` (every changed file unless a page was asked for)
    diff_paths: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        """Every changed path, sorted (the order pages of the diff follow)."""
        return sorted([*self.added, *self.changed, *self.deleted])


def gitops_commit(*, units: Sequence[RenderUnit], scopes: Sequence[str], message: str,
                  trailers: dict[str, str], author_name: str, author_email: str,
                  validate: Validate | None = None, progress: Progress | None = None,
                  full: bool = False, allow_deletions: bool = False) -> CommitResult:
    """Write the units into the GitOps repository as one commit and push it.

    `scopes` are the folders this render speaks for: portal-owned files under them that no unit produces any
    more are deleted; owned files elsewhere are kept. `full` re-renders every unit and compares every file
    (repairs hand edits) instead of trusting unchanged fingerprints.

    `validate(root, changed_paths, read_base)` runs before the commit on a plain-file copy of the new tree
    (`root`, the validation mirror); `changed_paths` are repository-relative and include deleted paths (no
    longer under root); `read_base(path)` returns a path's bytes at the base commit (None if absent). When it
    raises, nothing is committed and the exception propagates. A callback taking two arguments gets two; one
    with an ``unchanged_since`` parameter also gets the mirror's state token (mirror.mirror_state) from before the
    changed paths were written (besides them, only the manifest in the portal's hidden folder changed).

    Raises GitOpsInvariantError when the built tree differs from the render, GitOpsDeletionRefused when it
    deletes more than max(GITOPS_DELETION_BUDGET_FILES, GITOPS_DELETION_BUDGET_SHARE x owned files) without
    `allow_deletions`, or any essential path, GitOpsPushError when the remote refuses the push (the commit is
    kept on refs/portal/unpushed and the next run pushes it if the remote has not moved on), GitOpsPushRejected
    after GITOPS_PUSH_RETRIES races lost. The remote is never forced.
    """
    units = list(units)
    scopes = tuple(scopes)
    _check_inputs(units, scopes)
    trailer_lines = _trailer_lines(trailers)
    report = _Progress(progress)
    remote = settings.GITOPS_REMOTE_URL
    retries = max(1, int(getattr(settings, "GITOPS_PUSH_RETRIES", 5)))
    max_chars = int(getattr(settings, "GITOPS_DIFF_MAX_CHARS", DEFAULT_DIFF_MAX_CHARS))

    report(0, "Waiting for the GitOps repository lock")
    with repository_lock():
        repo = Repository.open(Path(settings.GITOPS_REPO_DIR), remote_url=remote, branch=settings.GITOPS_BRANCH)
        try:
            repo.prepare()
            candidate = repo.resolve(CANDIDATE_REF)
            if candidate:
                logger.warning("Discarded commit %s of a run killed before its push finished; this run re-renders.",
                               candidate[:12])
                repo.set_ref(CANDIDATE_REF, None)
            mirror = ValidationMirror(repo)
            use_mirror = validate is not None or mirror.exists()
            earlier = _push_unpushed(repo, report) if remote else None
            attempt = 0
            while True:
                if attempt:
                    report(10, f"The remote branch moved on; re-applying on its new head (attempt {attempt + 1})")
                if remote:
                    report(3, "Fetching origin")
                    base = repo.fetch()
                else:
                    base = repo.head()
                built = _build(repo, base, units=units, scopes=scopes, full=full, message=message,
                               trailer_lines=trailer_lines, author_name=author_name, author_email=author_email,
                               validate=validate, mirror=mirror if use_mirror else None,
                               allow_deletions=allow_deletions, report=report)
                if built is None:
                    report(100, "No changes: nothing to commit")
                    return CommitResult(sha=None, push_attempts=attempt, pushed=bool(earlier),
                                        earlier_pushed=earlier)
                sha, added, changed, deleted = built
                diff = repo.diff(base, sha, max_chars=max_chars)
                result = CommitResult(sha=sha, added=added, changed=changed, deleted=deleted, diff=diff,
                                      earlier_pushed=earlier)
                if not remote:
                    repo.set_ref(repo.ref, sha, old=base or "")
                    _finish(repo, report, result, "Committed")
                    return result
                attempt += 1
                repo.set_ref(CANDIDATE_REF, sha)
                report(92, f"Pushing {sha[:12]} to origin (attempt {attempt} of {retries})")
                try:
                    pushed = repo.push(sha)
                except GitOpsPushError as exc:
                    repo.set_ref(UNPUSHED_REF, sha)
                    repo.set_ref(CANDIDATE_REF, None)
                    raise GitOpsPushError(f"{exc} The commit {sha[:12]} is kept on {UNPUSHED_REF}; the next run "
                                          "pushes it if the remote branch has not moved on.") from None
                repo.set_ref(CANDIDATE_REF, None)
                if pushed:
                    repo.set_ref(repo.remote_ref, sha)
                    repo.set_ref(repo.ref, sha)
                    result.pushed, result.push_attempts = True, attempt
                    _finish(repo, report, result, "Committed and pushed")
                    return result
                logger.info("Push of %s rejected: the remote branch moved on (attempt %d of %d).",
                            sha[:12], attempt, retries)
                if attempt >= retries:
                    raise GitOpsPushRejected(
                        f"Pushing to branch {settings.GITOPS_BRANCH} was rejected {attempt} times because other "
                        f"commits kept arriving first (GITOPS_PUSH_RETRIES={retries}). Nothing was forced and the "
                        "remote is unchanged by this run; run the render again.", attempts=attempt)
        finally:
            repo.close()


def gitops_preview(*, units: Sequence[RenderUnit], scopes: Sequence[str], full: bool = False,
                   diff_page: tuple[int, int] | None = None) -> PreviewResult:
    """What gitops_commit would change, against the current remote head (or local head without a remote).

    `diff_page=(first, count)` limits the diff to `count` changed files from index `first` of the sorted changed
    paths (PreviewResult.paths): a page of a large preview; the file lists are always complete.

    Takes no repository lock, so it never waits for a running commit: it fetches into a private scratch
    repository that borrows the repository's objects (git alternates) and builds the tree there, so the
    repository's refs and objects stay as they are. A repository that does not exist yet is not created.

    Cost, with a page: a unit that was never rendered and knows its paths (`unit.paths()`, the renderer's
    project folders) and none of whose paths exists in the base tree adds exactly those files, so it is listed
    without rendering and rendered only when the page shows one of its files (a renderer whose paths() disagree
    with render() is caught there, and the preview is then made by rendering every unit). The other units whose
    fingerprint differs from the manifest are rendered like a commit renders them, in GITOPS_PREVIEW_PROCESSES
    forked processes (default: the CPU count) when there are at least PREVIEW_PARALLEL_MIN_UNITS. The lists come
    from the plan (a path it writes is "added" when the base tree lacks it, else "changed"; what it deletes is
    "deleted": the rule the commit's tree follows) and only the page's files are stored and diffed. Without a
    page every unit is rendered and the whole tree built and diffed.
    """
    units = list(units)
    scopes = tuple(scopes)
    _check_inputs(units, scopes)
    remote = settings.GITOPS_REMOTE_URL
    branch = settings.GITOPS_BRANCH
    max_chars = int(getattr(settings, "GITOPS_DIFF_MAX_CHARS", DEFAULT_DIFF_MAX_CHARS))
    with tempfile.TemporaryDirectory(prefix="gitops-preview-") as tmp:
        main = Repository.open(Path(settings.GITOPS_REPO_DIR), remote_url=remote, branch=branch, create=False)
        scratch = Repository.scratch(Path(tmp) / "preview.git", remote_url=remote, branch=branch, borrow=main)
        try:
            base = scratch.fetch(move_branch=False) if remote else (main.head() if main else None)
            manifest = Manifest.loads(scratch.read_file(base, MANIFEST_PATH))
            if diff_page is not None and not full:
                result = _paged_preview(scratch, base, manifest, units=units, scopes=scopes, diff_page=diff_page,
                                        max_chars=max_chars, listing=True)
                if result is None:  # a unit's paths() disagreed with its render: render every unit instead
                    result = _paged_preview(scratch, base, manifest, units=units, scopes=scopes,
                                            diff_page=diff_page, max_chars=max_chars, listing=False)
                return result
            plan = _plan(units=_prerendered(units, manifest=manifest, full=full), scopes=scopes, manifest=manifest,
                         full=full, force=set(), current_blobs=lambda folders: scratch.tree_blobs(base, folders),
                         object_format=scratch.object_format, report=_Progress(None))
            if not plan.writes and not plan.deletes:
                return PreviewResult()
            tree = scratch.build_tree(base, plan.writes, plan.deletes)
            added, changed, deleted = scratch.tree_changes(base, tree)
            result = PreviewResult(added=added, changed=changed, deleted=deleted)
            if diff_page is None:
                result.diff_paths = result.paths
                result.diff = scratch.diff(base, tree, max_chars=max_chars)
            else:
                first, count = max(0, diff_page[0]), max(0, diff_page[1])
                result.diff_paths = result.paths[first:first + count]
                result.diff = scratch.diff(base, tree, max_chars=max_chars, paths=result.diff_paths)
            return result
        finally:
            scratch.close()
            if main is not None:
                main.close()


def _paged_preview(scratch: Repository, base: str | None, manifest: Manifest, *, units: list[RenderUnit],
                   scopes: tuple[str, ...], diff_page: tuple[int, int], max_chars: int,
                   listing: bool) -> PreviewResult | None:
    """gitops_preview with a page (see there); `listing` lists never-rendered units from their paths(). None when
    a listed unit rendered other paths than it listed."""
    listed = _listed_units(units, manifest) if listing else {}
    if listed:
        folders = {unit.directory for unit in units if unit.key in listed}
        present = scratch.tree_blobs(base, folders)
        for key in [key for key, paths in listed.items() if any(path in present for path in paths)]:
            del listed[key]  # it may change or keep a file already there: render it to know
    eager = [unit for unit in units if unit.key not in listed]
    read: dict[str, str] = {}

    def current_blobs(folders: set[str] | None) -> dict[str, str]:
        read.update(scratch.tree_blobs(base, folders))
        return read

    plan = _plan(units=_prerendered(eager, manifest=manifest, full=False), scopes=scopes, manifest=manifest,
                 full=False, force=set(), current_blobs=current_blobs, object_format=scratch.object_format,
                 report=_Progress(None))
    owner = {path: key for key, paths in listed.items() for path in paths}
    for path in sorted(path for path in owner if path in plan.rendered or path in plan.kept_lookup):
        other = plan.kept_lookup.key_of(path) or next(u.key for u in eager if path.startswith(u.directory))
        raise ValueError(f"Units {other!r} and {owner[path]!r} both produce {path!r}.")
    if not plan.writes and not plan.deletes and not owner:
        return PreviewResult()
    result = PreviewResult(added=sorted([*(p for p in plan.writes if p not in read), *owner]),
                           changed=sorted(p for p in plan.writes if p in read), deleted=sorted(plan.deletes))
    first, count = max(0, diff_page[0]), max(0, diff_page[1])
    result.diff_paths = result.paths[first:first + count]
    if not result.diff_paths:
        return result
    writes = {path: plan.writes[path] for path in result.diff_paths if path in plan.writes}
    by_key = {unit.key: unit for unit in units}
    for key in sorted({owner[path] for path in result.diff_paths if path in owner}):
        files = by_key[key].render()
        if not isinstance(files, dict) or sorted(files) != list(listed[key]) or not all(
                isinstance(data, bytes | bytearray) for data in files.values()):
            logger.warning("Render unit %s rendered other files than its paths() list; the preview renders every "
                           "unit instead.", key)
            return None
        writes.update((path, bytes(data)) for path, data in files.items() if path in result.diff_paths)
    page = set(result.diff_paths)
    tree = scratch.build_tree(base, writes, [path for path in plan.deletes if path in page])
    result.diff = scratch.diff(base, tree, max_chars=max_chars, paths=result.diff_paths)
    return result


def _listed_units(units: list[RenderUnit], manifest: Manifest) -> dict[str, tuple[str, ...]]:
    """{key: sorted paths} of the units the manifest does not know that list their paths without rendering; the
    paths are checked as _plan checks rendered ones."""
    listed: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for unit in units:
        paths_of = getattr(unit, "paths", None)
        if paths_of is None or unit.key in manifest.units:
            continue
        paths = tuple(sorted(paths_of()))
        cut = len(unit.directory)
        for path in paths:
            if not path.startswith(unit.directory):
                raise ValueError(f"Unit {unit.key!r} renders {path!r} outside its folder {unit.directory!r}.")
            if (path + "/").startswith(MANIFEST_DIR) or not _relative_path_ok(path[cut:]):
                check_path(path, what=f"Unit {unit.key!r} path")  # raises, naming the whole path
            if path in owner:
                raise ValueError(f"Units {owner[path]!r} and {unit.key!r} both produce {path!r}.")
            owner[path] = unit.key
        listed[unit.key] = paths
    return listed


@functools.lru_cache(maxsize=4096)
def _relative_path_ok(rest: str) -> bool:
    """check_path of the part of a path below its unit's folder (already checked by _check_inputs); thousands of
    project folders repeat the same few file names, so each is checked once."""
    try:
        check_path(rest)
    except ValueError:
        return False
    return True


# Below this many units to render, forking costs more than it saves.
PREVIEW_PARALLEL_MIN_UNITS = 400
_PREVIEW_CHUNK_UNITS = 250
_preview_todo: list[RenderUnit] = []  # read by the forked render processes (set just before the fork)


@dataclass(frozen=True)
class _RenderedUnit:
    """A unit whose files were rendered already (by a render process): render() hands them over."""

    key: str
    directory: str
    fingerprint: str
    essential: tuple[str, ...]
    files: dict[str, bytes]

    def render(self) -> dict[str, bytes]:
        return self.files


def _prerendered(units: list[RenderUnit], *, manifest: Manifest, full: bool) -> list[RenderUnit]:
    """`units` with those a plan would render rendered in forked processes (their order kept); `units` unchanged
    when there are few of them, the platform cannot fork or a render process fails (the plan then renders them
    in this process and raises the real error)."""
    global _preview_todo
    todo = [i for i, unit in enumerate(units) if full or _needs_render(unit, manifest.units.get(unit.key))]
    processes = int(getattr(settings, "GITOPS_PREVIEW_PROCESSES", 0) or os.cpu_count() or 1)
    if len(todo) < PREVIEW_PARALLEL_MIN_UNITS or processes < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return units
    # One unit of each kind is rendered here first: its templates are compiled once, before the fork, not once
    # per process (about 0.5 s each). Those units need no render process.
    done: dict[int, dict[str, bytes]] = {}
    kinds: set[object] = set()
    for i in todo:
        kind = getattr(units[i].render, "func", None)
        if kind is not None and kind not in kinds:
            kinds.add(kind)
            done[i] = units[i].render()
    todo = [i for i in todo if i not in done]
    _preview_todo = [units[i] for i in todo]
    step = _PREVIEW_CHUNK_UNITS
    chunks = [(start, min(start + step, len(todo))) for start in range(0, len(todo), step)]
    gc.freeze()  # the render processes share the parent's heap instead of copying it on their first collection
    try:
        with multiprocessing.get_context("fork").Pool(processes=min(processes, len(chunks))) as pool:
            rendered = [files for chunk in pool.imap(_render_chunk, chunks) for files in chunk]
    except Exception:  # noqa: BLE001 - rendered again in this process, which raises the real error
        logger.warning("Rendering the preview in %d processes failed; rendering in one.", processes, exc_info=True)
        return units
    finally:
        gc.unfreeze()
        _preview_todo = []
    out = list(units)
    for i, files in [*zip(todo, rendered, strict=True), *done.items()]:
        unit = units[i]
        out[i] = _RenderedUnit(key=unit.key, directory=unit.directory, fingerprint=unit.fingerprint,
                               essential=tuple(getattr(unit, "essential", ()) or ()), files=files)
    return out


def _render_chunk(bounds: tuple[int, int]) -> list[dict[str, bytes]]:
    return [_preview_todo[i].render() for i in range(*bounds)]


def gitops_head() -> str | None:
    """Head of the repository's branch (what the last run committed, or the last fetched remote head), None
    before the first commit or when the repository does not exist."""
    repo = Repository.open(Path(settings.GITOPS_REPO_DIR), remote_url=settings.GITOPS_REMOTE_URL,
                           branch=settings.GITOPS_BRANCH, create=False)
    if repo is None:
        return None
    try:
        return repo.head()
    finally:
        repo.close()


def gitops_manifest_warm() -> bool:
    """Read the manifest at the branch head into this process's memo (``_manifest_at``), so processes forked
    from this one (the rq worker's jobs) find it parsed. Takes no lock (reads git objects only). Returns whether a
    manifest was read."""
    repo = Repository.open(Path(settings.GITOPS_REPO_DIR), remote_url=settings.GITOPS_REMOTE_URL,
                           branch=settings.GITOPS_BRANCH, create=False)
    if repo is None:
        return False
    try:
        manifest, data = _manifest_at(repo, repo.head())
        if data is None:
            return False
        manifest_lines_warm(manifest, data)  # its units' lines, split once for every job's new manifest
        accept_manifest_paths(manifest)  # its folders and files, checked once for every job's input check
        return True
    finally:
        repo.close()


# The manifest this process read last: (blob id, parsed manifest, its bytes). Read-only once made: the writer
# builds each new manifest from new dicts and new entries (_plan), so the parsed one can be shared.
_MANIFEST_MEMO: list[tuple[str, Manifest, bytes] | None] = [None]


def _manifest_at(repo: Repository, base: str | None) -> tuple[Manifest, bytes | None]:
    """The manifest committed at `base` and its bytes (an empty manifest and None when there is none), parsed
    once per blob id in this process (7.5 MB of JSON at 10,000 projects), and then only in the lines that differ
    from the manifest read before (Manifest.loads' ``previous``)."""
    entry = repo.tree_entries(base, [MANIFEST_DIR]).get(MANIFEST_PATH) if base else None
    memo = _MANIFEST_MEMO[0]
    if entry is not None and entry[0] in ("100644", "100755") and memo is not None and memo[0] == entry[1]:
        return memo[1], memo[2]
    data = repo.read_file(base, MANIFEST_PATH)
    # The one read before is mostly the same lines (the commit before this one): only the others are parsed.
    manifest = Manifest.loads(data, previous=(memo[1], memo[2]) if memo is not None else None)
    if entry is not None and data is not None and blob_id(data, repo.object_format) == entry[1]:
        _MANIFEST_MEMO[0] = (entry[1], manifest, data)
    return manifest, data


# --- one attempt ----------------------------------------------------------------------------------
def _push_unpushed(repo: Repository, report: _Progress) -> str | None:
    """Push the commit a failed push kept, when the remote head is still its parent; otherwise drop it (this
    run re-renders on the new head, which supersedes it). Returns its sha when pushed."""
    kept = repo.resolve(UNPUSHED_REF)
    if kept is None:
        return None
    report(2, f"Pushing {kept[:12]}, kept from a push that failed")
    head = repo.fetch()
    if head == kept:  # the failed push did reach the remote (the connection dropped after the update)
        repo.set_ref(UNPUSHED_REF, None)
        logger.info("%s, the commit an earlier push seemed to fail for, is on the remote already.", kept[:12])
        return kept
    if repo.parent(kept) == head and repo.push(kept):
        repo.set_ref(repo.remote_ref, kept)
        repo.set_ref(repo.ref, kept)
        repo.set_ref(UNPUSHED_REF, None)
        logger.info("Pushed %s, the commit an earlier run could not push.", kept[:12])
        return kept
    repo.set_ref(UNPUSHED_REF, None)
    logger.warning("Dropped %s, the commit an earlier run could not push: the remote branch moved on since, and "
                   "this run re-renders on its new head.", kept[:12])
    return None


def _build(repo: Repository, base: str | None, *, units: list[RenderUnit], scopes: tuple[str, ...], full: bool,
           message: str, trailer_lines: list[str], author_name: str, author_email: str,
           validate: Validate | None, mirror: ValidationMirror | None, allow_deletions: bool,
           report: _Progress) -> tuple[str, list[str], list[str], list[str]] | None:
    """Plan, build, check, validate and commit on `base`; the commit's (sha, added, changed, deleted) or None
    when nothing changes. Moves no branch."""
    manifest, manifest_read = _manifest_at(repo, base)
    force: set[str] = set()
    while True:
        # Each new file goes to git as soon as it is rendered: git stores it while the next one renders.
        with repo.tree_stream() as stream:
            plan = _plan(units=units, scopes=scopes, manifest=manifest, full=full, force=force,
                         current_blobs=lambda folders: repo.tree_blobs(base, folders),
                         object_format=repo.object_format, report=report, store=stream.add)
            # Commit bookkeeping alone only when ownership changed (else every later run would render those units
            # again); a fingerprint that moved without changing any byte is not worth a commit.
            records_ownership = _ownership_changed(plan.manifest, manifest)
            if not plan.writes and not plan.deletes and not records_ownership:
                return None
            # Lines of kept units are copied from the bytes read (one unit per line): only changed units are encoded.
            manifest_bytes = plan.manifest.dumps(previous=(manifest, manifest_read) if manifest_read else None)
            manifest_oid = blob_id(manifest_bytes, repo.object_format)
            report(72, f"Storing {len(plan.writes)} changed files")
            tree = stream.tree(base, {**{path: plan.rendered[path] for path in plan.writes},
                                      MANIFEST_PATH: manifest_bytes}, plan.deletes)
        report(74, "Checking the new tree against the render")
        changes = repo.raw_changes(base, tree)
        wrong, drifted, consistent = _invariant(repo, changes, tree, base=base, plan=plan, manifest=manifest,
                                                manifest_oid=manifest_oid)
        if drifted and not force:
            # Files of unchanged units differ from what the manifest says they were rendered as (edited or deleted
            # by hand): render those units again so the commit holds the render, then check again.
            force = {plan.kept_lookup.key_of(path) for path in drifted}
            logger.warning("%d files of %d unchanged units differ from their render in git (edited by hand?); "
                           "rendering those units again.", len(drifted), len(force))
            continue
        wrong += [f"{path}: kept from an unchanged unit, but the commit does not hold its render"
                  for path in sorted(drifted)]
        break
    if wrong:
        shown = "\n".join(f"  {line}" for line in wrong[:_REPORT_MAX_PATHS])
        more = f"\n  ... and {len(wrong) - _REPORT_MAX_PATHS} more" if len(wrong) > _REPORT_MAX_PATHS else ""
        raise GitOpsInvariantError(
            f"The commit built for this render differs from the render in {len(wrong)} paths; nothing was "
            f"committed or pushed and the remote is unchanged:\n{shown}{more}",
            paths=[line.partition(":")[0] for line in wrong])
    added, changed, deleted = _split(changes)
    if not (added or changed or deleted or records_ownership):
        return None  # git sees no difference
    _check_deletions(deleted, manifest=manifest, units=units, allow_deletions=allow_deletions)

    changed_paths = sorted([*plan.writes, *plan.deletes])
    since = None
    if mirror is not None:
        report(74, "Updating the validation tree")
        mirror.sync(base)
        since = mirror.state()  # the tree as `base` holds it; only changed_paths (and the manifest) differ after
        mirror.apply({**plan.writes, MANIFEST_PATH: manifest_bytes}, plan.deletes)
    try:
        if validate is not None and changed_paths:
            report(75, f"Validating {len(changed_paths)} changed files")
            _call_validate(validate, mirror.tree, changed_paths, lambda path: repo.read_file(base, path),
                           unchanged_since=since)
        report(88, f"Committing {len(added) + len(changed) + len(deleted)} changed files")
        sha = repo.commit_tree(tree, base, message=_commit_message(message, added, changed, deleted, trailer_lines),
                               author_name=author_name, author_email=author_email)
    except BaseException:
        if mirror is not None:
            try:
                mirror.revert(base, [*changed_paths, MANIFEST_PATH])
            except Exception:  # noqa: BLE001 - the original error matters; an unmarked mirror is rebuilt next time
                logger.exception("Could not restore the validation mirror; the next run rebuilds it.")
                mirror.forget()
        raise
    _MANIFEST_MEMO[0] = (manifest_oid, plan.manifest, manifest_bytes)  # the next commit in this process starts here
    if consistent:
        repo.set_ref(VERIFIED_REF, sha)  # its tree holds its manifest: later checks read only what differs from it
    if mirror is not None:
        mirror.mark(sha)
    return sha, added, changed, deleted


def _call_validate(validate: Validate, root: Path, paths: list[str], read_base: ReadBase,
                   unchanged_since: str | None = None) -> None:
    """Call ``validate`` with what it accepts: (root, paths, read_base), and the keyword ``unchanged_since`` (the
    mirror's state token before the changed paths were written: ValidationMirror.state) when it takes one."""
    try:
        signature = inspect.signature(validate)
        signature.bind(root, paths, read_base)
    except TypeError:
        validate(root, paths)  # a two-argument callback (before read_base existed)
        return
    except ValueError:
        validate(root, paths, read_base)  # no signature to inspect (a builtin): call with all three
        return
    if "unchanged_since" in signature.parameters:
        validate(root, paths, read_base, unchanged_since=unchanged_since)
    else:
        validate(root, paths, read_base)


def _split(changes: list[tuple[str, str, str, str]]) -> tuple[list[str], list[str], list[str]]:
    """(added, changed, deleted) paths of `git diff-tree --raw` records, the portal's own folder left out."""
    added, changed, deleted = [], [], []
    for status, path, _, _ in changes:
        if not path.startswith(MANIFEST_DIR):
            {"A": added, "D": deleted}.get(status, changed).append(path)
    return sorted(added), sorted(changed), sorted(deleted)


def _invariant(repo: Repository, raw_changes: list[tuple[str, str, str, str]], tree: str, *, base: str | None,
               plan: _Plan, manifest: Manifest, manifest_oid: str) -> tuple[list[str], set[str], bool]:
    """Compare the built tree with the render, from git's own listing of the new tree and its diff with the base
    (not from the plan's bookkeeping). Returns (problems as "path: what", kept paths whose base already differs
    from their render, whether the new tree holds every file of the new manifest with its blob id).

    Reads only what can differ: the rendered folders of the new tree, its diff with the base, and what the base
    holds for the files of unchanged units. The last comes from the commit this check last found consistent
    (VERIFIED_REF): files its diff with the base does not touch are as that commit's manifest says (the same
    manifest, or the whole base tree is listed). Without such a commit, the whole base tree is listed.
    """
    changes = {path: (status, oid) for status, path, _, oid in raw_changes}
    folders = {path.rpartition("/")[0] + "/" for path in plan.rendered} | {MANIFEST_DIR}
    new = repo.tree_entries(tree, folders)
    wrong = []
    for path, oid in plan.rendered.items():
        entry = new.get(path)
        if entry is None:
            wrong.append(f"{path}: rendered, but missing from the commit")
        elif entry[1] != oid:
            wrong.append(f"{path}: the commit's bytes differ from the render")
    base_oid, touched = _base_oids(repo, base)
    drifted = set()
    if touched is None:
        kept = plan.kept.items()
    else:
        # A kept file can be wrong only where this commit changes something, and can have drifted only where the
        # base differs from the last consistent commit: elsewhere base_oid is the manifest's own blob id.
        lookup = plan.kept_lookup
        kept = [(path, found[1]) for path in sorted(changes.keys() | touched.keys())
                if (found := lookup.owner(path)) is not None]
    for path, oid in kept:
        if path in changes:
            status, new_oid = changes[path]
            if status == "D" or new_oid != oid:
                wrong.append(f"{path}: kept from an unchanged unit, but changed or deleted by this commit")
        elif base_oid(path, oid) != oid:
            drifted.add(path)
    consistent = True
    for path, oid in plan.remaining.items():
        status, new_oid = changes.get(path, ("", ""))
        if (new_oid if status else base_oid(path, oid)) != oid or status == "D":
            consistent = False  # a file of a unit outside this render's scopes that git holds otherwise
    may_delete: set[str] | None = None  # the base manifest's files no unit renders or keeps: read only for a deletion
    for path, (status, _oid) in sorted(changes.items()):
        if path == MANIFEST_PATH:
            continue
        if status == "D":
            if may_delete is None:
                owned = {owned for entry in manifest.units.values() for owned in entry.files}
                may_delete = owned - plan.rendered.keys() - plan.kept.keys()
            if path not in may_delete:
                wrong.append(f"{path}: deleted, but not a file the portal owned and no longer renders")
        elif path not in plan.rendered:
            wrong.append(f"{path}: changed, but not rendered by this run")
    if new.get(MANIFEST_PATH, ("", ""))[1] != manifest_oid:
        wrong.append(f"{MANIFEST_PATH}: the commit does not hold the new manifest")
    return wrong, drifted, consistent and not wrong and not drifted


def _base_oids(repo: Repository, base: str | None
               ) -> tuple[Callable[[str, str], str | None], dict[str, str | None] | None]:
    """(`base_oid(path, manifest_oid)`: the blob id `path` has in the base tree (None: absent), for files the base
    commit's manifest lists with `manifest_oid`; the paths where it can differ from `manifest_oid`, or None when
    it can anywhere). From the diff between the last consistent commit (VERIFIED_REF) and the base when the
    manifest is the same in both; otherwise from a listing of the whole base tree."""
    if base is None:
        return (lambda path, oid: None), None
    verified = repo.resolve(VERIFIED_REF)
    touched: dict[str, str | None] | None = None
    if verified is not None:
        try:
            diff = repo.raw_changes(verified, base) if verified != base else []
        except GitOpsError:
            diff = None
        if diff is not None and not any(path == MANIFEST_PATH for _status, path, _mode, _oid in diff):
            touched = {path: (None if status == "D" else oid) for status, path, _mode, oid in diff}
    if touched is None:
        entries = repo.tree_entries(base)
        return (lambda path, oid: entries[path][1] if path in entries else None), None
    return (lambda path, oid: touched[path] if path in touched else oid), touched


def _check_deletions(deleted: list[str], *, manifest: Manifest, units: list[RenderUnit],
                     allow_deletions: bool) -> None:
    """The deletion budget and essential paths (issue 7: refuse surprising mass deletions even when the invariant
    holds; never a Namespace or PVC of a project still active in the model)."""
    essential = sorted({path for unit in units for path in getattr(unit, "essential", ()) or ()} & set(deleted))
    owned = sum(len(entry.files) for entry in manifest.units.values())
    files = int(getattr(settings, "GITOPS_DELETION_BUDGET_FILES", DEFAULT_DELETION_BUDGET_FILES))
    share = float(getattr(settings, "GITOPS_DELETION_BUDGET_SHARE", DEFAULT_DELETION_BUDGET_SHARE))
    budget = max(files, int(share * owned))
    if essential:
        shown = ", ".join(essential[:_REPORT_MAX_PATHS])
        raise GitOpsDeletionRefused(
            f"Refusing to delete {len(essential)} essential paths of units that are still rendered (a live "
            f"project's Namespace or PVC): {shown}. Nothing was committed; this is a bug in the render, and no "
            "confirmation overrides it.", deleted=len(deleted), budget=budget, essential=essential)
    if len(deleted) > budget and not allow_deletions:
        raise GitOpsDeletionRefused(
            f"Refusing to delete {len(deleted)} files in one commit: the deletion budget is {budget} "
            f"(max of GITOPS_DELETION_BUDGET_FILES={files} and GITOPS_DELETION_BUDGET_SHARE={share:g} of "
            f"{owned} owned files). Nothing was committed. If these deletions are intended, confirm them "
            "(gitops_commit(..., allow_deletions=True)).", deleted=len(deleted), budget=budget, essential=[])


def _finish(repo: Repository, report: _Progress, result: CommitResult, verb: str) -> None:
    repo.maintain()
    summary = f"{len(result.added)} added, {len(result.changed)} changed, {len(result.deleted)} deleted"
    logger.info("%s %s: %s.", verb, result.sha, summary)
    report(100, f"{verb} {result.sha[:12]} ({summary})")


# --- planning: what to render, write and delete ---------------------------------------------------------
@dataclass
class _Plan:
    writes: dict[str, bytes]  # path -> bytes, for paths whose blob differs from the base tree
    deletes: list[str]  # owned paths present in the base tree that no unit produces any more
    manifest: Manifest
    rendered: dict[str, str]  # every path rendered by this run -> blob id
    kept_units: dict[str, UnitEntry]  # units not rendered (fingerprint unchanged), from the manifest
    remaining_units: dict[str, UnitEntry] = field(default_factory=dict)  # gone units whose files stay

    # Flattened on first use only: a run with nothing to commit never needs them (40,000 paths at 5,000 projects).
    @cached_property
    def kept(self) -> dict[str, str]:
        """Every path of the kept units -> blob id from the manifest."""
        return {path: blob for entry in self.kept_units.values() for path, blob in entry.files.items()}

    @cached_property
    def remaining(self) -> dict[str, str]:
        """Files of units no longer rendered that stay (outside this render's scopes) -> blob id."""
        return {path: blob for entry in self.remaining_units.values() for path, blob in entry.files.items()}

    @cached_property
    def kept_lookup(self) -> _OwnerLookup:
        """Which kept unit owns a path (_plan seeds it with the one it built)."""
        return _OwnerLookup(self.kept_units)


class _OwnerLookup:
    """Which of some units owns a path, from their folders: a unit's files lie in its folder (the writer refuses a
    render outside it; the manifest stores them relative to it), so only the units of the path's ancestor folders
    can hold it. Builds a folder index of the units (10,000 at 10,000 projects) instead of a path index of their
    files (80,000)."""

    def __init__(self, units: dict[str, UnitEntry]) -> None:
        self.units = units
        by_folder: dict[str, list[str]] = {}
        for key, entry in units.items():
            by_folder.setdefault(entry.directory, []).append(key)
        self.by_folder = by_folder

    def owner(self, path: str) -> tuple[str, str] | None:
        """(unit key, blob id) of the unit listing ``path``, or None."""
        cut = path.find("/")
        while cut != -1:
            for key in self.by_folder.get(path[:cut + 1], ()):
                blob = self.units[key].files.get(path)
                if blob is not None:
                    return key, blob
            cut = path.find("/", cut + 1)
        return None

    def key_of(self, path: str) -> str | None:
        """The key of the unit listing ``path``, or None."""
        found = self.owner(path)
        return None if found is None else found[0]

    def __contains__(self, path: str) -> bool:
        return self.owner(path) is not None


def _plan(*, units: list[RenderUnit], scopes: tuple[str, ...], manifest: Manifest, full: bool, force: set[str],
          current_blobs: Callable[[set[str] | None], dict[str, str]], object_format: str,
          report: _Progress, store: Callable[[bytes], None] | None = None) -> _Plan:
    """What to write and delete for `units` against the base tree (`current_blobs(folders)`: path -> blob id of
    the base's files in those folders, or of every file for None). `store(bytes)`, when given, receives each file
    to write as soon as it is rendered (a TreeStream's add)."""
    todo = [u for u in units if full or u.key in force or _needs_render(u, manifest.units.get(u.key))]
    render_keys = {u.key for u in todo}
    unit_keys = {u.key for u in units}
    kept = {u.key: manifest.units[u.key] for u in units if u.key not in render_keys}
    gone = {key: entry for key, entry in manifest.units.items() if key not in unit_keys}

    # Read blob ids only where something can change: folders of units to render and of gone units.
    folders = {u.directory for u in todo}
    folders |= {manifest.units[u.key].directory for u in todo if u.key in manifest.units}
    folders |= {e.directory for e in gone.values() if any(p.startswith(scopes) for p in e.files)} if scopes else set()
    current = current_blobs(None if full else folders) if folders else {}

    # Which kept unit owns a path: only asked for the paths rendered or deleted.
    kept_owner = _OwnerLookup(kept)
    units_out: dict[str, UnitEntry] = dict(kept)
    produced: dict[str, str] = {}
    rendered: dict[str, str] = {}
    writes: dict[str, bytes] = {}
    _prefetch(todo)
    last_percent = -1
    for number, unit in enumerate(todo, start=1):
        files = unit.render()
        if not isinstance(files, dict):
            raise TypeError(f"Unit {unit.key!r} rendered {type(files).__name__}, expected dict[str, bytes].")
        entry_files: dict[str, str] = {}
        for path in sorted(files):
            data = files[path]
            check_path(path, what=f"Unit {unit.key!r} path")
            if not path.startswith(unit.directory):
                raise ValueError(f"Unit {unit.key!r} renders {path!r} outside its folder {unit.directory!r}.")
            if not isinstance(data, bytes | bytearray):
                raise TypeError(f"Unit {unit.key!r} rendered {type(data).__name__} for {path!r}, expected bytes.")
            owner = produced.get(path) or kept_owner.key_of(path)
            if owner is not None:
                raise ValueError(f"Units {owner!r} and {unit.key!r} both produce {path!r}.")
            produced[path] = unit.key
            blob = blob_id(data, object_format)
            entry_files[path] = blob
            rendered[path] = blob
            if current.get(path) != blob:
                writes[path] = data = bytes(data)
                if store is not None:
                    store(data)
        units_out[unit.key] = UnitEntry(directory=unit.directory, fingerprint=unit.fingerprint, files=entry_files)
        percent = 10 + 60 * number // len(todo)
        if percent != last_percent:
            last_percent = percent
            report(percent, f"Rendered {number} of {len(todo)} changed units ({len(writes)} files to write)")

    deletes: list[str] = []
    # A re-rendered unit owns its whole folder: files it no longer produces go, whatever the scopes.
    for unit in todo:
        old = manifest.units.get(unit.key)
        for path in old.files if old else ():
            if path not in produced and path not in kept_owner and path in current:
                deletes.append(path)
    # A unit that is no longer rendered loses its files only inside the scopes of this render.
    for key, entry in gone.items():
        remaining = {}
        for path, blob in entry.files.items():
            if path in produced or path in kept_owner:
                continue  # another unit took the path over
            if scopes and path.startswith(scopes):
                if path in current:
                    deletes.append(path)
            else:
                remaining[path] = blob
        if remaining:
            units_out[key] = UnitEntry(directory=entry.directory, fingerprint=entry.fingerprint, files=remaining)
    plan = _Plan(writes=writes, deletes=sorted(set(deletes)), manifest=Manifest(units=units_out), rendered=rendered,
                 kept_units=kept, remaining_units={key: entry for key, entry in units_out.items() if key in gone})
    plan.kept_lookup = kept_owner  # already built: seed the cached property
    return plan


def _prefetch(todo: list[RenderUnit]) -> None:
    """Call each distinct `prefetch` of the units to render once, with the keys of its units (RenderUnit: units
    whose input is read when rendered get it read in one go rather than one read per unit)."""
    groups: dict[int, tuple[Callable[[list[str]], None], list[str]]] = {}
    for unit in todo:
        prefetch = getattr(unit, "prefetch", None)
        if prefetch is not None:
            groups.setdefault(id(prefetch), (prefetch, []))[1].append(unit.key)
    for prefetch, keys in groups.values():
        prefetch(keys)


def _ownership_changed(new: Manifest, old: Manifest) -> bool:
    """Whether `new` records other units, folders or files than `old` (fingerprints aside): the same answer as
    comparing their _ownership, without building it. A unit entry carried over unchanged (_plan keeps the base
    manifest's entry objects of units it does not render) is skipped by identity."""
    if new.units.keys() != old.units.keys():
        return True
    for key, entry in new.units.items():
        before = old.units[key]
        if entry is not before and (entry.directory != before.directory or entry.files != before.files):
            return True
    return False


def _needs_render(unit: RenderUnit, entry: UnitEntry | None) -> bool:
    return entry is None or entry.fingerprint != unit.fingerprint or entry.directory != unit.directory


def _check_inputs(units: list[RenderUnit], scopes: tuple[str, ...]) -> None:
    """Reject malformed input before anything is locked, fetched or written."""
    for scope in scopes:
        check_directory(scope, what="Scope")
    seen: set[str] = set()
    for unit in units:
        if not isinstance(unit.key, str) or not unit.key:
            raise ValueError(f"A render unit needs a non-empty string key, got {unit.key!r}.")
        if unit.key in seen:
            raise ValueError(f"Two render units share the key {unit.key!r}.")
        seen.add(unit.key)
        check_unit_paths(unit.directory, getattr(unit, "essential", ()) or (), what=f"Unit {unit.key!r}")
        if not isinstance(unit.fingerprint, str):
            raise TypeError(f"Unit {unit.key!r} fingerprint must be a string.")


# --- commit message and progress ---------------------------------------------------------------------
def _trailer_lines(trailers: dict[str, str]) -> list[str]:
    lines = []
    for key, value in trailers.items():
        if not _TRAILER_KEY.match(key):
            raise ValueError(f"Trailer key {key!r} must be letters, digits and '-' (for example Portal-Run).")
        lines.append(f"{key}: {' '.join(str(value).split())}")
    return lines


def _commit_message(message: str, added: list[str], changed: list[str], deleted: list[str],
                    trailer_lines: list[str]) -> str:
    summary, _, rest = message.strip().partition("\n")
    lines = [summary.strip() or "Render GitOps manifests", ""]
    if rest.strip():
        lines += [rest.strip(), ""]
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for column, paths in enumerate((added, changed, deleted)):
        for path in paths:
            parts = path.split("/")
            group = "/".join(parts[:2]) + "/" if len(parts) > 2 else (parts[0] + "/" if len(parts) == 2 else path)
            counts[group][column] += 1
    total = len(added) + len(changed) + len(deleted)
    lines.append(f"{total} files: {len(added)} added, {len(changed)} changed, {len(deleted)} deleted")
    if not total:
        lines.append(f"  (only the portal's record of which files it owns, {MANIFEST_PATH})")
    for group in sorted(counts)[:_MESSAGE_MAX_FOLDERS]:
        a, c, d = counts[group]
        detail = ", ".join(f"{n} {word}" for n, word in ((a, "added"), (c, "changed"), (d, "deleted")) if n)
        lines.append(f"  {group} ({detail})")
    if len(counts) > _MESSAGE_MAX_FOLDERS:
        lines.append(f"  ... and {len(counts) - _MESSAGE_MAX_FOLDERS} more folders")
    if trailer_lines:
        lines += ["", *trailer_lines]
    return "\n".join(lines) + "\n"


class _Progress:
    """Calls the caller's progress callback with a percentage that never goes backwards."""

    def __init__(self, callback: Progress | None) -> None:
        self.callback = callback
        self.last = 0

    def __call__(self, percent: int, message: str) -> None:
        self.last = max(self.last, min(100, int(percent)))
        if self.callback is not None:
            self.callback(self.last, message)
