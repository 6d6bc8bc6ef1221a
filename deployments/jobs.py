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
    if not settings.REDIS_URL:
        transaction.on_commit(lambda: func(*args, **kwargs))
        return
    import django_rq

    queue = django_rq.get_queue(queue_name)
    queue.enqueue(func, *args, job_id=job_id, **kwargs)
