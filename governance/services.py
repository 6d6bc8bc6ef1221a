"""Governance writes: grants, the two-person rule (hold, approve, reject) and linking history to runs.

The two-person rule (issue 13): a render request that covers a protected environment (``Environment.protected``)
with a change in it is *held* as a pending ChangeRequest with its dry-run diff; a user with
``governance.approve_changerequest`` in every environment it covers, who contributed none of its changes,
approves it (then one run is requested, whose commit carries ``Changed-By`` and ``Approved-By``) or rejects it
(git is untouched). A newer change of the same environments supersedes the pending request (the new one carries
both, since the model holds both); a run that would ship an unapproved change is refused when it starts.
"""

from __future__ import annotations

import hashlib
import logging

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from deployments import access, runs
from deployments.models import Environment, RenderRun
from deployments.runs.request import RunRequest, environments_mark_dirty, one_line, username
from governance.models import AUDITED_MODELS, ChangeRequest, EnvironmentGrant
from jobs.progress import append_in_sql

logger = logging.getLogger(__name__)

APPROVE_PERM = "governance.approve_changerequest"


class ChangeRequestStale(ValidationError):
    """The model moved on since the diff the approver saw: the new diff is stored and must be reviewed."""


# --- grants ---------------------------------------------------------------------------------------------


def grant_environment(*, user, environment: Environment | None, granted_by=None, note: str = "") -> EnvironmentGrant:
    """Let ``user`` use their role's permissions in ``environment`` (None: every environment). Idempotent."""
    grant, _ = EnvironmentGrant.objects.get_or_create(user=user, environment=environment,
                                                      defaults={"granted_by": granted_by, "note": note})
    if hasattr(user, "_environment_grant_cache"):
        del user._environment_grant_cache
    return grant


# --- the two-person rule -----------------------------------------------------------------------------------


def _protected_in(environment_ids) -> list[Environment]:
    rows = Environment.objects.filter(protected=True)
    if environment_ids is not None:
        rows = rows.filter(pk__in=environment_ids)
    return list(rows.order_by("name"))


def _pending_for(environments) -> list[ChangeRequest]:
    return list(ChangeRequest.objects.filter(status=ChangeRequest.Status.PENDING).filter(
        Q(all_environments=True) | Q(environments__in=[env.pk for env in environments])).distinct().order_by("pk"))


def _names(environment_ids) -> str:
    if environment_ids is None:
        return "every environment"
    return ", ".join(Environment.objects.filter(pk__in=environment_ids).order_by("name").values_list("name", flat=True))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def change_request_refresh_diff(*, change_request: ChangeRequest) -> ChangeRequest:
    """Dry-run render of the request's environments against the branch head: store the diff, its SHA-256 and the
    file counts (a render error is stored in ``diff_error`` instead; approval then waits for a working render)."""
    ids = change_request.environment_ids()
    try:
        preview = runs.environment_preview(environment_ids=ids if ids is None else sorted(ids))
    except Exception as exc:  # noqa: BLE001 - shown on the request's page; render errors carry no secret values
        change_request.diff, change_request.diff_error = "", f"{type(exc).__name__}: {exc}"
        change_request.files_added = change_request.files_changed = change_request.files_deleted = 0
    else:
        change_request.diff, change_request.diff_error = preview.diff, ""
        change_request.files_added, change_request.files_changed, change_request.files_deleted = (
            len(preview.added), len(preview.changed), len(preview.deleted))
    change_request.diff_sha256 = _sha(change_request.diff_error or change_request.diff)
    change_request.diff_at = timezone.now()
    change_request.save()
    return change_request


@transaction.atomic
def change_request_hold(*, environment_ids, user, reason: str, allow_deletions: bool,
                        contributors: set[int] = frozenset()) -> ChangeRequest:
    """Record a change of protected environments as a pending request (superseding pending ones it overlaps,
    whose environments, contributors and reasons it takes over) and compute its diff. Marks them dirty.
    ``user`` is the author (None: the system); ``contributors``: ids of other users whose changes it ships."""
    ids = None if environment_ids is None else set(environment_ids)
    environments_mark_dirty(environment_ids=ids)
    previous = _pending_for(_protected_in(ids) if ids is not None else Environment.objects.all())
    contributors, reasons = set(contributors), []
    for old in previous:
        old_ids = old.environment_ids()
        ids = None if ids is None or old_ids is None else ids | old_ids
        contributors |= set(old.contributors.values_list("pk", flat=True))
        reasons += [part for part in old.reason.split("; ") if part]
        allow_deletions = allow_deletions or old.allow_deletions
    if reason:
        reasons.append(reason)
    author = user if user is not None and user.is_authenticated else None
    if author is not None:
        contributors.add(author.pk)
    request = ChangeRequest.objects.create(
        all_environments=ids is None, environment_names=one_line(_names(ids), 500), author=author,
        reason="; ".join(dict.fromkeys(reasons)), allow_deletions=allow_deletions,
    )
    if ids:
        request.environments.set(ids)
    request.contributors.set(contributors)
    for old in previous:
        old.status, old.superseded_by, old.decided_at = ChangeRequest.Status.SUPERSEDED, request, timezone.now()
        old.save(update_fields=["status", "superseded_by", "decided_at"])
    return change_request_refresh_diff(change_request=request)


def _blocking(protected: list[Environment]) -> list[ChangeRequest]:
    """The newest live request of each protected environment when it is pending or rejected: its changes are in
    the model but must not reach git without an approval."""
    found = {}
    for environment in protected:
        newest = (ChangeRequest.objects.exclude(status=ChangeRequest.Status.SUPERSEDED)
                  .filter(Q(all_environments=True) | Q(environments=environment))
                  .order_by("-created_at", "-pk").first())
        if newest is not None and newest.status in (ChangeRequest.Status.PENDING, ChangeRequest.Status.REJECTED):
            found[newest.pk] = newest
    return list(found.values())


def _unshipped_authors(protected: list[Environment], every_environment: bool) -> set[int]:
    """Ids of the signed-in users who changed a protected environment (or something in it) since its last run:
    history rows by a user, not linked to a run yet. For a request of every environment, protected environments
    that were removed or renamed count too (their last history row still says protected)."""
    ids = {env.pk for env in protected}
    if every_environment:
        history = Environment.history.model.objects
        ids |= set(history.filter(protected=True, render_run__isnull=True, history_user__isnull=False)
                   .values_list("id", flat=True))
    if not ids:
        return set()
    authors: set[int] = set()
    for model in AUDITED_MODELS:
        authors |= set(model.history.model.objects.filter(
            render_run__isnull=True, history_user__isnull=False, audit_environment_id__in=ids,
        ).values_list("history_user_id", flat=True).distinct())
    return authors


def render_request_gate(*, environment_ids, user, reason: str, absorb: bool, allow_deletions: bool,
                        approval) -> ChangeRequest | None:
    """Receiver logic of ``runs.signals.render_requested``. Holds the request when it would ship a change of a
    protected environment that no approver has seen: a signed-in user's save in it (the auto-render after it),
    an unshipped change a user made in it (also through a render of every environment, e.g. after a removal or
    move), or a change whose request is pending or was rejected. An approved request passes; so does a render of
    a protected environment whose changes were all approved, and a change made by the system (``user=None``:
    server-side commands and data loads, which need shell access to the portal; not silently: the commit and the
    run's log name them, ``run_trailers``, and the audit trail shows them as the system's).

    A save makes its user the request's author. A render that only meets a held change (a manual render, the
    recovery job) is answered with the pending request, or, when there is none (the last one was rejected), with a
    new request without an author, carrying the users whose changes it would ship."""
    if approval is not None:
        return None
    protected = _protected_in(environment_ids)
    if not protected:
        return None
    person = user is not None and user.is_authenticated
    if person and (absorb or allow_deletions) and environment_ids is not None:
        return change_request_hold(environment_ids=environment_ids, user=user, reason=reason,
                                   allow_deletions=allow_deletions)
    blocking = _blocking(protected)
    authors = _unshipped_authors(protected, every_environment=environment_ids is None)
    if person and (absorb or allow_deletions) and authors:
        return change_request_hold(environment_ids=environment_ids, user=user, reason=reason,
                                   allow_deletions=allow_deletions, contributors=authors)
    if not blocking and not authors:
        return None
    pending = [request for request in blocking if request.status == ChangeRequest.Status.PENDING]
    if pending and environment_ids is not None and not allow_deletions:
        return pending[-1]
    for request in blocking:
        authors |= set(request.contributors.values_list("pk", flat=True))
    return change_request_hold(environment_ids=environment_ids, user=None, reason=reason,
                               allow_deletions=allow_deletions, contributors=authors)


def _decide_check(change_request: ChangeRequest, user) -> None:
    if user is None or not user.is_authenticated:
        raise PermissionDenied("Only a signed-in approver can decide on a change.")
    access.require(user, APPROVE_PERM, change_request.environment_ids(), what=f"change #{change_request.pk}")
    if change_request.author_id == user.pk or change_request.contributors.filter(pk=user.pk).exists():
        raise PermissionDenied("You made (part of) this change: a second person must approve or reject it.")
    if change_request.status != ChangeRequest.Status.PENDING:
        raise ValidationError({"status": f"This change is {change_request.get_status_display().lower()} already."})


def change_request_approve(*, change_request: ChangeRequest, user, comment: str = "",
                           diff_sha256: str) -> RunRequest:
    """Approve: the approver must not be a contributor and must hold ``governance.approve_changerequest`` in
    every environment of the request. ``diff_sha256`` names the diff the approver reviewed: when the model or
    the repository moved on, the diff is recomputed and ChangeRequestStale is raised (review it again).
    Then one run is requested (never absorbed), triggered by the author; its commit carries Approved-By.
    """
    _decide_check(change_request, user)
    if change_request.diff_error:
        change_request_refresh_diff(change_request=change_request)
        if change_request.diff_error:
            raise ValidationError({"diff": f"The change cannot be rendered: {change_request.diff_error}"})
    shown = change_request.diff_sha256
    change_request_refresh_diff(change_request=change_request)
    if diff_sha256 != shown or change_request.diff_sha256 != shown:
        raise ChangeRequestStale(
            {"diff_sha256": "The change no longer matches the diff you reviewed (the model or the repository "
                            "moved on). Its new diff is shown: review it and approve again."}, code="stale")
    with transaction.atomic():
        locked = ChangeRequest.objects.select_for_update().get(pk=change_request.pk)
        _decide_check(locked, user)
        locked.status, locked.approver, locked.comment = ChangeRequest.Status.APPROVED, user, comment
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "approver", "comment", "decided_at"])
        ids = locked.environment_ids()
        result = runs.render_run_request(
            environment_ids=None if ids is None else sorted(ids), user=locked.author,
            reason=f"{locked.reason or 'Change'} (change #{locked.pk}, approved by {username(user)})",
            absorb=False, allow_deletions=locked.allow_deletions, approval=locked)
        locked.run = result.run
        locked.save(update_fields=["run"])
        if result.run is not None:  # the run page says who approved it
            append_in_sql(RenderRun, result.run.pk, f"Change #{locked.pk} by {username(locked.author)} approved by "
                          f"{username(user)}: {one_line(comment) or 'no comment'}")
    change_request.refresh_from_db()
    return result


@transaction.atomic
def change_request_reject(*, change_request: ChangeRequest, user, comment: str) -> ChangeRequest:
    """Reject with a comment (required): nothing is committed. The model still holds the change and its
    environments stay marked for render; the next render of them asks for approval again."""
    if not (comment or "").strip():
        raise ValidationError({"comment": "Say why the change is rejected."})
    locked = ChangeRequest.objects.select_for_update().get(pk=change_request.pk)
    _decide_check(locked, user)
    locked.status, locked.approver, locked.comment = ChangeRequest.Status.REJECTED, user, comment.strip()
    locked.decided_at = timezone.now()
    locked.save(update_fields=["status", "approver", "comment", "decided_at"])
    return locked


def run_refusal(*, run: RenderRun) -> str:
    """Receiver logic of ``runs.signals.render_run_starting``: a run covering a protected environment whose newest
    request is pending or rejected would ship that change unapproved (it was queued before the change was
    saved): refuse it. The approval's own run passes (its request is the newest, approved)."""
    ids = set(run.environments.values_list("pk", flat=True)) or None
    blocking = _blocking(_protected_in(ids))
    if not blocking:
        return ""
    names = ", ".join(f"#{request.pk} of {request.environment_names} ({request.get_status_display().lower()})"
                      for request in blocking)
    return f"change {names} is not approved; this run would ship it, so nothing was rendered."


def _unshipped_system_changes(protected: list[Environment]) -> list[str]:
    """Names of the protected environments holding changes the system made (history rows without a user) that
    no run has shipped yet."""
    ids = {env.pk for env in protected}
    if not ids:
        return []
    found: set[int] = set()
    for model in AUDITED_MODELS:
        found |= set(model.history.model.objects.filter(
            render_run__isnull=True, history_user__isnull=True, audit_environment_id__in=ids,
        ).values_list("audit_environment_id", flat=True).distinct())
    return [env.name for env in protected if env.pk in found]


def run_trailers(*, run: RenderRun) -> dict[str, str]:
    """``Approved-By`` (and ``Change-Request``) for the run an approval started. Otherwise, when the run ships
    changes the system made in a protected environment (commands and data loads pass the two-person rule, see
    ``render_request_gate``), ``Unapproved-System-Change`` names those environments: the commit and the run's log
    say that nobody approved them."""
    approved = ChangeRequest.objects.filter(run=run, status=ChangeRequest.Status.APPROVED).first()
    if approved is not None:
        return {"Approved-By": username(approved.approver), "Change-Request": f"#{approved.pk}"}
    ids = set(run.environments.values_list("pk", flat=True)) or None
    system = _unshipped_system_changes(_protected_in(ids))
    if not system:
        return {}
    return {"Unapproved-System-Change": ", ".join(system)}


# --- audit ----------------------------------------------------------------------------------------------


def history_link_run(*, run: RenderRun, snapshot_at) -> int:
    """Link the history rows the committed run shipped (saved before its snapshot, in its environments, not yet
    linked) to it. Returns how many rows were linked."""
    ids = list(run.environments.values_list("pk", flat=True)) or None
    linked = 0
    for model in AUDITED_MODELS:
        rows = model.history.model.objects.filter(render_run__isnull=True, history_date__lte=snapshot_at)
        if ids is not None:
            rows = rows.filter(audit_environment_id__in=ids)
        linked += rows.update(render_run=run)
    return linked
