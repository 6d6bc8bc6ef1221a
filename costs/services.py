"""Writes about costs: Cost Explorer syncs into the database cache, recorded as CostSyncRuns.

Cost Explorer bills every request (every page) $0.01 (DOMAIN.md), so an environment is fetched at most once a day
unless forced; every request made is counted on the environment's settings and on the run.
"""

from __future__ import annotations

import datetime
import time
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from clients import cost_explorer
from costs.models import CostActual, CostSyncRun, EnvironmentCostSettings
from deployments.models import Environment
from jobs.progress import Recorder
from jobs.queue import enqueue


@dataclass(frozen=True)
class SyncOutcome:
    environment: str
    fetched: bool  # False: today's figures were cached already
    requests: int
    rows: int
    attempts: int


class CostSyncFailed(Exception):
    """Every attempt for one environment failed; ``kind`` as in clients.cost_explorer."""

    def __init__(self, environment: str, error: cost_explorer.CostExplorerError, attempts: int) -> None:
        super().__init__(f"{environment}: {error.reason} (after {attempts} attempt{'s' if attempts != 1 else ''})")
        self.environment = environment
        self.kind = error.kind
        self.reason = error.reason
        self.attempts = attempts


def month_start(day: datetime.date, months_back: int = 0) -> datetime.date:
    """The first day of the month ``months_back`` months before the month of ``day``."""
    index = day.year * 12 + day.month - 1 - months_back
    return datetime.date(index // 12, index % 12 + 1, 1)


def sync_periods(today: datetime.date, history_months: int) -> list[tuple[str, datetime.date, datetime.date]]:
    """(granularity, start, end exclusive): past months MONTHLY, the current month DAILY up to and including today."""
    current = month_start(today)
    periods = []
    if history_months > 0:
        periods.append(("MONTHLY", month_start(today, history_months), current))
    periods.append(("DAILY", current, today + datetime.timedelta(days=1)))
    return periods


def cost_settings_ensure(*, environment: Environment) -> EnvironmentCostSettings:
    """The environment's cost settings row, created with the guide's defaults when missing."""
    row, _ = EnvironmentCostSettings.objects.get_or_create(environment=environment)
    return row


def _count_requests(row: EnvironmentCostSettings, run: CostSyncRun | None, requests: int) -> None:
    if not requests:
        return
    EnvironmentCostSettings.objects.filter(pk=row.pk).update(request_count=F("request_count") + requests)
    if run is not None:
        CostSyncRun.objects.filter(pk=run.pk).update(request_count=F("request_count") + requests)
        run.request_count += requests


def _store(environment: Environment, periods, results, fetched_at) -> int:
    """Replace the cached figures of the fetched periods (and drop daily rows of months now covered monthly)."""
    with transaction.atomic():
        current = next(start for granularity, start, _ in periods if granularity == "DAILY")
        CostActual.objects.filter(environment=environment, granularity="DAILY", period_start__lt=current).delete()
        rows = []
        for (granularity, start, end), result in zip(periods, results, strict=True):
            CostActual.objects.filter(environment=environment, granularity=granularity, period_start__gte=start,
                                      period_start__lt=end).delete()
            merged: dict[tuple, list] = defaultdict(lambda: [Decimal(0), "USD", False, None])
            for cost in result.costs:  # one row per (period, service), even if pages repeat a key
                entry = merged[(cost.start, cost.service)]
                entry[0] += cost.amount
                entry[1], entry[2], entry[3] = cost.unit, entry[2] or cost.estimated, cost.end
            rows += [CostActual(environment=environment, granularity=granularity, period_start=period_start,
                                period_end=period_end, service=service, amount=amount, unit=unit, estimated=estimated,
                                fetched_at=fetched_at)
                     for (period_start, service), (amount, unit, estimated, period_end) in sorted(merged.items())]
        CostActual.objects.bulk_create(rows)
    return len(rows)


def cost_sync_environment(*, environment: Environment, force: bool = False, today: datetime.date | None = None,
                          run: CostSyncRun | None = None, recorder: Recorder | None = None) -> SyncOutcome:
    """Fetch one environment's actuals from Cost Explorer into ``CostActual`` unless fetched today already.

    Throttling and an unreachable endpoint are retried ``COST_SYNC_ATTEMPTS`` times in all with exponential
    backoff (``COST_SYNC_BACKOFF_SECONDS``, doubled each time); refused credentials are not retried.
    Raises CostSyncFailed when every attempt failed (the error is kept on the settings row for the pages) and
    ValidationError for an environment that has no AWS account (not EKS).
    """
    if environment.kind != Environment.Kind.EKS:
        raise ValidationError({"environment": f"{environment.name} is not an EKS environment; it has no AWS costs."})
    now = timezone.now()
    today = today or now.date()
    row = cost_settings_ensure(environment=environment)
    if not force and row.last_fetched_at is not None and row.last_fetched_at.date() >= today:
        return SyncOutcome(environment.name, False, 0, 0, 0)
    periods = sync_periods(today, settings.COST_HISTORY_MONTHS)
    attempts_allowed = max(1, settings.COST_SYNC_ATTEMPTS)
    requests = 0
    for attempt in range(1, attempts_allowed + 1):
        if run is not None:
            CostSyncRun.objects.filter(pk=run.pk).update(attempt_count=F("attempt_count") + 1)
        results = []
        try:
            for granularity, start, end in periods:
                result = cost_explorer.cost_and_usage(start=start, end=end, granularity=granularity,
                                                      tag_key=row.cost_tag_key, tag_value=row.tag_value)
                _count_requests(row, run, result.requests)
                requests += result.requests
                results.append(result)
        except cost_explorer.CostExplorerError as exc:
            _count_requests(row, run, exc.requests)
            requests += exc.requests
            if exc.retryable and attempt < attempts_allowed:
                delay = settings.COST_SYNC_BACKOFF_SECONDS * 2 ** (attempt - 1)
                if recorder is not None:
                    recorder.log(f"{environment.name}: {exc.reason}; attempt {attempt} of {attempts_allowed}, "
                                 f"retrying in {delay:.0f} s.")
                time.sleep(delay)
                continue
            EnvironmentCostSettings.objects.filter(pk=row.pk).update(
                last_error=exc.reason[:500], last_error_kind=exc.kind, last_error_at=timezone.now())
            raise CostSyncFailed(environment.name, exc, attempt) from None
        stored = _store(environment, periods, results, now)
        EnvironmentCostSettings.objects.filter(pk=row.pk).update(
            last_fetched_at=now, last_error="", last_error_kind="", last_error_at=None)
        return SyncOutcome(environment.name, True, requests, stored, attempt)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def cost_sync_run_create(*, environment_names: list[str] | None = None, force: bool = False, user=None,
                         reason: str = "") -> CostSyncRun:
    """A queued run over the named EKS environments (all EKS environments when none are named).

    Raises ValidationError (field ``environment``) for an unknown name or one that is not EKS.
    """
    environments = list(Environment.objects.filter(kind=Environment.Kind.EKS).order_by("name"))
    if environment_names:
        by_name = {e.name: e for e in Environment.objects.filter(name__in=environment_names)}
        unknown = sorted(set(environment_names) - set(by_name))
        if unknown:
            raise ValidationError({"environment": f"No environment named {', '.join(unknown)}."})
        not_eks = sorted(name for name, e in by_name.items() if e.kind != Environment.Kind.EKS)
        if not_eks:
            raise ValidationError({"environment": f"Not EKS (no AWS costs): {', '.join(not_eks)}."})
        environments = [by_name[name] for name in sorted(by_name)]
    run = CostSyncRun.objects.create(forced=force, triggered_by=user, reason=reason[:500])
    run.environments.set(environments)
    return run


def cost_sync_run_execute(*, run_id: int, today: datetime.date | None = None, callback=None) -> CostSyncRun:
    """Sync every environment of a run. The run fails when any environment failed: error_kind ``credentials``
    when Cost Explorer refused a credential, ``source`` when every failure was throttling or an unreachable
    endpoint (the same run may succeed later), ``error`` otherwise."""
    run = CostSyncRun.objects.get(pk=run_id)
    run.status, run.started_at = CostSyncRun.Status.RUNNING, timezone.now()
    run.save(update_fields=["status", "started_at"])
    recorder = Recorder(run, callback)
    environments = list(run.environments.order_by("name"))
    failures: list[CostSyncFailed] = []
    fetched = cached = 0
    for index, environment in enumerate(environments):
        recorder.step(100 * index // max(1, len(environments)), f"{environment.name}: Cost Explorer")
        try:
            outcome = cost_sync_environment(environment=environment, force=run.forced, today=today, run=run,
                                            recorder=recorder)
        except CostSyncFailed as exc:
            failures.append(exc)
            recorder.log(f"{environment.name}: FAILED {exc}")
            continue
        if outcome.fetched:
            fetched += 1
            recorder.log(f"{environment.name}: {outcome.rows} figures from {outcome.requests} requests.")
        else:
            cached += 1
            recorder.log(f"{environment.name}: fetched today already; cached figures kept (no request).")
    run.refresh_from_db(fields=["request_count", "attempt_count"])
    fields = dict(fetched_count=fetched, cached_count=cached)
    if failures:
        if any(f.kind == cost_explorer.CREDENTIALS for f in failures):
            kind = CostSyncRun.ErrorKind.CREDENTIALS  # a person must act, whatever else failed
        elif all(f.kind in cost_explorer.RETRYABLE for f in failures):
            kind = CostSyncRun.ErrorKind.SOURCE
        else:
            kind = CostSyncRun.ErrorKind.ERROR
        fields.update(status=CostSyncRun.Status.FAILED, error="\n".join(str(f) for f in failures), error_kind=kind)
    elif fetched:
        fields.update(status=CostSyncRun.Status.SUCCEEDED)
    else:
        fields.update(status=CostSyncRun.Status.NO_CHANGE)
    recorder.finish(**fields)
    return run


def cost_sync_request(*, environment_names: list[str] | None = None, force: bool = False, user=None,
                      reason: str = "") -> CostSyncRun:
    """Create a run and hand it to the ``default`` queue (inline without REDIS_URL) once the transaction commits."""
    run = cost_sync_run_create(environment_names=environment_names, force=force, user=user, reason=reason)

    def not_queued(message: str) -> None:
        CostSyncRun.objects.filter(pk=run.pk).update(enqueue_error=message[:500])

    enqueue("default", "costs.tasks.cost_sync_run_job", run.pk, job_id=f"cost-sync-{run.pk}", on_failure=not_queued)
    return run
