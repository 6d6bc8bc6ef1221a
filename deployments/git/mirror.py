"""The validation mirror: plain files of the last validated tree, beside the repository, for `kubectl kustomize`.

The repository is bare (see repository.py), but the validation gate needs a whole tree on disk. The mirror lives
in `<GITOPS_REPO_DIR>.validate/tree/`; `<GITOPS_REPO_DIR>.validate/COMMIT` names the commit whose tree it holds.
The marker is removed before the files change and written again after, so a run killed half-way leaves the
mirror marked unknown and the next run rebuilds it from its base commit (an unmarked mirror is never trusted).
Moving the mirror from its commit to another is incremental (`git diff-tree` between the two), so a warm mirror
costs only the files that changed.

The mirror never decides what is committed: commits are built from git objects alone, and files found in the
mirror are never read back into git.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from deployments.git.repository import Repository

logger = logging.getLogger(__name__)

_EMPTY = "empty"  # marker value for "no commit" (a branch that does not exist yet)


class ValidationMirror:
    """Plain-file copy of one commit's tree; `tree` is the folder handed to the validate callback."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.root = Path(str(repo.path).rstrip("/") + ".validate")
        self.tree = self.root / "tree"
        self.marker = self.root / "COMMIT"
        self._folders: set[str] = set()

    def exists(self) -> bool:
        return self.root.exists()

    def state(self) -> str | None:
        """``mirror_state`` of this mirror."""
        return mirror_state(self.root)

    def marked(self) -> str | None:
        """The commit the mirror holds ("empty" for none), or None when unknown (missing or unreadable marker)."""
        try:
            value = self.marker.read_text().strip()
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            return None
        if value == _EMPTY or (value and self.repo.resolve(value) == value):
            return value
        return None

    def sync(self, commit: str | None) -> None:
        """Make the mirror hold exactly `commit`'s tree (None: empty), incrementally when it holds a known one."""
        want = commit or _EMPTY
        have = self.marked() if self.tree.is_dir() else None
        if have == want:
            return
        self._unmark()
        if have is None:
            logger.info("Rebuilding the validation mirror from %s.", (commit or "an empty tree")[:12])
            self._rebuild(commit)
        else:
            self._move(None if have == _EMPTY else have, commit)
        self.mark(commit)

    def apply(self, writes: dict[str, bytes], deletes: Iterable[str]) -> None:
        """Write and delete files of a planned change (unmarked until mark() names the commit it became)."""
        self._unmark()
        for path, data in writes.items():
            self._put(path, data, "100644")
        self._remove(deletes)

    def revert(self, base: str | None, paths: Iterable[str]) -> None:
        """Put `paths` back as they are in `base` (after a failed validation) and mark the mirror `base`."""
        self._unmark()
        paths = list(paths)
        entries = self.repo.tree_entries(base, paths) if base and paths else {}
        present = {p: entries[p] for p in paths if p in entries}
        self._write_entries(present)
        self._remove([p for p in paths if p not in present])
        self.mark(base)

    def mark(self, commit: str | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / "COMMIT.tmp"
        temporary.write_text((commit or _EMPTY) + "\n")
        os.replace(temporary, self.marker)

    def forget(self) -> None:
        """Mark the mirror unknown (the next run rebuilds it)."""
        self._unmark()

    # --- internals ------------------------------------------------------------------------------------
    def _unmark(self) -> None:
        try:
            self.marker.unlink()
        except FileNotFoundError:
            pass

    def _rebuild(self, commit: str | None) -> None:
        if self.tree.exists() or self.tree.is_symlink():
            if self.tree.is_symlink() or not self.tree.is_dir():
                self.tree.unlink()
            else:
                shutil.rmtree(self.tree)
        self.tree.mkdir(parents=True)
        self._folders = set()
        self._write_entries(self.repo.tree_entries(commit, None))

    def _move(self, old: str | None, new: str | None) -> None:
        changes = self.repo.raw_changes(old, new)
        self._remove([path for status, path, _, _ in changes if status == "D"])
        self._write_entries({path: (mode, oid) for status, path, mode, oid in changes if status != "D"})

    def _write_entries(self, entries: dict[str, tuple[str, str]]) -> None:
        """Write {path: (mode, object id)} from the object store; symlinks as symlinks, submodules as folders."""
        by_oid: dict[str, list[tuple[str, str]]] = {}
        for path, (mode, oid) in entries.items():
            if mode == "160000":
                self._folder(path)
            else:
                by_oid.setdefault(oid, []).append((path, mode))
        for oid, data in self.repo.read_blobs(by_oid):
            for path, mode in by_oid[oid]:
                self._put(path, data, mode)

    def _put(self, path: str, data: bytes, mode: str) -> None:
        folder = path.rpartition("/")[0]
        if folder:
            self._folder(folder)
        target = os.path.join(self.tree, path)
        try:
            existing = os.lstat(target).st_mode
        except FileNotFoundError:
            existing = None
        if existing is not None and (stat.S_ISDIR(existing) or mode == "120000" or stat.S_ISLNK(existing)):
            if stat.S_ISDIR(existing):
                shutil.rmtree(target)
                self._folders = {f for f in self._folders if not (f + "/").startswith(path + "/")}
            else:
                os.unlink(target)
        if mode == "120000":
            os.symlink(os.fsdecode(data), target)
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        try:
            fd = os.open(target, flags, 0o755 if mode == "100755" else 0o644)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            os.unlink(target)
            fd = os.open(target, flags, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    def _folder(self, folder: str) -> None:
        """Make `folder` a real folder of the mirror: a symlink or file in its way is replaced, never followed."""
        parts = folder.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in self._folders:
                continue
            full = os.path.join(self.tree, prefix)
            try:
                mode = os.lstat(full).st_mode
            except FileNotFoundError:
                os.mkdir(full)
            else:
                if not stat.S_ISDIR(mode):
                    os.unlink(full)
                    os.mkdir(full)
            self._folders.add(prefix)

    def _remove(self, paths: Iterable[str]) -> None:
        root = os.path.realpath(self.tree)
        folders = set()
        for path in paths:
            target = os.path.join(self.tree, path)
            parent = os.path.dirname(target)
            if os.path.realpath(parent) != os.path.normpath(os.path.join(root, os.path.dirname(path))):
                continue  # a symlink on the way: nothing of ours lies beyond it
            try:
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                else:
                    os.unlink(target)
            except FileNotFoundError:
                pass
            folders.add(path.rpartition("/")[0])
        for folder in sorted({f for start in folders if start for f in _ancestors(start)}, key=len, reverse=True):
            try:
                os.rmdir(os.path.join(self.tree, folder))
                self._folders.discard(folder)
            except OSError:
                pass  # not empty (or already gone): keep it


def mirror_state(root: Path) -> str | None:
    """A token naming one marking of the mirror under ``root`` (``<GITOPS_REPO_DIR>.validate``): the commit the
    marker names and the marker file's identity (inode, modification and change times, in ns). None while the
    mirror is unmarked. Every change of the mirror's files unmarks it first and marks it again after (a new file,
    written later), so two equal tokens read at two moments mean the files did not change in between; the
    validation gate trusts its cached file states on that (deployments.validation.store.trusting)."""
    marker = Path(root) / "COMMIT"
    try:
        with open(marker, "rb") as handle:
            status = os.fstat(handle.fileno())
            commit = handle.read(200).decode("ascii", "replace").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not commit:
        return None
    return f"{commit}:{status.st_ino}:{status.st_mtime_ns}:{status.st_ctime_ns}"


def mirror_changes(repo: Repository, old: str | None, new: str | None) -> list[str] | None:
    """Repository-relative paths whose files differ between two marked states of the mirror (``mirror_state``
    tokens): the diff of the commits they name, since a marked mirror holds exactly its commit's tree. None when
    either state is unmarked or git cannot tell."""
    if not old or not new:
        return None
    commits = [state.split(":", 1)[0] for state in (old, new)]
    try:
        trees = [None if commit == _EMPTY else repo.resolve(commit) for commit in commits]
        if any(tree is None and commit != _EMPTY for tree, commit in zip(trees, commits, strict=True)):
            return None
        return [path for _status, path, _mode, _oid in repo.raw_changes(*trees)]
    except Exception:  # noqa: BLE001 - without a diff the caller checks every file
        logger.warning("Could not list the changes between two states of the validation mirror", exc_info=True)
        return None


def _ancestors(folder: str) -> list[str]:
    """'a/b/c' -> ['a/b/c', 'a/b', 'a']."""
    parts = folder.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]

