"""Where background work is handed over: the only module that enqueues.

With REDIS_URL unset, jobs run inline in this process once the transaction commits; with it set, they go
to the named django-rq queue (django-rq's COMMIT_MODE=on_db_commit defers the enqueue to the commit too).
"""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue(queue_name: str, func: Callable, *args, job_id: str | None = None, **kwargs) -> None:
    """Run ``func(*args, **kwargs)`` on the named queue once the current transaction commits (at once outside one).

    The hand-over is ``robust``: by then the caller's rows are committed, so a Redis outage (or an inline job's
    crash) is logged rather than turned into an error page for a change that was saved. Work whose job got lost
    this way must be recoverable from the database (render runs: deployments.runs.render_runs_recover).
    """
    if not settings.REDIS_URL:
        transaction.on_commit(lambda: func(*args, **kwargs), robust=True)
        return
    import django_rq

    def push() -> None:
        # commit_mode="auto": this callback already runs after the commit; don't let django-rq defer it again.
        django_rq.get_queue(queue_name, commit_mode="auto").enqueue(func, *args, job_id=job_id, **kwargs)

    transaction.on_commit(push, robust=True)
