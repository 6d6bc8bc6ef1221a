"""Signal receivers: the render run signals (deployments.runs.signals) and the history rows' environment."""

from django.dispatch import receiver
from simple_history.signals import pre_create_historical_record

from deployments.runs.signals import render_requested, render_run_committed, render_run_starting, render_run_trailers
from governance import services


@receiver(render_requested, dispatch_uid="governance-hold")
def hold_protected_changes(sender, *, environment_ids, user, reason, absorb, allow_deletions, approval, **kwargs):
    return services.render_request_gate(environment_ids=environment_ids, user=user, reason=reason, absorb=absorb,
                                        allow_deletions=allow_deletions, approval=approval)


@receiver(render_run_starting, dispatch_uid="governance-refuse")
def refuse_unapproved_runs(sender, *, run, **kwargs):
    return services.run_refusal(run=run)


@receiver(render_run_trailers, dispatch_uid="governance-trailers")
def approval_trailers(sender, *, run, **kwargs):
    return services.run_trailers(run=run)


@receiver(render_run_committed, dispatch_uid="governance-history-link")
def link_history(sender, *, run, snapshot_at, **kwargs):
    services.history_link_run(run=run, snapshot_at=snapshot_at)


@receiver(pre_create_historical_record, dispatch_uid="governance-history-environment")
def history_environment(sender, *, instance, history_instance, **kwargs):
    """Every history row names its environment (a container: its project's), so runs and filters find it."""
    label = instance._meta.label_lower
    if label == "deployments.environment":
        history_instance.audit_environment_id = instance.pk
    elif label == "projects.container":
        history_instance.audit_environment_id = instance.project.environment_id if instance.project_id else None
    else:
        history_instance.audit_environment_id = getattr(instance, "environment_id", None)
