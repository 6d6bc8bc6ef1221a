"""Where a change of the model turns into a render: the one place that marks environments dirty and requests
the auto-render.

Services call ``environments_changed`` after every write. Outside a batch the render is requested at once;
inside ``change_batch`` (one admin request, one command) the environments and reasons of every write are
collected and one run is requested when the batch ends — after the writes' transaction committed, so the
outcome of the hand-over to the queue is known and can be shown to the user (``Batch.request.ticket``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from deployments.runs.request import RunRequest, environments_mark_dirty, render_auto_request, render_run_request

_local = threading.local()


@dataclass
class Batch:
    user: object = None
    environment_ids: set[int] | None = field(default_factory=set)  # None: every environment
    reasons: list[str] = field(default_factory=list)
    allow_deletions: bool = False
    request_render: bool = True  # False: mark the environments dirty only (bulk loads that render afterwards)
    request: RunRequest | None = None  # set when the batch ended and a run was requested

    def add(self, environment_ids: Iterable[int] | None, reason: str, allow_deletions: bool) -> None:
        if environment_ids is None or self.environment_ids is None:
            self.environment_ids = None
        else:
            self.environment_ids |= set(environment_ids)
        if reason and reason not in self.reasons:
            self.reasons.append(reason)
        self.allow_deletions = self.allow_deletions or allow_deletions


def _stack() -> list[Batch]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


@contextmanager
def change_batch(*, user=None, request_render: bool = True) -> Iterator[Batch]:
    """Collect the changes of many writes into one render request, made when the outermost batch ends.

    ``request_render=False`` only marks the changed environments dirty (``load_demo``: ``make run`` renders right
    after it, in the foreground)."""
    stack = _stack()
    if stack:  # nested: the outer batch requests
        yield stack[-1]
        return
    batch = Batch(user=user, request_render=request_render)
    stack.append(batch)
    try:
        yield batch
    finally:
        stack.pop()
    if not request_render:
        ids = batch.environment_ids
        if ids is None or ids:
            environments_mark_dirty(environment_ids=ids)
        return
    batch.request = _request(batch.environment_ids, user=batch.user, reason="; ".join(batch.reasons),
                             allow_deletions=batch.allow_deletions)


@contextmanager
def reason(text: str) -> Iterator[None]:
    """Within this block every change records ``text`` as its reason (a bulk delete names all its objects once)."""
    stack = _local.__dict__.setdefault("reasons", [])
    stack.append(text)
    try:
        yield
    finally:
        stack.pop()


def environments_changed(environment_ids: Iterable[int] | None, *, user=None, reason: str,
                         allow_deletions: bool = False) -> RunRequest | None:
    """Record that writes changed these environments (None: every environment, e.g. one was removed).

    ``allow_deletions``: the change was confirmed as one that removes folders (a move or a removal), so its run
    may delete beyond the deletion budget and is never absorbed into an ordinary run.
    """
    overrides = _local.__dict__.get("reasons")
    if overrides:
        reason = overrides[-1]
    ids = None if environment_ids is None else {int(pk) for pk in environment_ids if pk is not None}
    if ids is not None and not ids:
        return None
    stack = _stack()
    if stack:
        stack[-1].add(ids, reason, allow_deletions)
        if stack[-1].user is None:
            stack[-1].user = user
        return None
    return _request(ids, user=user, reason=reason, allow_deletions=allow_deletions)


def _request(ids: set[int] | None, *, user, reason: str, allow_deletions: bool) -> RunRequest | None:
    if ids is not None and not ids:
        return None
    if allow_deletions:
        environments_mark_dirty(environment_ids=ids)
        return render_run_request(environment_ids=ids, user=user, reason=reason, allow_deletions=True, absorb=False)
    return render_auto_request(environment_ids=ids, user=user, reason=reason)
