"""Per-process caches of the gate kept on disk, so a fresh process (a new worker, its warm-up) starts warm.

Each cache is a dict keyed by absolute path whose entries carry the file or folder state they were made from
(mtime, size or inode): an entry is used only while that state is unchanged, so a stored cache can be stale but
never wrong. Files: ``<cache dir>/<name>.pickle`` (see gate.validation_cache_dir), written atomically.
"""

import logging
import os
import pickle
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

STORE_VERSION = 1


def cache_load(cache_dir: Path | None, name: str, into: dict) -> int:
    """Add the entries stored as ``name`` to ``into`` (entries already there win); returns how many were added."""
    if cache_dir is None:
        return 0
    try:
        with open(Path(cache_dir) / f"{name}.pickle", "rb") as handle:
            version, stored = pickle.load(handle)
    except (OSError, pickle.PickleError, EOFError, ValueError, TypeError, AttributeError):
        return 0
    if version != STORE_VERSION or not isinstance(stored, dict):
        return 0
    added = 0
    for key, value in stored.items():
        if key not in into:
            into[key] = value
            added += 1
    return added


def cache_save(cache_dir: Path | None, name: str, cache: dict) -> None:
    """Store ``cache`` as ``name`` (replacing what was stored)."""
    if cache_dir is None:
        return
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=cache_dir, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as handle:
            pickle.dump((STORE_VERSION, cache), handle, protocol=5)
        os.replace(temporary, Path(cache_dir) / f"{name}.pickle")
    except OSError:
        logger.warning("Could not store the %s cache in %s", name, cache_dir, exc_info=True)


def _caches() -> dict[str, dict]:
    from deployments.validation import hosts, kustomize

    return {"listings": kustomize._LISTING_CACHE, "kustomizations": kustomize._KUSTOMIZATION_CACHE,
            "ingress-sources": hosts._SOURCE_CACHE}


def caches_load(cache_dir: Path | None) -> int:
    """Fill the gate's empty per-process caches (folder listings, parsed kustomizations, Ingress hosts of source
    files) from ``cache_dir``; caches that hold entries already (a warm process) are left alone."""
    return sum(cache_load(cache_dir, name, cache) for name, cache in _caches().items() if not cache)


def caches_save(cache_dir: Path | None) -> None:
    """Store the gate's per-process caches in ``cache_dir``."""
    for name, cache in _caches().items():
        cache_save(cache_dir, name, cache)


def misses() -> int:
    """Folders listed, kustomizations parsed and Ingress sources read so far in this process (not from a cache)."""
    from deployments.validation import hosts, kustomize

    return kustomize.listing_stats["listed"] + kustomize.listing_stats["parsed"] + hosts.source_stats["read"]

