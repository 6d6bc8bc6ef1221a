"""``{% environment_cards %}``: the dashboard cards on the admin index (template admin/dashboard/cards.html)."""

from django import template
from django.urls import NoReverseMatch, reverse

from dashboard import selectors

register = template.Library()


def _url(name: str, *args) -> str:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:  # the app that serves it is not installed
        return ""


@register.inclusion_tag("admin/dashboard/cards.html", takes_context=True)
def environment_cards(context):
    """Cards with their links: environment page, runs, preview, cost report, live view, audit report."""
    cards = selectors.environment_cards()
    user = context.get("user")
    rows = []
    for card in cards:
        rows.append({
            "card": card,
            "change_url": reverse("admin:deployments_environment_change", args=[card.pk]),
            "runs_url": reverse("admin:deployments_renderrun_changelist") + f"?environments__id__exact={card.pk}",
            "run_url": (reverse("admin:deployments_renderrun_change", args=[card.last_run.pk])
                        if card.last_run else ""),
            "preview_url": reverse("admin:deployments_environment_preview", args=[card.pk]),
            "render_url": reverse("admin:deployments_environment_render", args=[card.pk]),
            "cost_url": _url("admin:costs_report", card.pk),
            "live_url": _url("admin:live_environment", card.pk),
            "approvals_url": (_url("admin:governance_changerequest_changelist")
                              + f"?status__exact=pending&covers={card.pk}"
                              if card.pending_changes else ""),
            "audit_url": (_url("admin:snapshots_auditreport_change", card.audit.report_pk)
                          if card.audit else ""),
        })
    return {
        "rows": rows, "summary": selectors.summary(cards), "csrf_token": context.get("csrf_token"),
        "can_render": bool(user and user.has_perm("deployments.change_environment")),
    }
