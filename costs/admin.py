"""Admin: the price table (editable), environment cost settings, cost sync runs (read-only history)."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from costs import selectors, services
from costs.charts import monthly_trend_svg
from costs.estimator import CATEGORIES
from costs.models import CostSyncRun, EnvironmentCostSettings, Price
from costs.reporting import age_text
from deployments import access
from deployments.models import Environment
from jobs.admin import JobRunAdminMixin


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ["key", "description", "amount", "unit", "region", "as_of"]
    list_editable = ["amount"]
    search_fields = ["key", "description"]
    list_filter = ["unit", "region"]


@admin.register(EnvironmentCostSettings)
class EnvironmentCostSettingsAdmin(admin.ModelAdmin):
    list_display = ["environment", "report_link", "cost_tag_key", "tag_value", "availability_zones",
                    "last_fetched_at", "request_count"]
    list_select_related = ["environment"]
    readonly_fields = ["request_count", "last_fetched_at", "last_error_kind", "last_error", "last_error_at"]
    fieldsets = [
        (None, {"fields": ["environment", "cost_tag_key", "cost_tag_value"]}),
        ("Assumptions (the guide's baseline)", {"fields": ["availability_zones", "baseline_ebs_gb",
                                                           "baseline_volume_type", "s3_storage_gb",
                                                           "data_transfer_out_gb"]}),
        ("Cost Explorer cache", {"fields": readonly_fields}),
    ]

    change_list_template = "admin/costs/environmentcostsettings/change_list.html"

    def get_queryset(self, request):
        return access.visible_environments(super().get_queryset(request), request.user)

    @admin.display(description="Tag value")
    def tag_value(self, obj):
        return obj.tag_value

    @admin.display(description="Cost report")
    def report_link(self, obj):
        return format_html('<a href="{}">Report</a>', reverse("admin:costs_report", args=[obj.environment_id]))

    def get_urls(self):
        return [
            path("report/", self.admin_site.admin_view(self.report_index_view), name="costs_report_index"),
            path("report/<int:environment_id>/", self.admin_site.admin_view(self.report_view), name="costs_report"),
        ] + super().get_urls()

    def report_index_view(self, request):
        """Every environment: its estimate and its latest full month of actuals."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        totals = selectors.last_month_totals()
        visible = access.environment_ids(request.user, access.VIEW_ENVIRONMENT)
        rows = [(env, selectors.environment_estimate(environment=env).total_usd, totals.get(env.pk))
                for env in selectors.environments_for_costs() if visible is None or env.pk in visible]
        context = dict(self.admin_site.each_context(request), opts=self.model._meta, title="Costs by environment",
                       rows=rows, runs=selectors.cost_sync_runs_recent())
        return TemplateResponse(request, "admin/costs/report_index.html", context)

    def report_view(self, request, environment_id: int):
        """One environment: actual vs estimate by service, monthly trend chart, spot savings, top projects,
        findings. POST asks for a Cost Explorer sync (forced) and comes back here."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        environment = get_object_or_404(Environment, pk=environment_id)
        access.require_environment_view(request.user, environment.pk)
        if request.method == "POST":
            if not self.has_change_permission(request):
                raise PermissionDenied
            try:
                run = services.cost_sync_request(environment_names=[environment.name], force=True,
                                                 user=request.user, reason="Sync from the cost page")
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)
            else:
                url = reverse("admin:costs_costsyncrun_change", args=[run.pk])
                self.message_user(request, format_html('Cost sync <a href="{}">run {}</a> requested.', url, run.pk))
            return HttpResponseRedirect(request.path)
        report = selectors.environment_cost_report(environment=environment)
        estimate_total = report.estimate.total_usd if environment.kind == Environment.Kind.EKS else None
        chart = monthly_trend_svg([(f"{m.month:%b %Y}", m.total, m.partial) for m in report.months],
                                  estimate=estimate_total, title=f"{environment.name}: monthly cost (USD)")
        categories = [(CATEGORIES[key], amount, report.guide_baseline.get(key))
                      for key, amount in report.estimate.by_category().items()]
        context = dict(
            self.admin_site.each_context(request), opts=self.model._meta, title=f"Costs of {environment.name}",
            environment=environment, report=report, chart=mark_safe(chart),  # built from escaped parts
            categories=categories, data_age=age_text(report.data_age),
            can_sync=environment.kind == Environment.Kind.EKS and self.has_change_permission(request))
        return TemplateResponse(request, "admin/costs/report.html", context)


@admin.register(CostSyncRun)
class CostSyncRunAdmin(JobRunAdminMixin, admin.ModelAdmin):
    list_display = ["id", "status_progress", "forced", "fetched_count", "cached_count", "request_count",
                    "attempt_count", "created_at"]
    list_filter = ["status", "forced"]
    job_result_fields = ("request_count", "fetched_count", "cached_count", "attempt_count")
    fieldsets = [
        (None, {"fields": ["progress_block", "environments", "forced", "fetched_count", "cached_count",
                           "request_count", "attempt_count"]}),
        ("Run", {"fields": ["triggered_by", "reason", "created_at", "started_at", "finished_at",
                            "duration_display", "error_kind"]}),
        ("Error", {"fields": ["error_block"]}),
        ("Log", {"fields": ["log_block"]}),
    ]
    readonly_fields = ["environments", "forced", "fetched_count", "cached_count", "request_count", "attempt_count",
                       *JobRunAdminMixin.job_readonly_fields]
