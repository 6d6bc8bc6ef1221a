"""Apply render units to the GitOps repository (gitops_commit) or show what that would change (gitops_preview).

A run holds the repository lock from start to end: fetch, move the working copy to the remote head, write
what differs, validate, commit once, push; when the push loses a race, start again from the new remote head.
The committed manifest (deployments.git.manifest) is what keeps this proportional to the change: a unit
whose fingerprint is unchanged is neither rendered nor read, and only bytes that differ are written.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from django.conf import settings

from deployments.git.manifest import (
    MANIFEST_DIR,
    MANIFEST_PATH,
    Manifest,
    UnitEntry,
    blob_id,
    check_directory,
    check_path,
)
from deployments.git.repository import (
    GitOpsError,
    GitOpsPushError,
    GitOpsPushRejected,
    WorkingCopy,
    outermost_folders,
)
from deployments.locks import repository_lock

logger = logging.getLogger(__name__)

DEFAULT_DIFF_MAX_CHARS = 1_000_000
_MESSAGE_MAX_FOLDERS = 20
_TRAILER_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


class RenderUnit(Protocol):
    """What the renderer hands over (deployments.rendering.RenderUnit has these fields)."""

    @property
    def key(self) -> str: ...  # stable id, e.g. "env:minikube:project:<uuid>"

    @property
    def directory(self) -> str: ...  # repository-relative folder it owns, ending in "/"

    @property
    def fingerprint(self) -> str: ...  # same fingerprint => render() returns the same bytes

    @property
    def render(self) -> Callable[[], dict[str, bytes]]: ...  # path -> bytes, every path under directory


Progress = Callable[[int, str], None]
Validate = Callable[[Path, list[str]], None]


@dataclass
class CommitResult:
    sha: str | None  # None when nothing changed (no commit made)
    added: list[str] = field(default_factory=list)  # repository-relative paths, sorted
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    diff: str = ""  # unified diff of the commit against its parent (manifest left out); "" if none
    pushed: bool = False
    push_attempts: int = 0


@dataclass
class PreviewResult:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    diff: str = ""


def gitops_commit(*, units: Sequence[RenderUnit], scopes: Sequence[str], message: str,
                  trailers: dict[str, str], author_name: str, author_email: str,
                  validate: Validate | None = None, progress: Progress | None = None,
                  full: bool = False, allow_deletions: bool = False) -> CommitResult:
    """Write the units into the GitOps repository as one commit and push it.

    `scopes` are the folders this render speaks for: portal-owned files under them that no unit produces any
    more are deleted; owned files elsewhere are kept. `full` re-renders every unit and compares every file
    (repairs hand edits) instead of trusting unchanged fingerprints. `validate(workdir, changed_paths)` runs
    after the files are written and before the commit; when it raises, the working copy goes back to HEAD and
    the exception propagates. `changed_paths` includes deleted paths (no longer on disk).
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
        wc = WorkingCopy.open(Path(settings.GITOPS_REPO_DIR), remote_url=remote, branch=settings.GITOPS_BRANCH)
        try:
            wc.prepare()
            attempt = 0
            while True:
                if attempt:
                    report(10, f"The remote branch moved on; re-applying on its new head (attempt {attempt + 1})")
                base, manifest = _start_from_remote(wc, units, scopes, report)
                outcome = _write_and_commit(wc, base, manifest, units=units, scopes=scopes, full=full,
                                            message=message, trailer_lines=trailer_lines, author_name=author_name,
                                            author_email=author_email, validate=validate, report=report)
                if outcome is None:
                    report(100, "No changes: nothing to commit")
                    return CommitResult(sha=None, push_attempts=attempt)
                sha, added, changed, deleted = outcome
                diff = wc.diff(base, sha, max_chars=max_chars)
                result = CommitResult(sha=sha, added=added, changed=changed, deleted=deleted, diff=diff)
                if not remote:
                    _finish(wc, report, result, "Committed")
                    return result
                attempt += 1
                report(92, f"Pushing {sha[:12]} to origin (attempt {attempt} of {retries})")
                try:
                    pushed = wc.push()
                except GitOpsPushError:
                    wc.reset(base)
                    raise
                if pushed:
                    result.pushed, result.push_attempts = True, attempt
                    _finish(wc, report, result, "Committed and pushed")
                    return result
                logger.info("Push of %s rejected: the remote branch moved on (attempt %d of %d).",
                            sha[:12], attempt, retries)
                if attempt >= retries:
                    wc.reset(base)
                    raise GitOpsPushRejected(
                        f"Pushing to branch {settings.GITOPS_BRANCH} was rejected {attempt} times because other "
                        f"commits kept arriving first (GITOPS_PUSH_RETRIES={retries}). Nothing was forced and the "
                        "remote is unchanged by this run; run the render again.", attempts=attempt)
        finally:
            wc.close()


def gitops_preview(*, units: Sequence[RenderUnit], scopes: Sequence[str], full: bool = False) -> PreviewResult:
    """What gitops_commit would change, against the current remote head (or local head without a remote).

    Renders into a scratch folder and diffs with a private index, so the working copy's files, index and HEAD
    stay as they are. A repository that does not exist yet is previewed in a temporary one (all added).
    """
    units = list(units)
    scopes = tuple(scopes)
    _check_inputs(units, scopes)
    remote = settings.GITOPS_REMOTE_URL
    branch = settings.GITOPS_BRANCH
    max_chars = int(getattr(settings, "GITOPS_DIFF_MAX_CHARS", DEFAULT_DIFF_MAX_CHARS))
    with repository_lock(), tempfile.TemporaryDirectory(prefix="gitops-preview-") as tmp:
        wc = WorkingCopy.open(Path(settings.GITOPS_REPO_DIR), remote_url=remote, branch=branch, create=False)
        if wc is None:
            wc = WorkingCopy.open(Path(tmp) / "repository", remote_url=remote, branch=branch)
        try:
            wc.prepare()
            base = wc.fetch() if remote else wc.head()
            manifest = Manifest.loads(wc.read_file(base, MANIFEST_PATH))
            runner = wc.scratch(Path(tmp) / "scratch")
            plan = _plan(units=units, scopes=scopes, manifest=manifest, full=full,
                         current_blobs=lambda folders: wc.tree_blobs(base, folders),
                         sink=_Writer(Path(runner.working_dir)).write, object_format=wc.object_format,
                         report=_Progress(None))
            if not plan.writes and not plan.deletes:
                return PreviewResult()
            tree = wc.scratch_tree(runner, base, written=bool(plan.writes), deleted=plan.deletes)
            added, changed, deleted = wc.tree_changes(base, tree, runner=runner)
            return PreviewResult(added=added, changed=changed, deleted=deleted,
                                 diff=wc.diff(base, tree, max_chars=max_chars, runner=runner))
        finally:
            wc.close()


def gitops_head() -> str | None:
    """Head of the working copy's branch (what the last run committed), None before the first commit."""
    wc = WorkingCopy.open(Path(settings.GITOPS_REPO_DIR), remote_url=settings.GITOPS_REMOTE_URL,
                          branch=settings.GITOPS_BRANCH, create=False)
    if wc is None:
        return None
    try:
        return wc.head()
    finally:
        wc.close()


# --- one attempt ----------------------------------------------------------------------------------
def _start_from_remote(wc: WorkingCopy, units: list[RenderUnit], scopes: tuple[str, ...],
                       report: _Progress) -> tuple[str | None, Manifest]:
    """Fetch, move to the remote head, clear leftovers of interrupted runs; returns (base commit, manifest)."""
    if wc.remote_url:
        report(3, "Fetching origin")
        target = wc.fetch()
    else:
        target = wc.head()
    report(6, f"Moving the working copy to {target[:12] if target else 'an empty branch'}")
    untracked = wc.sync(target)
    manifest = Manifest.loads(wc.read_file(target, MANIFEST_PATH))
    # A killed run may have left files the portal would write; files elsewhere are someone else's business.
    areas = {*scopes, MANIFEST_DIR, *(u.directory for u in units), *(e.directory for e in manifest.units.values())}
    leftovers = [path for path in untracked if any(folder in areas for folder in _parents(path))]
    if leftovers:
        logger.warning("Removing %d files an interrupted run left in the working copy.", len(leftovers))
        wc.remove_files(leftovers)
    return target, manifest


def _write_and_commit(wc: WorkingCopy, base: str | None, manifest: Manifest, *, units: list[RenderUnit],
                      scopes: tuple[str, ...], full: bool, message: str, trailer_lines: list[str],
                      author_name: str, author_email: str, validate: Validate | None,
                      report: _Progress) -> tuple[str, list[str], list[str], list[str]] | None:
    writer = _Writer(wc.path)
    try:
        plan = _plan(units=units, scopes=scopes, manifest=manifest, full=full, current_blobs=wc.index_blobs,
                     sink=writer.write, object_format=wc.object_format, report=report)
        # Commit bookkeeping alone only when ownership changed (else every later run would render those units
        # again); a fingerprint that moved without changing any byte is not worth a commit.
        records_ownership = _ownership(plan.manifest) != _ownership(manifest)
        if not plan.writes and not plan.deletes and not records_ownership:
            return None
        wc.remove_files(plan.deletes)
        writer.write(MANIFEST_PATH, plan.manifest.dumps())
        changed_paths = sorted(plan.writes + plan.deletes)
        if validate is not None and changed_paths:
            report(75, f"Validating {len(changed_paths)} changed files")
            validate(wc.path, changed_paths)
        report(82, f"Staging {len(changed_paths)} changed files")
        roots = {_root(folder, scopes) for folder in plan.touched} | {MANIFEST_DIR}
        wc.stage([*changed_paths, MANIFEST_PATH], roots=outermost_folders(roots))
        added, changed, deleted = (
            [p for p in paths if p != MANIFEST_PATH] for paths in wc.staged_changes()
        )
        if not (added or changed or deleted or records_ownership):
            _restore(wc, base, writer)  # git sees no difference (e.g. .gitattributes normalised the bytes)
            return None
        report(88, f"Committing {len(added) + len(changed) + len(deleted)} changed files")
        sha = wc.commit(message=_commit_message(message, added, changed, deleted, trailer_lines),
                        author_name=author_name, author_email=author_email)
        return sha, added, changed, deleted
    except BaseException:
        # Render error, failed validation, commit error, or the job being stopped: leave HEAD's tree behind.
        _restore(wc, base, writer)
        raise


def _restore(wc: WorkingCopy, base: str | None, writer: _Writer) -> None:
    wc.reset(base)
    wc.remove_files(writer.created)  # new files are untracked after the reset


def _finish(wc: WorkingCopy, report: _Progress, result: CommitResult, verb: str) -> None:
    wc.maintain()
    summary = f"{len(result.added)} added, {len(result.changed)} changed, {len(result.deleted)} deleted"
    logger.info("%s %s: %s.", verb, result.sha, summary)
    report(100, f"{verb} {result.sha[:12]} ({summary})")


# --- planning: what to render, write and delete ---------------------------------------------------------
@dataclass
class _Plan:
    writes: list[str]  # paths whose bytes differ from the current tree (written through the sink)
    deletes: list[str]  # owned paths present in the current tree that no unit produces any more
    manifest: Manifest
    touched: set[str]  # unit folders (new and old) holding writes or deletes


def _plan(*, units: list[RenderUnit], scopes: tuple[str, ...], manifest: Manifest, full: bool,
          current_blobs: Callable[[set[str] | None], dict[str, str]], sink: Callable[[str, bytes], None],
          object_format: str, report: _Progress) -> _Plan:
    todo = [u for u in units if full or _needs_render(u, manifest.units.get(u.key))]
    render_keys = {u.key for u in todo}
    unit_keys = {u.key for u in units}
    kept = {u.key: manifest.units[u.key] for u in units if u.key not in render_keys}
    gone = {key: entry for key, entry in manifest.units.items() if key not in unit_keys}

    # Read blob ids only where something can change: folders of units to render and of gone units.
    folders = {u.directory for u in todo}
    folders |= {manifest.units[u.key].directory for u in todo if u.key in manifest.units}
    folders |= {e.directory for e in gone.values() if any(p.startswith(scopes) for p in e.files)} if scopes else set()
    current = current_blobs(None if full else folders) if folders else {}

    kept_owner = {path: key for key, entry in kept.items() for path in entry.files}
    units_out: dict[str, UnitEntry] = dict(kept)
    produced: dict[str, str] = {}
    writes: list[str] = []
    touched: set[str] = set()
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
            owner = produced.get(path) or kept_owner.get(path)
            if owner is not None:
                raise ValueError(f"Units {owner!r} and {unit.key!r} both produce {path!r}.")
            produced[path] = unit.key
            blob = blob_id(data, object_format)
            entry_files[path] = blob
            if current.get(path) != blob:
                sink(path, bytes(data))
                writes.append(path)
                touched.add(unit.directory)
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
                touched.add(old.directory)
    # A unit that is no longer rendered loses its files only inside the scopes of this render.
    for key, entry in gone.items():
        remaining = {}
        for path, blob in entry.files.items():
            if path in produced or path in kept_owner:
                continue  # another unit took the path over
            if scopes and path.startswith(scopes):
                if path in current:
                    deletes.append(path)
                    touched.add(entry.directory)
            else:
                remaining[path] = blob
        if remaining:
            units_out[key] = UnitEntry(directory=entry.directory, fingerprint=entry.fingerprint, files=remaining)
    return _Plan(writes=writes, deletes=deletes, manifest=Manifest(units=units_out), touched=touched)


def _ownership(manifest: Manifest) -> dict[str, tuple[str, dict[str, str]]]:
    return {key: (entry.directory, entry.files) for key, entry in manifest.units.items()}


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
        check_directory(unit.directory, what=f"Unit {unit.key!r} directory")
        if not isinstance(unit.fingerprint, str):
            raise TypeError(f"Unit {unit.key!r} fingerprint must be a string.")


def _root(folder: str, scopes: tuple[str, ...]) -> str:
    """Folder to stage by when there are many paths: the scope holding it (cleaned at sync), else itself."""
    for scope in scopes:
        if folder.startswith(scope):
            return scope
    return folder


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) + "/" for i in range(len(parts))]


# --- writing files ------------------------------------------------------------------------------
class _Writer:
    """Writes files under a root, refusing to follow symbolic links the repository may contain."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: list[str] = []  # files that did not exist before (removed again on restore)
        self.written = 0
        self._checked: set[str] = set()

    def write(self, path: str, data: bytes) -> None:
        folder = path.rpartition("/")[0]
        if folder and folder not in self._checked:
            self._make_folder(folder)
        target = os.path.join(self.root, path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        existed = os.path.lexists(target)
        try:
            fd = os.open(target, flags, 0o644)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            os.unlink(target)  # a symlink where the portal renders a file: replace the link, never follow it
            fd = os.open(target, flags, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if not existed:
            self.created.append(path)
        self.written += 1

    def _make_folder(self, folder: str) -> None:
        parts = folder.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in self._checked:
                continue
            full = os.path.join(self.root, prefix)
            try:
                mode = os.lstat(full).st_mode
            except FileNotFoundError:
                os.mkdir(full)
            else:
                if stat.S_ISLNK(mode):
                    raise GitOpsError(f"{prefix} is a symbolic link in the GitOps repository; refusing to write "
                                      "through it.")
                if not stat.S_ISDIR(mode):
                    raise GitOpsError(f"{prefix} is a file in the GitOps repository, but a unit renders a folder "
                                      "there.")
            self._checked.add(prefix)


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
