"""Admin pages of governance: grants (superusers), change requests (approve / reject with the diff) and the
audit trail (search, filters, CSV export)."""

from __future__ import annotations

import csv

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from deployments import access
from deployments.adminkit import EnvironmentScopedAdminMixin, diff_file_list, diff_html, run_link
from deployments.models import Environment
from governance import selectors, services
from governance.models import ChangeRequest, EnvironmentGrant


@admin.register(EnvironmentGrant)
class EnvironmentGrantAdmin(admin.ModelAdmin):
    """Who may work in which environment. Only superusers grant (a grant is a key to production)."""

    list_display = ["user", "environment_label", "note", "granted_by", "created_at"]
    list_filter = ["environment"]
    search_fields = ["user__username", "environment__name", "note"]
    fields = ["user", "environment", "note"]

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    has_add_permission = has_change_permission = has_delete_permission = (
        lambda self, request, obj=None: request.user.is_active and request.user.is_superuser)

    @admin.display(description="Environment", ordering="environment__name")
    def environment_label(self, obj):
        return obj.environment.name if obj.environment_id else "every environment"

    def save_model(self, request, obj, form, change):
        if not change:
            obj.granted_by = request.user
        obj.full_clean()
        super().save_model(request, obj, form, change)


class CoversEnvironmentFilter(admin.SimpleListFilter):
    """Change requests that would ship to an environment: the ones naming it and the ones rendering every
    environment (``all_environments``: a removal or a move), which a filter on ``environments`` alone misses."""

    title = "environment"
    parameter_name = "covers"

    def lookups(self, request, model_admin):
        # The environments whose change requests this user may see (deployments.access, as the list itself).
        ids = access.viewable_environment_ids(request.user, "governance.changerequest")
        environments = access.filter_by_ids(Environment.objects.order_by("name"), ids, "pk")
        return [(str(pk), name) for pk, name in environments.values_list("pk", "name")]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(Q(all_environments=True) | Q(environments__id=int(value))).distinct()


@admin.register(ChangeRequest)
class ChangeRequestAdmin(EnvironmentScopedAdminMixin, admin.ModelAdmin):
    """Changes of protected environments awaiting a second person; the page shows the diff and decides."""

    list_display = ["id", "status", "environments_label", "author", "short_reason", "files", "requested",
                    "decision"]
    list_filter = ["status", CoversEnvironmentFilter, "author", "approver"]
    search_fields = ["reason", "environment_names", "author__username", "approver__username", "comment"]
    list_select_related = ["author", "approver", "run"]
    environment_lookup = "environments"

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Reason")
    def short_reason(self, obj):
        return obj.reason if len(obj.reason) <= 80 else obj.reason[:79] + "…"

    @admin.display(description="Environments", ordering="environment_names")
    def environments_label(self, obj):
        return obj.environment_names or "every environment"

    @admin.display(description="Requested", ordering="created_at")
    def requested(self, obj):
        return timezone.localtime(obj.created_at).strftime("%Y-%m-%d %H:%M")

    @admin.display(description="Files")
    def files(self, obj):
        return f"+{obj.files_added} ~{obj.files_changed} −{obj.files_deleted}"

    @admin.display(description="Decided by", ordering="approver__username")
    def decision(self, obj):
        """Who decided, and the run an approval started (one column: the list stays readable at 1366 px)."""
        if not obj.approver_id:
            return "-"
        if obj.run_id:
            return format_html("{}, run {}", obj.approver.get_username(), run_link(obj.run))
        return obj.approver.get_username()

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("audit/", view(self.audit_view), name="governance_audit"),
        ] + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The request, its diff, and (for an approver who did not make it) approve / reject with a comment."""
        change_request = self.get_object(request, object_id)
        if change_request is None:
            raise Http404("No such change request.")
        if not self.has_view_permission(request, change_request):
            raise PermissionDenied
        error = ""
        if request.method == "POST":
            decision, comment = request.POST.get("decision"), request.POST.get("comment", "")
            try:
                if decision == "approve":
                    result = services.change_request_approve(change_request=change_request, user=request.user,
                                                             comment=comment,
                                                             diff_sha256=request.POST.get("diff_sha256", ""))
                    self.message_user(request, format_html(
                        "Approved. Render run {} commits it with Changed-By and Approved-By.", run_link(result.run)),
                        messages.SUCCESS)
                    return HttpResponseRedirect(request.path)
                if decision == "reject":
                    services.change_request_reject(change_request=change_request, user=request.user,
                                                   comment=comment)
                    self.message_user(request, "Rejected: nothing was committed and git is untouched. The model "
                                      "still holds the change; revert it (a new change asks for approval again).",
                                      messages.WARNING)
                    return HttpResponseRedirect(request.path)
                error = "Choose approve or reject."
            except services.ChangeRequestStale as exc:
                error = " ".join(exc.messages)
                change_request.refresh_from_db()
            except ValidationError as exc:
                error = " ".join(exc.messages)
        ids = change_request.environment_ids()
        can_decide = (change_request.status == ChangeRequest.Status.PENDING
                      and access.allowed(request.user, services.APPROVE_PERM, ids)
                      and change_request.author_id != request.user.pk
                      and not change_request.contributors.filter(pk=request.user.pk).exists())
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "original": change_request,
            "title": str(change_request), "change_request": change_request, "error": error,
            "diff_html": diff_html(change_request.diff), "diff_files": diff_file_list(change_request.diff),
            "can_decide": can_decide,
            "contributors": ", ".join(user.get_username() for user in change_request.contributors.all()) or "system",
        }
        return TemplateResponse(request, "admin/governance/changerequest/decide.html", context)

    # --- the audit trail --------------------------------------------------------------------------------

    def audit_view(self, request):
        """Every create, change and delete the user may see, newest first; ?sha= finds the changes a commit
        shipped, ?environment= / ?project= one object's history; ?format=csv downloads the same rows."""
        visible = access.environment_ids(request.user, "deployments.view_environment")
        if visible is not None and not visible:
            raise PermissionDenied
        params = request.GET
        try:
            environment_id = int(params["environment"]) if params.get("environment") else None
        except ValueError:
            raise Http404("Environment ids are numbers.") from None
        if environment_id is not None and visible is not None and environment_id not in visible:
            raise PermissionDenied
        entries = selectors.audit_entries(
            environment_ids=visible, commit_sha=params.get("sha", ""), environment_id=environment_id,
            project_id=params.get("project", ""), model=params.get("model", ""), user=params.get("user", ""),
            query=params.get("q", ""))
        names = dict(Environment.objects.values_list("pk", "name"))
        if params.get("format") == "csv":
            response = HttpResponse(content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = 'attachment; filename="audit.csv"'
            writer = csv.writer(response)
            writer.writerow(["time", "user", "action", "model", "object_id", "object", "environment", "changes",
                             "run", "commit"])
            for entry in entries:
                writer.writerow([entry.at.isoformat(), entry.user, entry.action, entry.model, entry.object_id,
                                 _csv_safe(entry.object_label), names.get(entry.environment_id, entry.environment_id),
                                 _csv_safe(entry.changes_text), entry.run_id or "", entry.commit_sha])
            return response
        environments = Environment.objects.order_by("name")
        if visible is not None:
            environments = environments.filter(pk__in=visible)
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Audit trail",
            "entries": [(entry, names.get(entry.environment_id, "-")) for entry in entries],
            "environments": environments, "params": params,
            "models": [("environment", "environment"), ("nodegroup", "node group"), ("secret", "secret"),
                       ("project", "project"), ("container", "container")],
            "csv_url": f"{reverse('admin:governance_audit')}?{_with_format(params)}",
        }
        return TemplateResponse(request, "admin/governance/audit.html", context)


def _with_format(params) -> str:
    query = params.copy()
    query["format"] = "csv"
    return query.urlencode()


def _csv_safe(text: str) -> str:
    """Spreadsheets run cells that start with = + - @ as formulas: prefix them with a quote."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@") else text
