"""Writes for the live view: read the cluster, compute the view and the diagnostics, keep them as the last view."""

from __future__ import annotations

import dataclasses
import datetime
import json
import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import F
from django.utils import timezone

from clients.eks import EksError, cluster_node_groups
from clients.kubernetes import ClusterError
from clients.live import cluster_read
from deployments.models import Environment
from jobs.progress import Recorder
from jobs.queue import enqueue
from live import checks, selectors
from live.models import LiveRefreshRun, LiveStatus


def live_refresh(*, environment: Environment, now: datetime.datetime | None = None) -> LiveStatus:
    """Read the environment's cluster (kubeconfig context ``Environment.kube_context``) and store the live view;
    for EKS (with ``LIVE_READ_EKS``) the EKS API's node groups are compared with the model too.

    On a ClusterError the previous view stays, and the error with its time is recorded on the row: the caller
    shows both. Never raises for a cluster fault. Compose environments have no cluster: nothing is read.
    """
    now = now or timezone.now()
    status, _ = LiveStatus.objects.get_or_create(environment=environment)
    if environment.kind == Environment.Kind.COMPOSE:
        status.last_error, status.last_error_at = "A Docker Compose environment has no Kubernetes cluster.", now
        status.last_error_kind = "error"
        status.save(update_fields=["last_error", "last_error_at", "last_error_kind"])
        return status
    try:
        state = cluster_read(context=environment.kube_context)
    except ClusterError as exc:
        status.last_error, status.last_error_at, status.last_error_kind = str(exc)[:500], now, exc.kind
        status.save(update_fields=["last_error", "last_error_at", "last_error_kind"])
        return status
    eks_groups, notes = None, ()
    if environment.kind == Environment.Kind.EKS and settings.LIVE_READ_EKS and environment.eks_cluster_name:
        try:
            eks_groups = cluster_node_groups(cluster_name=environment.eks_cluster_name,
                                             region=environment.aws_region)
        except EksError as exc:
            notes = (f"EKS node groups could not be read: {exc.reason}",)
    report = checks.live_report(selectors.expectations_for(environment=environment), state, now,
                                eks_node_groups=eks_groups, notes=notes)
    status.report = json.loads(json.dumps(dataclasses.asdict(report)))  # exactly what a reload gives
    status.fetched_at = now
    status.problem_count = sum(1 for v in report.verdicts if not v.ok)
    status.last_error, status.last_error_at, status.last_error_kind = "", None, ""
    status.save()
    return status


def live_refresh_run_create(*, environment_names: list[str] | None = None, user=None,
                            reason: str = "") -> LiveRefreshRun:
    """A queued run over the named Kubernetes environments (default: every Minikube and EKS environment).

    Raises ValidationError (field ``environment``) for an unknown name or a Docker Compose environment.
    """
    kubernetes = Environment.objects.exclude(kind=Environment.Kind.COMPOSE).order_by("name")
    environments = list(kubernetes)
    if environment_names:
        by_name = {e.name: e for e in Environment.objects.filter(name__in=environment_names)}
        unknown = sorted(set(environment_names) - set(by_name))
        if unknown:
            raise ValidationError({"environment": f"No environment named {', '.join(unknown)}."})
        compose = sorted(n for n, e in by_name.items() if e.kind == Environment.Kind.COMPOSE)
        if compose:
            raise ValidationError({"environment": f"No Kubernetes cluster (Docker Compose): {', '.join(compose)}."})
        environments = [by_name[n] for n in sorted(by_name)]
    run = LiveRefreshRun.objects.create(triggered_by=user, reason=reason[:500])
    run.environments.set(environments)
    return run


def live_refresh_run_execute(*, run_id: int, callback=None) -> LiveRefreshRun:
    """Read every cluster of the run. A cluster that fails is read again ``LIVE_REFRESH_ATTEMPTS`` times in all,
    waiting ``LIVE_REFRESH_BACKOFF_SECONDS`` and doubling, unless it refused the credentials (401/403: not
    retried); the run fails naming every cluster that failed, error_kind ``credentials`` when any refused the
    credentials, else ``remote``. Each cluster's last view and error stay on its LiveStatus."""
    run = LiveRefreshRun.objects.get(pk=run_id)
    run.status, run.started_at = LiveRefreshRun.Status.RUNNING, timezone.now()
    run.save(update_fields=["status", "started_at"])
    recorder = Recorder(run, callback)
    environments = list(run.environments.order_by("name"))
    attempts_allowed = max(1, settings.LIVE_REFRESH_ATTEMPTS)
    failures, refreshed, problems = [], 0, 0
    for index, environment in enumerate(environments):
        recorder.step(100 * index // max(1, len(environments)), f"{environment.name}: reading the cluster")
        for attempt in range(1, attempts_allowed + 1):
            LiveRefreshRun.objects.filter(pk=run.pk).update(attempt_count=F("attempt_count") + 1)
            status = live_refresh(environment=environment)
            if status.last_error_kind == "credentials":
                failures.append((f"{environment.name}: {status.last_error} (credentials are not retried)", True))
                recorder.log(f"{environment.name}: FAILED {status.last_error}")
                break
            if not status.last_error:
                refreshed += 1
                problems += status.problem_count
                recorder.log(f"{environment.name}: {status.problem_count} problems found.")
                break
            if attempt < attempts_allowed:
                delay = settings.LIVE_REFRESH_BACKOFF_SECONDS * 2 ** (attempt - 1)
                recorder.log(f"{environment.name}: {status.last_error}; attempt {attempt} of {attempts_allowed}, "
                             f"retrying in {delay:.0f} s.")
                time.sleep(delay)
            else:
                failures.append((f"{environment.name}: {status.last_error} (after {attempt} attempts)", False))
                recorder.log(f"{environment.name}: FAILED {status.last_error}")
    run.refresh_from_db(fields=["attempt_count"])
    fields = dict(refreshed_count=refreshed, failed_count=len(failures), problem_count=problems)
    if failures:
        refused = any(credentials for _line, credentials in failures)
        fields.update(status=LiveRefreshRun.Status.FAILED, error="\n".join(line for line, _ in failures),
                      error_kind=LiveRefreshRun.ErrorKind.CREDENTIALS if refused else LiveRefreshRun.ErrorKind.REMOTE)
    else:
        fields.update(status=LiveRefreshRun.Status.SUCCEEDED)
    recorder.finish(**fields)
    return run


def live_refresh_request(*, environment_names: list[str] | None = None, user=None, reason: str = "") -> LiveRefreshRun:
    """Create a run and hand it to the ``default`` queue (inline without REDIS_URL) after the commit."""
    run = live_refresh_run_create(environment_names=environment_names, user=user, reason=reason)

    def not_queued(message: str) -> None:
        LiveRefreshRun.objects.filter(pk=run.pk).update(enqueue_error=message[:500])

    enqueue("default", "live.tasks.live_refresh_run_job", run.pk, job_id=f"live-refresh-{run.pk}",
            on_failure=not_queued)
    return run
