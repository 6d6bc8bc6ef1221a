"""The lock that serializes every writer of the GitOps repository: one mechanism per database backend.

* PostgreSQL (production, tests): a session-level advisory lock, keyed by the repository directory. Workers on
  any host that share the portal's database exclude each other; the server releases the lock when the holding
  connection ends, so a worker killed with SIGKILL never blocks the next run — and whoever can take the lock
  knows that nobody is running (that is how runs orphaned by a dead worker are detected).
* SQLite (``make run``: one machine): a file lock beside the repository; the kernel drops it when its process
  dies.

The lock is re-entrant per thread: code that holds it (a render run) can call code that takes it again (the git
writer) without deadlocking itself. Previews never take it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

DEFAULT_WAIT_SECONDS = 600.0
POLL_SECONDS = 0.2

_held = threading.local()


class RepositoryLockTimeout(TimeoutError):
    """Another run held the repository lock for longer than the caller was willing to wait."""


def _repo_dir(repo_dir: Path | str | None) -> Path:
    return Path(repo_dir if repo_dir is not None else settings.GITOPS_REPO_DIR).expanduser().resolve()


def repository_lock_key(repo_dir: Path | str | None = None) -> int:
    """The advisory lock key (a signed 64-bit integer) of the repository; two spellings of one path agree."""
    digest = hashlib.sha256(f"tesslate-portal:gitops:{_repo_dir(repo_dir)}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def repository_lock_path(repo_dir: Path | str | None = None) -> Path:
    """The lock file used on SQLite: beside the repository, never inside it."""
    directory = _repo_dir(repo_dir)
    return directory.parent / f".{directory.name}.lock"


class _AdvisoryLock:
    def __init__(self, key: int) -> None:
        self.key = key

    def try_acquire(self) -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.key])
            return bool(cursor.fetchone()[0])

    def release(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [self.key])


class _FileLock:
    def __init__(self, path: Path) -> None:
        from filelock import FileLock

        path.parent.mkdir(parents=True, exist_ok=True)
        # thread_local=False + is_singleton=False: one lock object per acquisition; threads exclude each other.
        self.lock = FileLock(str(path), thread_local=False, is_singleton=False)

    def try_acquire(self) -> bool:
        from filelock import Timeout

        try:
            self.lock.acquire(timeout=0)
            return True
        except Timeout:
            return False

    def release(self) -> None:
        self.lock.release()


def _backend(repo_dir: Path | str | None):
    # GITOPS_LOCK_BACKEND=file forces the file lock (one host only) whatever the database is.
    if connection.vendor == "postgresql" and getattr(settings, "GITOPS_LOCK_BACKEND", "auto") != "file":
        return _AdvisoryLock(repository_lock_key(repo_dir))
    return _FileLock(repository_lock_path(repo_dir))


@contextmanager
def repository_lock(timeout: float = DEFAULT_WAIT_SECONDS, *, repo_dir: Path | str | None = None,
                    on_wait: Callable[[], None] | None = None,
                    while_waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the repository lock (settings.GITOPS_REPO_DIR unless ``repo_dir`` is given).

    ``timeout``: seconds to wait for another holder; RepositoryLockTimeout when it runs out. ``on_wait`` is
    called once if the lock is busy at the first try (a run logs that it waits); ``while_waiting`` on every
    poll while it waits (a run keeps its heartbeat).
    """
    key = str(_repo_dir(repo_dir))
    held: set[str] = _held.__dict__.setdefault("keys", set())
    if key in held:
        yield
        return
    lock = _backend(repo_dir)
    started = time.monotonic()
    deadline = started + max(timeout, 0)
    waited = False
    while not lock.try_acquire():
        if time.monotonic() >= deadline:
            raise RepositoryLockTimeout(
                f"The GitOps repository is locked by another run (waited {timeout:g} s).")
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        if while_waiting is not None:
            while_waiting()
        time.sleep(POLL_SECONDS)
    if waited:
        logger.info("Waited %.1f s for the GitOps repository lock.", time.monotonic() - started)
    held.add(key)
    try:
        yield
    finally:
        held.discard(key)
        lock.release()


def repository_lock_is_free(*, repo_dir: Path | str | None = None) -> bool:
    """True when nobody holds the lock (taken and released at once): then no run is running anywhere."""
    if str(_repo_dir(repo_dir)) in _held.__dict__.get("keys", set()):
        return False
    lock = _backend(repo_dir)
    if not lock.try_acquire():
        return False
    lock.release()
    return True
