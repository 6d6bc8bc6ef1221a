"""The one scheduler process: enqueues the jobs of ``settings.PORTAL_SCHEDULE`` on time (rq's CronScheduler).

Run exactly one (``python manage.py run_scheduler``): rq's cron scheduler has no leader election, so two would
enqueue every job twice. Unlike rq's own loop, this one survives Redis outages: it logs the outage, waits and
goes on, so scheduled work (the recovery of lost render jobs first of all) resumes within one interval of
Redis coming back, without anyone restarting anything.

``PORTAL_SCHEDULE`` entries: ``{"name": str, "func": "dotted.path", "queue": str, "interval": seconds}`` or
with ``"cron": "m h dom mon dow"`` (UTC) instead of ``interval``.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

OUTAGE_RETRY_SECONDS = 5.0


def schedule_entries() -> list[dict]:
    """The configured schedule, checked: every entry names an importable function, a queue and one timing."""
    entries = list(getattr(settings, "PORTAL_SCHEDULE", []))
    for entry in entries:
        if bool(entry.get("interval")) == bool(entry.get("cron")):
            raise ImproperlyConfigured(f"PORTAL_SCHEDULE entry {entry.get('name')!r}: give interval or cron.")
        import_string(entry["func"])  # fail at start, not at the first due time
        if entry["queue"] not in settings.RQ_QUEUES:
            raise ImproperlyConfigured(f"PORTAL_SCHEDULE entry {entry['name']!r}: unknown queue {entry['queue']!r}.")
    return entries


def build_scheduler(connection):
    """A CronScheduler with every schedule entry registered."""
    from rq.cron import CronScheduler

    scheduler = CronScheduler(connection=connection, name=f"portal-scheduler-{int(time.time())}")
    for entry in schedule_entries():
        scheduler.register(import_string(entry["func"]), queue_name=entry["queue"],
                           interval=entry.get("interval"), cron=entry.get("cron"), name=entry["name"],
                           job_timeout=entry.get("timeout"))
    return scheduler


def run_forever(*, max_loops: int | None = None) -> None:
    """Enqueue due jobs until stopped; ``max_loops`` bounds the loop (tests)."""
    import django_rq
    from redis.exceptions import RedisError

    connection = django_rq.get_connection("default")
    scheduler = build_scheduler(connection)
    loops, down_since = 0, None
    while max_loops is None or loops < max_loops:
        loops += 1
        try:
            if scheduler.enqueue_jobs():
                scheduler.save()
            scheduler.heartbeat()
            if down_since is not None:
                logger.warning("Redis is back after %.0f s; scheduled jobs resume.", time.monotonic() - down_since)
                down_since = None
            pause = min(scheduler.calculate_sleep_interval(), float(getattr(settings, "SCHEDULER_TICK", 60)))
        except RedisError as exc:
            if down_since is None:
                down_since = time.monotonic()
                logger.error("Redis is unreachable (%s); the scheduler keeps trying.", type(exc).__name__)
            pause = OUTAGE_RETRY_SECONDS
        if pause > 0 and (max_loops is None or loops < max_loops):
            time.sleep(pause)
