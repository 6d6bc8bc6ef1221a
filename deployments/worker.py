"""The portal's rq worker (settings.RQ["WORKER_CLASS"]): rq's forking worker with the validation gate warm.

Before its first job, and again after each job, the parent process fills the gate's caches
(deployments.validation.warm) from the validation mirror; the child forked for each job inherits them, so a
one-project change does not re-read the whole tree in every job. The warm-up stores those caches on disk beside the
mirror (deployments/validation/store.py, ``<GITOPS_REPO_DIR>.validate/cache``), so a new worker starts from them
and only checks file states instead of parsing the tree again. The warm-up records the mirror's state it checked
the files at (deployments.git.mirror.mirror_state, deployments/validation/trust.py): a job whose commit starts
from that state checks only the files it changed instead of every file's state, and the warm-up after a job checks
only the files that job's commit changed (deployments.git.mirror.mirror_changes). The warmed objects are frozen for
the garbage collector (gc.freeze) before the fork, with the GitOps manifest at the branch head parsed
(deployments.git.writer.gitops_manifest_warm). At its start the worker also runs kubectl once
(deployments.validation.kustomize.kubectl_warm): its binary is then in the page cache for the first job's build,
and a kubectl that is missing or broken is reported when the worker starts, not first by a run. Everything else
is rq's own Worker.
"""

import gc
import logging
import time
from pathlib import Path

from django.conf import settings
from rq.worker import Worker

from deployments.git.mirror import mirror_changes, mirror_state
from deployments.git.repository import Repository
from deployments.git.writer import gitops_manifest_warm
from deployments.validation.kustomize import kubectl_warm
from deployments.validation.warm import validation_warm

logger = logging.getLogger(__name__)


def mirror_tree() -> Path:
    """The validation mirror's plain tree (deployments.git.mirror: ``<GITOPS_REPO_DIR>.validate/tree``)."""
    return Path(str(Path(settings.GITOPS_REPO_DIR)).rstrip("/") + ".validate") / "tree"


def _mirror_changes(old: str, new: str) -> list[str] | None:
    """Paths that differ between two states of the validation mirror (deployments.git.mirror.mirror_changes)."""
    repo = Repository.open(Path(settings.GITOPS_REPO_DIR), remote_url=settings.GITOPS_REMOTE_URL,
                           branch=settings.GITOPS_BRANCH, create=False)
    if repo is None:
        return None
    try:
        return mirror_changes(repo, old, new)
    finally:
        repo.close()


class GitOpsWorker(Worker):
    """rq.Worker that warms the validation caches in the parent before forking jobs."""

    def work(self, *args, **kwargs):
        self._warm("start")
        return super().work(*args, **kwargs)

    def execute_job(self, job, queue):
        try:
            return super().execute_job(job, queue)
        finally:
            self._warm("after a job")

    def _warm(self, when: str) -> None:
        gc.unfreeze()  # what the last warm-up froze may be garbage now: let the collector see it again
        kubectl = {}
        if when == "start":
            try:
                kubectl["kubectl"] = kubectl_warm(getattr(settings, "KUBECTL", "kubectl"))
            except (OSError, RuntimeError) as exc:
                logger.warning("kubectl does not run; a render run with Kubernetes manifests to validate will fail: %s",
                               exc)
        try:
            tree = mirror_tree()
            timings = validation_warm(tree, state=lambda: mirror_state(tree.parent), changes=_mirror_changes)
            started = time.monotonic()
            gitops_manifest_warm()
            timings["manifest"] = time.monotonic() - started
            timings.update(kubectl)
        except Exception:  # noqa: BLE001 - a cold cache is slower, never wrong
            logger.warning("Could not warm the validation caches (%s)", when, exc_info=True)
            return
        finally:
            # The caches are a few hundred thousand long-lived objects: frozen, the child's garbage collections
            # do not walk them (each full collection would), and the pages holding them stay shared after fork.
            gc.freeze()
        logger.info("Validation caches warm (%s): %s", when,
                    ", ".join(f"{part} {seconds:.2f} s" for part, seconds in timings.items()))
