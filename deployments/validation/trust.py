"""Trusting the gate's cached file states without a stat, for the paths a writer says it did not change.

A stat per entry is what keeps the gate's per-process caches correct (store.py), and at 10,000 projects that is
about 100,000 stats per validation. When the tree's writer can name every path it changed since a known state of
the tree, entries of the other paths need none: ``tree_verified`` records, per tree, the state (an opaque token
from the tree's owner: deployments.git.mirror.mirror_state) at which a complete pass checked every entry of the
tree against the disk (the worker's warm-up, deployments.validation.warm); ``trusting`` then lets one validation
use the entries of unchanged paths as they are. A cache entry found stale by a stat is never left behind
(kustomize.py, hosts.py), so after a complete pass every entry the tree's listings lead to is current.
"""

import os
from collections.abc import Iterable
from pathlib import Path

_VERIFIED: dict[str, tuple[str, frozenset[str] | None]] = {}  # realpath → (state, the tree's files at it)
_TRUST: list = [None]  # the active (tree prefix, changed absolute paths, their folders and ancestors) or None


def tree_verified(tree: Path, state: str | None, files: Iterable[str] | None = None) -> None:
    """Record that every cached entry under ``tree`` was just checked against the disk while the tree was in
    ``state`` (None: forget what was recorded); ``files``: every file's repository-relative path at that state
    (hidden folders left out), when the pass listed them."""
    key = os.path.realpath(tree)
    if state:
        _VERIFIED[key] = (state, frozenset(files) if files is not None else None)
    else:
        _VERIFIED.pop(key, None)


def verified_state(tree: Path) -> str | None:
    """The state recorded by ``tree_verified`` for ``tree`` (None: none)."""
    return _VERIFIED.get(os.path.realpath(tree), (None, None))[0]


class trusting:
    """Context manager: while active, cached entries of files and folders under ``tree`` are used without a stat,
    except for ``changed`` (repository-relative paths: what differs from the verified state), everything under them
    and the folders holding them (whose listings change when an entry is added or removed). Active only when
    ``since`` is the state recorded by ``tree_verified``; otherwise every entry is checked as usual."""

    def __init__(self, tree: Path, changed: set[str], since: str | None) -> None:
        verified, files = _VERIFIED.get(os.path.realpath(tree), (None, None))
        self.active = bool(since) and verified == since
        self.since = since
        self.files = files  # the tree's files at the verified state (None: not listed)
        self.paths = set(changed)
        self.tree = str(tree).rstrip(os.sep) or os.sep  # spelled as the caches' keys spell it
        self.changed = {os.path.join(self.tree, path) if path else self.tree for path in changed}
        self.folders = {self.tree}
        self.inside = self.tree + os.sep
        self.under = tuple(path + os.sep for path in self.changed)
        for path in changed:
            parts = path.split("/")
            self.folders.update(os.path.join(self.tree, *parts[:depth]) for depth in range(1, len(parts)))

    def __enter__(self) -> "trusting":
        if self.active:
            _TRUST[0] = self
        return self

    def __exit__(self, *exc) -> None:
        _TRUST[0] = None

    def covers(self, full: str) -> bool:
        return (full.startswith(self.inside) and full not in self.changed and full not in self.folders
                and not full.startswith(self.under))


def trusted(full: str) -> bool:
    """Whether a cached entry for the absolute path ``full`` may be used without checking its file state (see
    ``trusting``)."""
    trust = _TRUST[0]
    return trust is not None and trust.covers(full)


def trust_active() -> "trusting | None":
    """The active ``trusting`` (None: every entry is checked)."""
    return _TRUST[0]
