"""Warm the validation gate's per-process caches before a worker forks its jobs.

rq's worker forks one child per job, and every cache a child fills dies with it: a one-project change at 10,000
projects would parse every kustomization of the tree and every project's Ingress source again in each job (about
2 s). The gate's caches are keyed by file state (mtime, size, inode), so filling them once in the worker's parent
process and refreshing them between jobs is always safe: a child inherits them (copy-on-write) and reparses only
what changed since. The caches are also loaded from and stored to the validation cache on disk
(deployments/validation/store.py, beside the mirror), so a new worker's warm-up checks file states instead of
parsing the tree (10,000 projects: about 2 CPU-seconds instead of about 20).
"""

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from deployments.validation.gate import CACHE_SAVE_MISSES, validation_cache_dir
from deployments.validation.hosts import HostClaims, source_files, source_files_remember
from deployments.validation.kustomize import structure_unchanged, tree_remember, tree_scan, tree_scan_trusted
from deployments.validation.schemas import crd_catalog_load, kubernetes_schemas
from deployments.validation.store import caches_load, caches_save, misses
from deployments.validation.trust import tree_verified, trusting, verified_state

logger = logging.getLogger(__name__)


def validation_warm(tree: Path | None, *, compile_validators: bool = True,
                    state: Callable[[], str | None] | None = None,
                    changes: Callable[[str, str], list[str] | None] | None = None) -> dict[str, float]:
    """Fill the gate's caches for the tree under ``tree`` (the validation mirror's folder; None or missing: only
    the schemas): Kubernetes and CRD schemas with a compiled validator per kind (settings.KUBERNETES_VERSION,
    CRD_SCHEMA_DIR), the parsed kustomization files, and the Ingress hosts of every environment's source files.
    Returns the seconds each part took ({"schemas": s, "state": s, "kustomizations": s, "hosts": s, "record": s}:
    "state" names the tree's state and what changed since the caches were verified, "record" stores the result).
    Never raises for a broken tree: what cannot be read is left for the validation itself to report.

    ``state()`` names the tree's current state (deployments.git.mirror.mirror_state; None while it is being
    written): when it names the same state before and after the whole tree was checked, the caches are recorded
    as verified at it (trust.tree_verified), so a validation of a change made from that state checks only the
    changed paths' entries (gate.tree_validate's ``unchanged_since``). ``changes(old state, new state)`` lists the
    paths that differ between two states (None: unknown): when the caches were verified at an earlier state, only
    those paths are checked against the disk again (a worker after its job: a few files, not the whole tree)."""
    timings = {}
    started = time.monotonic()
    missed = misses()
    kubernetes = kubernetes_schemas(getattr(settings, "KUBERNETES_VERSION", "1.32"))
    cache = validation_cache_dir(Path(tree)) if tree is not None else None
    caches_load(cache)
    catalog = crd_catalog_load(getattr(settings, "CRD_SCHEMA_DIR", ""), cache)
    if compile_validators:
        for group, version, kind in list(kubernetes.kinds):
            kubernetes.validator(group, version, kind)
        for crd in list(catalog.kinds.values()) if catalog is not None else ():
            for version in crd.served_versions:
                catalog.validator(crd, version, kubernetes)
    timings["schemas"] = time.monotonic() - started
    if tree is None or not Path(tree).is_dir():
        return timings
    started = time.monotonic()
    before = state() if state is not None else None
    previous = verified_state(Path(tree))
    changed = changes(previous, before) if changes is not None and previous and before else None
    timings["state"] = time.monotonic() - started
    scanned = None
    files: set[str] = set()
    listed = {}
    # Verified at an earlier state and the paths changed since are known: only those are checked again.
    with trusting(Path(tree), set(changed), previous) if changed is not None else contextlib.nullcontext() as trust:
        # Only files rewritten in place: the tree and the file lists read at the earlier state still hold, and only
        # the changed files are read again.
        in_place = trust is not None and trust.active and structure_unchanged()
        started = time.monotonic()
        try:
            if in_place:
                scanned = tree_scan_trusted(Path(tree))
                files.update(trust.files)
            else:
                scanned = tree_scan(Path(tree), files=files)
        except Exception:  # noqa: BLE001 - warming is an optimisation; the next validation reports what is wrong
            logger.warning("Could not pre-read the kustomizations of %s", tree, exc_info=True)
        timings["kustomizations"] = time.monotonic() - started
        started = time.monotonic()
        environments = Path(tree) / "environments"
        if environments.is_dir():
            claims = HostClaims()
            for folder in sorted(environments.iterdir()):
                if folder.is_dir() and not folder.name.startswith("."):
                    listed[folder.name] = every = source_files(Path(tree), folder.name, every=True)
                    if in_place:
                        every = [entry for entry in every if entry[1] in trust.paths]
                    claims.add_sources(Path(tree), folder.name, files=every)
        timings["hosts"] = time.monotonic() - started
    started = time.monotonic()
    after = state() if state is not None else None
    verified = before if scanned is not None and before is not None and before == after else None
    tree_verified(Path(tree), verified, files)
    tree_remember(Path(tree), verified, scanned)
    for environment, sources in listed.items():
        # Rewritten in place since the state kept before: only the changed files' claims are indexed again.
        source_files_remember(Path(tree), environment, verified, sources,
                              changed=trust.paths if in_place else None)
    if misses() - missed >= (1 if verified is None or changed is None else CACHE_SAVE_MISSES):
        caches_save(cache)  # after a job's few files, the stored caches are not rewritten (a few seconds' pickling)
    timings["record"] = time.monotonic() - started
    return timings
