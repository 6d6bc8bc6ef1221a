"""Reads for the dashboard: one card per environment answering "is everything fine?".

Each card gathers the environment's last render run, whether it needs a render, the warnings of that run, the
runs failed since the last success and, when those apps are installed, the newest backup audit's verdict for the
environment (snapshots app), the monthly estimate (costs app) and the last cluster read (live app). Optional apps
are read through their own selectors, imported only when ``apps.is_installed`` says they are there.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.apps import apps
from django.db.models import F, Func, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce

from deployments.models import Environment, RenderRun
from deployments.selectors import active_project_count
from jobs.models import JobRun

logger = logging.getLogger(__name__)

OK, ATTENTION, FAILING, UNKNOWN = "ok", "attention", "failing", "unknown"


@dataclass(frozen=True)
class LastRun:
    pk: int
    status: str
    status_display: str
    commit_sha: str
    at: datetime.datetime
    by: str
    warning_count: int
    error_kind: str


@dataclass(frozen=True)
class AuditVerdict:
    """The environment's findings in the newest finished backup audit (snapshots.models.AuditReport)."""

    report_pk: int
    evaluated_at: datetime.datetime
    compliant: int
    non_compliant: int
    unknown: int

    @property
    def state(self) -> str:
        if self.non_compliant:
            return FAILING
        return UNKNOWN if self.unknown else OK


@dataclass(frozen=True)
class LiveHealth:
    """The last read of the cluster (live.models.LiveStatus): problems found, or the error of the newest read."""

    fetched_at: datetime.datetime | None
    problem_count: int
    last_error: str

    @property
    def state(self) -> str:
        if self.last_error or self.fetched_at is None:
            return UNKNOWN
        return ATTENTION if self.problem_count else OK


@dataclass(frozen=True)
class EnvironmentCard:
    pk: int
    name: str
    kind_display: str
    protected: bool
    needs_render: bool
    active_projects: int
    last_run: LastRun | None
    failed_since_success: int
    audit: AuditVerdict | None = None
    monthly_cost_usd: Decimal | None = None
    live: LiveHealth | None = None
    pending_changes: int = 0  # change requests awaiting approval that cover this environment

    @property
    def state(self) -> str:
        """FAILING when the last run failed or the audit finds a gap; ATTENTION when something waits (a render,
        warnings, cluster problems); OK otherwise."""
        if (self.last_run and self.last_run.status == JobRun.Status.FAILED) or (
                self.audit and self.audit.state == FAILING):
            return FAILING
        if self.needs_render or self.pending_changes or (self.last_run and self.last_run.warning_count) or (
                self.live and self.live.state == ATTENTION):
            return ATTENTION
        return OK


# Before any run: "failed since the last success" counts every failed run of an environment that never succeeded.
_BEFORE_ANY_RUN = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _runs_of_outer_environment():
    """The runs that rendered the outer query's environment, dry runs aside. A run for "all environments" has no
    rows in the M2M table and renders this one too; a run of several environments matches one row, so there are
    no duplicates to remove."""
    return RenderRun.objects.filter(Q(environments=OuterRef("pk")) | Q(environments__isnull=True)).filter(
        dry_run=False)


def _run_annotations() -> dict:
    """Per environment: the id of its newest run, and the number of its failed runs since its newest successful
    one (all of them when none succeeded). Subqueries of the environments' query: the same number of queries
    whatever the number of environments and runs."""
    last_success = Subquery(_runs_of_outer_environment().filter(status__in=JobRun.SUCCESSFUL).order_by("-created_at")
                            .values("created_at")[:1])
    failed = (_runs_of_outer_environment().filter(status=JobRun.Status.FAILED,
                                                  created_at__gt=OuterRef("_runs_success_floor"))
              .order_by().annotate(n=Func(F("pk"), function="COUNT")).values("n"))
    return {
        "_runs_last_id": Subquery(_runs_of_outer_environment().order_by("-created_at", "-id").values("pk")[:1]),
        "_runs_success_floor": Coalesce(last_success, Value(_BEFORE_ANY_RUN)),
        "_runs_failed": Subquery(failed, output_field=IntegerField()),
    }


def _last_runs(environments: list[Environment]) -> dict[int, LastRun]:
    """{run id: LastRun} for the newest run of each environment (annotated by ``_run_annotations``): one query."""
    ids = {env._runs_last_id for env in environments if env._runs_last_id is not None}
    if not ids:
        return {}
    found = {}
    for run in RenderRun.objects.filter(pk__in=ids).select_related("triggered_by").defer("diff", "log"):
        by = run.triggered_by.get_username() if run.triggered_by else "system"
        found[run.pk] = LastRun(pk=run.pk, status=run.status, status_display=run.get_status_display(),
                                commit_sha=run.commit_sha, at=run.finished_at or run.created_at, by=by,
                                warning_count=run.warning_count, error_kind=run.error_kind)
    return found


def _audit_verdicts() -> dict[str, AuditVerdict]:
    """Per environment name, its findings in the newest finished audit report ({} without the snapshots app)."""
    if not apps.is_installed("snapshots"):
        return {}
    from django.db.models import Count

    from snapshots.models import AuditFinding, AuditReport

    report = (AuditReport.objects.filter(evaluated_at__isnull=False).only("pk", "evaluated_at")
              .order_by("-evaluated_at").first())
    if report is None:
        return {}
    counts: dict[str, dict[str, int]] = {}
    rows = (AuditFinding.objects.filter(report=report).exclude(environment_name="")
            .values("environment_name", "result").annotate(n=Count("id")))
    for row in rows:
        counts.setdefault(row["environment_name"], {})[row["result"]] = row["n"]
    R = AuditFinding.Result
    return {name: AuditVerdict(report_pk=report.pk, evaluated_at=report.evaluated_at,
                               compliant=c.get(R.COMPLIANT, 0), non_compliant=c.get(R.NON_COMPLIANT, 0),
                               unknown=c.get(R.UNKNOWN, 0))
            for name, c in counts.items()}


# The estimate walks every project of the environment (about 1 s at 2,500 projects): the dashboard keeps it per
# process, keyed by the environment's change marks (below), so any change of the environment, its node groups,
# projects or containers gives a new key; the time limit covers what has no history (prices, cost settings).
ESTIMATE_CACHE_SECONDS = 900
_HISTORIES = ("HistoricalEnvironment", "HistoricalNodeGroup", "HistoricalProject", "HistoricalContainer")


def _change_mark_annotations() -> dict:
    """Subqueries giving, per environment, the newest history row id of the environment and of its node groups,
    projects and containers (governance's history; {} when that app is absent). Each is one probe of the
    (audit_environment_id, history_id) index, whatever the number of projects."""
    if not apps.is_installed("governance"):
        return {}
    from django.db.models import OuterRef, Subquery

    return {f"_mark_{number}": Subquery(apps.get_model("governance", name).objects
                                        .filter(audit_environment_id=OuterRef("pk"))
                                        .order_by("-history_id").values("history_id")[:1])
            for number, name in enumerate(_HISTORIES)}


def _monthly_cost(environment: Environment, marks: tuple) -> Decimal | None:
    """The costs app's monthly estimate in USD, or None (app absent, or the estimate could not be made).

    Cached ESTIMATE_CACHE_SECONDS under a key made of the environment's last change, its change ``marks`` (a
    change to its node groups, projects or containers is a new history row) and the date (the estimate counts
    idle days)."""
    if not apps.is_installed("costs"):
        return None
    from django.core.cache import cache
    from django.utils import timezone

    from costs.selectors import environment_estimate

    mark = ".".join(str(value) for value in marks)
    key = (f"dashboard:estimate:{environment.pk}:{environment.updated_at.timestamp()}:{mark}:"
           f"{timezone.now().date().isoformat()}")
    cached = cache.get(key)
    if cached is not None:
        return Decimal(cached)
    try:
        total = environment_estimate(environment=environment).total_usd
    except Exception:  # noqa: BLE001 - a card never breaks the index; the cost page shows the real error
        logger.exception("Cost estimate of environment %s failed", environment.name)
        return None
    cache.set(key, str(total), ESTIMATE_CACHE_SECONDS)
    return total


def _live_health() -> dict[int, LiveHealth]:
    if not apps.is_installed("live"):
        return {}
    from live.models import LiveStatus

    return {row.environment_id: LiveHealth(fetched_at=row.fetched_at, problem_count=row.problem_count,
                                           last_error=row.last_error)
            for row in LiveStatus.objects.only("environment_id", "fetched_at", "problem_count", "last_error")}


def _pending_changes() -> tuple[dict[int, int], int]:
    """({environment id: pending change requests naming it}, pending requests of every environment) — ({}, 0)
    without the governance app."""
    if not apps.is_installed("governance"):
        return {}, 0
    from django.db.models import Count

    from governance.models import ChangeRequest

    pending = ChangeRequest.objects.filter(status=ChangeRequest.Status.PENDING)
    every = pending.filter(all_environments=True).count()
    rows = pending.filter(all_environments=False).values("environments").annotate(n=Count("id"))
    return {row["environments"]: row["n"] for row in rows if row["environments"] is not None}, every


def environment_cards() -> list[EnvironmentCard]:
    """One card per environment, by name. Queries: the same number whatever the number of environments, projects
    and runs (the cost estimate's, when not cached, are per environment)."""

    marks = _change_mark_annotations()
    environments = list(Environment.objects.annotate(_active=active_project_count(), **marks,
                                                     **_run_annotations()).order_by("name"))
    last_runs = _last_runs(environments)
    audits, live = _audit_verdicts(), _live_health()
    pending, pending_everywhere = _pending_changes()
    cards = []
    for env in environments:
        last_run = last_runs.get(env._runs_last_id)
        failed = (env._runs_failed or 0) if last_run is not None else 0
        cards.append(EnvironmentCard(
            pk=env.pk, name=env.name, kind_display=env.get_kind_display(), protected=env.protected,
            needs_render=env.needs_render, active_projects=env._active, last_run=last_run,
            failed_since_success=failed, audit=audits.get(env.name),
            monthly_cost_usd=_monthly_cost(env, tuple(getattr(env, name) for name in marks)),
            live=live.get(env.pk), pending_changes=pending.get(env.pk, 0) + pending_everywhere))
    return cards


def summary(cards: list[EnvironmentCard]) -> str:
    """One sentence for the top of the dashboard."""
    if not cards:
        return "No environments yet."
    failing = sum(card.state == FAILING for card in cards)
    attention = sum(card.state == ATTENTION for card in cards)
    count = f"{len(cards)} environment{'s' if len(cards) != 1 else ''}"
    if not failing and not attention:
        return "The environment is fine." if len(cards) == 1 else f"All {count} are fine."
    parts = []
    if failing:
        parts.append(f"{failing} failing")
    if attention:
        parts.append(f"{attention} need{'s' if attention == 1 else ''} attention")
    return f"{count}: {', '.join(parts)}."
