"""Writes for the live view: read the cluster, compute the view and the diagnostics, keep them as the last view."""

from __future__ import annotations

import dataclasses
import datetime
import json

from django.utils import timezone

from clients.kubernetes import ClusterError
from clients.live import cluster_read
from deployments.models import Environment
from live import checks, selectors
from live.models import LiveStatus


def live_refresh(*, environment: Environment, now: datetime.datetime | None = None) -> LiveStatus:
    """Read the environment's cluster (kubeconfig context ``Environment.kube_context``) and store the live view.

    On a ClusterError the previous view stays, and the error with its time is recorded on the row: the caller
    shows both. Never raises for a cluster fault. Compose environments have no cluster: nothing is read.
    """
    now = now or timezone.now()
    status, _ = LiveStatus.objects.get_or_create(environment=environment)
    if environment.kind == Environment.Kind.COMPOSE:
        status.last_error, status.last_error_at = "A Docker Compose environment has no Kubernetes cluster.", now
        status.save(update_fields=["last_error", "last_error_at"])
        return status
    try:
        state = cluster_read(context=environment.kube_context)
    except ClusterError as exc:
        status.last_error, status.last_error_at = str(exc)[:500], now
        status.save(update_fields=["last_error", "last_error_at"])
        return status
    report = checks.live_report(selectors.expectations_for(environment=environment), state, now)
    status.report = json.loads(json.dumps(dataclasses.asdict(report)))  # exactly what a reload gives
    status.fetched_at = now
    status.problem_count = sum(1 for v in report.verdicts if not v.ok)
    status.last_error, status.last_error_at = "", None
    status.save()
    return status
