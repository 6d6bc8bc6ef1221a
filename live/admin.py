"""Admin: the live view of each environment's cluster and its diagnostics, per environment and per project."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from deployments import access
from deployments.models import Environment
from jobs.admin import JobRunAdminMixin
from live import services
from live.checks import CHECK_TITLES
from live.models import LiveRefreshRun, LiveStatus
from projects.models import Project


def _age(since) -> str:
    if since is None:
        return "never"
    seconds = int((timezone.now() - since).total_seconds())
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def _grouped_verdicts(verdicts: list[dict]) -> list[tuple[str, list[dict]]]:
    return [(title, [v for v in verdicts if v["check"] == check]) for check, title in CHECK_TITLES.items()]


@admin.register(LiveStatus)
class LiveStatusAdmin(admin.ModelAdmin):
    list_display = ["environment", "view_link", "fetched_at", "problem_count", "last_error"]
    list_select_related = ["environment"]
    readonly_fields = ["environment", "fetched_at", "problem_count", "last_error", "last_error_at"]
    exclude = ["report"]
    change_list_template = "admin/live/livestatus/change_list.html"

    def get_queryset(self, request):
        return access.visible_environments(super().get_queryset(request), request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Live view")
    def view_link(self, obj):
        return format_html('<a href="{}">Open</a>', reverse("admin:live_environment", args=[obj.environment_id]))

    def get_urls(self):
        return [
            path("clusters/", self.admin_site.admin_view(self.index_view), name="live_index"),
            path("environment/<int:environment_id>/", self.admin_site.admin_view(self.environment_view),
                 name="live_environment"),
            path("project/<uuid:project_id>/", self.admin_site.admin_view(self.project_view), name="live_project"),
        ] + super().get_urls()

    def _context(self, request, **extra):
        return dict(self.admin_site.each_context(request), opts=self.model._meta, **extra)

    def index_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        environments = access.visible_environments(
            Environment.objects.exclude(kind=Environment.Kind.COMPOSE).select_related("live_status"), request.user,
            "pk")
        return TemplateResponse(request, "admin/live/index.html",
                                self._context(request, title="Live cluster view", environments=environments))

    def _status(self, request, environment):
        """A fresh read unless ?cached=1; a failed read keeps the last view and records the error."""
        if request.GET.get("cached"):
            return LiveStatus.objects.filter(environment=environment).first() or LiveStatus(environment=environment)
        return services.live_refresh(environment=environment)

    def environment_view(self, request, environment_id: int):
        if not self.has_view_permission(request):
            raise PermissionDenied
        environment = get_object_or_404(Environment, pk=environment_id)
        access.require_environment_view(request.user, environment.pk)
        status = self._status(request, environment)
        report = status.report or {}
        projects = {str(p.id): p for p in Project.objects.filter(environment=environment)}
        return TemplateResponse(request, "admin/live/environment.html", self._context(
            request, title=f"Live view of {environment.name}", environment=environment, status=status,
            report=report, age=_age(status.fetched_at), checks=_grouped_verdicts(report.get("verdicts", [])),
            projects=projects))

    def project_view(self, request, project_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        project = get_object_or_404(Project.objects.select_related("environment"), pk=project_id)
        access.require(request.user, "projects.view_project", {project.environment_id}, what=project.slug)
        status = self._status(request, project.environment)
        report = status.report or {}
        verdicts = [v for v in report.get("verdicts", []) if v["project_id"] == str(project.id)]
        namespaces = [row for row in report.get("namespaces", []) if row["namespace"] == project.namespace]
        apps = [row for row in report.get("apps", []) if row["name"].endswith(project.namespace)]
        return TemplateResponse(request, "admin/live/project.html", self._context(
            request, title=f"Live status of {project.slug}", project=project, status=status, report=report,
            age=_age(status.fetched_at), verdicts=verdicts, namespaces=namespaces, apps=apps))


@admin.register(LiveRefreshRun)
class LiveRefreshRunAdmin(JobRunAdminMixin, admin.ModelAdmin):
    list_display = ["id", "status_progress", "refreshed_count", "failed_count", "problem_count", "attempt_count",
                    "created_at"]
    list_filter = ["status"]
    job_result_fields = ("refreshed_count", "failed_count", "problem_count", "attempt_count")
    result_fields = ["environments", "refreshed_count", "failed_count", "problem_count", "attempt_count"]
    fieldsets = [
        (None, {"fields": ["progress_block", *result_fields]}),
        ("Run", {"fields": ["triggered_by", "reason", "created_at", "started_at", "finished_at",
                            "duration_display", "error_kind"]}),
        ("Error", {"fields": ["error_block"]}),
        ("Log", {"fields": ["log_block"]}),
    ]
    readonly_fields = [*result_fields, *JobRunAdminMixin.job_readonly_fields]
