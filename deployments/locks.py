"""The per-repository lock that serializes every writer of the GitOps working copy.

With REDIS_URL set the lock lives in Redis, so RQ workers on different machines that share one repository
directory (a shared volume) exclude each other. The key expires after a short TTL that a background thread keeps
renewing while the holder is alive: a holder killed with SIGKILL blocks the next run for at most one TTL, never
forever. Without Redis (local use, `make run`) a file lock beside the repository does the same job; the kernel
drops it when its process dies.

The lock is re-entrant per thread: code that already holds it (a job wrapping gitops_commit) can call functions
that take it again without deadlocking itself.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

DEFAULT_WAIT_SECONDS = 600.0
DEFAULT_TTL_SECONDS = 60.0
KEY_PREFIX = "tesslate-portal:gitops-lock:"

_held = threading.local()


class RepositoryLockTimeout(TimeoutError):
    """Another run held the repository lock for longer than the caller was willing to wait."""


def repository_lock_key(repo_dir: Path | str | None = None) -> str:
    """Redis key of the lock: derived from the resolved repository directory, so two paths to one repo agree."""
    return KEY_PREFIX + hashlib.sha256(str(_repo_dir(repo_dir)).encode()).hexdigest()[:24]


def repository_lock_path(repo_dir: Path | str | None = None) -> Path:
    """The lock file used without Redis: beside the repository, never inside its working tree."""
    directory = _repo_dir(repo_dir)
    return directory.parent / f".{directory.name}.lock"


@contextmanager
def repository_lock(timeout: float = DEFAULT_WAIT_SECONDS, *, repo_dir: Path | str | None = None) -> Iterator[None]:
    """Hold the lock of the GitOps repository (settings.GITOPS_REPO_DIR unless repo_dir is given).

    `timeout` is how long to wait for another holder, in seconds; RepositoryLockTimeout when it runs out.
    """
    key = repository_lock_key(repo_dir)
    held: set[str] = _held.__dict__.setdefault("keys", set())
    if key in held:
        yield
        return
    redis_url = getattr(settings, "REDIS_URL", "")
    backend = _RedisLock(redis_url, key) if redis_url else _FileLock(repository_lock_path(repo_dir))
    started = time.monotonic()
    backend.acquire(timeout)
    waited = time.monotonic() - started
    if waited > 1:
        logger.info("Waited %.1f s for the GitOps repository lock.", waited)
    held.add(key)
    try:
        yield
    finally:
        held.discard(key)
        backend.release()


def _repo_dir(repo_dir: Path | str | None) -> Path:
    return Path(repo_dir if repo_dir is not None else settings.GITOPS_REPO_DIR).expanduser().resolve()


class _RedisLock:
    def __init__(self, url: str, key: str) -> None:
        import redis

        self.ttl = float(getattr(settings, "GITOPS_LOCK_TTL", DEFAULT_TTL_SECONDS))
        self.client = redis.Redis.from_url(url)
        # thread_local=False: the renewal thread extends the lock with the token the holder's thread acquired.
        self.lock = self.client.lock(key, timeout=self.ttl, sleep=0.05, thread_local=False)
        self.stop = threading.Event()
        self.renewer: threading.Thread | None = None

    def acquire(self, wait: float) -> None:
        if not self.lock.acquire(blocking=True, blocking_timeout=max(wait, 0)):
            self.client.close()
            raise RepositoryLockTimeout(f"The GitOps repository is locked by another run (waited {wait:g} s).")
        self.renewer = threading.Thread(target=self._renew, name="gitops-lock-renewal", daemon=True)
        self.renewer.start()

    def _renew(self) -> None:
        from redis.exceptions import LockError

        while not self.stop.wait(self.ttl / 3):
            try:
                self.lock.extend(self.ttl, replace_ttl=True)
            except LockError:
                # Only possible when this process stalled for longer than the TTL; the run goes on (git's own lock
                # files still protect the repository) but the operator must know that exclusion was lost.
                logger.error("Lost the GitOps repository lock (expired while held); another run may have started.")
                return

    def release(self) -> None:
        from redis.exceptions import LockError

        self.stop.set()
        if self.renewer is not None:
            self.renewer.join()
        try:
            self.lock.release()
        except LockError:
            logger.warning("The GitOps repository lock had already expired when it was released.")
        finally:
            self.client.close()


class _FileLock:
    def __init__(self, path: Path) -> None:
        from filelock import FileLock

        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(path))

    def acquire(self, wait: float) -> None:
        from filelock import Timeout

        try:
            self.lock.acquire(timeout=max(wait, 0))
        except Timeout:
            raise RepositoryLockTimeout(
                f"The GitOps repository is locked by another run (waited {wait:g} s for {self.lock.lock_file})."
            ) from None

    def release(self) -> None:
        self.lock.release()
