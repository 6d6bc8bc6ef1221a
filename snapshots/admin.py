"""Admin: the snapshot inventory (per environment), a project's timeline, orphans, over-retention, sync runs and
backup audit reports (trend chart, findings, CSV/JSON downloads, "Run audit now")."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Sum, When
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from deployments import access
from deployments.models import Environment
from jobs.admin import JobRunAdminMixin
from projects.models import Project
from snapshots import charts, rules, selectors, services
from snapshots.models import AuditFinding, AuditReport, Snapshot, SnapshotSource, SnapshotSyncRun
from snapshots.reports import report_csv, report_json

FINDINGS_ON_PAGE = 500


def source_health(environments) -> list[dict]:
    """For each environment and data source: the last error (if any) and the age of the last good data."""
    rows = []
    for environment in environments:
        for source in selectors.sources_for_environment(environment):
            rows.append({"environment": environment, "source": source, "failing": source.failing,
                         "kind": source.get_kind_display()})
    return rows


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    """Read-only inventory; filter by environment for the per-environment list."""

    change_list_template = "admin/snapshots/snapshot/change_list.html"
    list_display = ["key", "environment", "project_link", "volume_name", "state", "size_gib", "started_at",
                    "encrypted", "monthly_cost", "orphan", "sources"]
    list_filter = ["environment", "state", "encrypted", "snapshot_type", "seen_in_aws", "seen_in_cluster"]
    search_fields = ["key", "ebs_snapshot_id", "namespace", "volume_snapshot_name", "project_ref", "project__slug"]
    list_select_related = ["environment", "project"]
    date_hierarchy = "started_at"
    readonly_fields = [field.name for field in Snapshot._meta.fields]

    def get_queryset(self, request):
        return access.visible_environments(super().get_queryset(request).filter(gone_at__isnull=True), request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Project", ordering="project__slug")
    def project_link(self, obj):
        if obj.project_id is None:
            return format_html('<span title="no project matches">— {}</span>', obj.project_ref or "")
        url = reverse("admin:snapshots_snapshot_timeline", args=[obj.project_id])
        suffix = " (deleted)" if obj.project.state == Project.State.DELETED else ""
        return format_html('<a href="{}" title="timeline">{}</a>{}', url, obj.project.slug, suffix)

    @admin.display(description="Orphan", boolean=True)
    def orphan(self, obj):
        return obj.is_orphan

    @admin.display(description="Seen in")
    def sources(self, obj):
        return ", ".join(name for name, seen in (("AWS", obj.seen_in_aws), ("cluster", obj.seen_in_cluster)) if seen)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("timeline/<uuid:project_id>/", view(self.timeline_view), name="snapshots_snapshot_timeline"),
            path("orphans/", view(self.orphans_view), name="snapshots_snapshot_orphans"),
            path("over-retention/", view(self.over_retention_view), name="snapshots_snapshot_over_retention"),
            path("sync/", view(self.sync_view), name="snapshots_snapshot_sync"),
        ] + super().get_urls()

    def _environment_filter(self, request) -> Environment | None:
        value = request.GET.get("environment", "")
        if not value:
            return None
        if not value.isdigit():
            raise Http404("No such environment.")
        environment = get_object_or_404(Environment, pk=int(value))
        access.require_environment_view(request.user, environment.pk)
        return environment

    def _context(self, request, **extra):
        return {**self.admin_site.each_context(request), "opts": self.model._meta, **extra}

    def _check_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied

    def changelist_view(self, request, extra_context=None):
        visible = access.environment_ids(request.user, access.VIEW_ENVIRONMENT)
        environments = [env for env in services.snapshot_environments() if visible is None or env.pk in visible]
        extra = {"source_health": source_health(environments), "now": timezone.now(),
                 "environments": environments, **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)

    def timeline_view(self, request, project_id):
        self._check_view(request)
        project = get_object_or_404(Project.objects.select_related("environment"), pk=project_id)
        access.require(request.user, "projects.view_project", {project.environment_id}, what=project.slug)
        env, now = project.environment, timezone.now()
        snapshots = selectors.project_snapshots(project)
        too_old, too_many = rules.over_retention(snapshots, retention_days=env.snapshot_retention_days,
                                                 max_count=env.max_snapshots_per_project, now=now)
        flagged = set(too_old) | set(too_many)
        points = [charts.TimelinePoint(key=snap.key, volume=snap.volume_name, started_at=snap.started_at,
                                       state=snap.state, size_gib=snap.size_gib, over_retention=index in flagged)
                  for index, snap in enumerate(snapshots) if snap.started_at]
        services_dirs = project.containers.filter(role__in=project.containers.model.SERVICE_ROLES).values_list(
            "directory", flat=True)
        svg = charts.timeline_svg(points, now=now, retention_days=env.snapshot_retention_days,
                                  volumes=rules.project_volume_names(services_dirs))
        rows = [{"snapshot": snap, "over_retention": index in flagged} for index, snap in enumerate(snapshots)]
        return TemplateResponse(request, "admin/snapshots/timeline.html", self._context(
            request, title=f"Snapshot timeline of {project.slug}", project=project, environment=env, svg=svg,
            rows=rows, source_health=source_health([env]), now=now,
            total_cost=sum((snap.monthly_cost for snap in snapshots), 0)))

    def orphans_view(self, request):
        self._check_view(request)
        environment = self._environment_filter(request)
        queryset = access.visible_environments(selectors.orphan_snapshots(environment), request.user)
        total = queryset.aggregate(total=Sum("monthly_cost"))["total"] or 0
        environments = [environment] if environment else services.snapshot_environments()
        return TemplateResponse(request, "admin/snapshots/orphans.html", self._context(
            request, title="Orphan snapshots", snapshots=list(queryset[:2000]), count=queryset.count(),
            total_cost=total, environment=environment, environments=services.snapshot_environments(),
            source_health=source_health(environments), now=timezone.now()))

    def over_retention_view(self, request):
        self._check_view(request)
        environment = self._environment_filter(request)
        now = timezone.now()
        visible = access.environment_ids(request.user, access.VIEW_ENVIRONMENT)
        found = [row for row in selectors.over_retention_snapshots(now=now, environment=environment)
                 if visible is None or row.snapshot.environment_id in visible]
        environments = [environment] if environment else services.snapshot_environments()
        return TemplateResponse(request, "admin/snapshots/over_retention.html", self._context(
            request, title="Snapshots over retention", rows=found[:2000], count=len(found),
            total_cost=sum((row.snapshot.monthly_cost for row in found), 0), environment=environment,
            environments=services.snapshot_environments(), source_health=source_health(environments), now=now))

    def sync_view(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("snapshots.add_snapshotsyncrun"):
            raise PermissionDenied
        environment = self._environment_filter(request)
        run = services.snapshot_sync_request(environment=environment, user=request.user,
                                             reason="Sync now (admin)")
        messages.info(request, format_html('Snapshot sync <a href="{}">run {}</a> requested.',
                                           reverse("admin:snapshots_snapshotsyncrun_change", args=[run.pk]), run.pk))
        return HttpResponseRedirect(reverse("admin:snapshots_snapshot_changelist"))


@admin.register(SnapshotSyncRun)
class SnapshotSyncRunAdmin(JobRunAdminMixin, admin.ModelAdmin):
    list_display = ["id", "status_progress", "environment", "snapshots_total", "snapshots_new", "snapshots_gone",
                    "orphan_count", "created_at", "duration_display"]
    list_filter = ["status", "environment"]
    list_select_related = ["environment", "triggered_by"]
    job_result_fields = ("snapshots_total", "snapshots_new", "snapshots_gone", "orphan_count")
    readonly_fields = [*JobRunAdminMixin.job_readonly_fields, "environment", "snapshots_total", "snapshots_new",
                       "snapshots_gone", "orphan_count", "attempts"]
    fieldsets = [
        (None, {"fields": ["progress_block", "environment", "triggered_by", "reason"]}),
        ("Result", {"fields": ["snapshots_total", "snapshots_new", "snapshots_gone", "orphan_count", "attempts"]}),
        ("Timing", {"fields": ["created_at", "started_at", "finished_at", "duration_display"]}),
        ("Error", {"fields": ["error_kind", "error_block"]}),
        ("Log", {"fields": ["log_block"]}),
    ]


@admin.register(AuditReport)
class AuditReportAdmin(JobRunAdminMixin, admin.ModelAdmin):
    """Audit reports: the page shows the trend over past reports, data sources and findings; downloads."""

    change_form_template = "admin/snapshots/auditreport/change_form.html"
    change_list_template = "admin/snapshots/auditreport/change_list.html"
    list_display = ["id", "status_progress", "evaluated_at", "compliant_count", "non_compliant_count",
                    "unknown_count", "compliance", "triggered_by", "duration_display"]
    list_filter = ["status"]
    list_select_related = ["triggered_by"]
    job_result_fields = ("compliant_count", "non_compliant_count", "unknown_count")
    readonly_fields = [*JobRunAdminMixin.job_readonly_fields, "evaluated_at", "compliant_count",
                       "non_compliant_count", "unknown_count", "s3_uri"]
    fieldsets = [
        (None, {"fields": ["progress_block", "triggered_by", "reason", "evaluated_at"]}),
        ("Result", {"fields": ["compliant_count", "non_compliant_count", "unknown_count", "s3_uri"]}),
        ("Timing", {"fields": ["created_at", "started_at", "finished_at", "duration_display"]}),
        ("Error", {"fields": ["error_kind", "error_block"]}),
        ("Log", {"fields": ["log_block"]}),
    ]

    @admin.display(description="Compliant")
    def compliance(self, obj):
        percent = obj.compliance_percent
        return "-" if percent is None else f"{percent} %"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("run/", view(self.run_view), name="snapshots_auditreport_run"),
            path("<int:object_id>/download.<str:fmt>", view(self.download_view),
                 name="snapshots_auditreport_download"),
        ] + super().get_urls()

    def _trend(self) -> charts.SafeString:
        return charts.trend_svg([
            charts.TrendPoint(label=f"Report {r.pk}", evaluated_at=r.evaluated_at, compliant=r.compliant_count,
                              non_compliant=r.non_compliant_count, unknown=r.unknown_count)
            for r in selectors.audit_trend()])

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, extra_context={"trend_svg": self._trend(), **(extra_context or {})})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        report = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if report is not None:
            result = request.GET.get("result", "")
            findings = AuditFinding.objects.filter(report=report)
            if result in AuditFinding.Result.values:
                findings = findings.filter(result=result)
            else:
                result = ""
            # Problems first: NON_COMPLIANT, then UNKNOWN, then COMPLIANT.
            findings = findings.order_by(Case(When(result="NON_COMPLIANT", then=0), When(result="UNKNOWN", then=1),
                                              default=2), "control", "environment_name", "resource")
            extra.update(trend_svg=self._trend(), findings=list(findings[:FINDINGS_ON_PAGE]),
                         findings_shown_max=FINDINGS_ON_PAGE, result_filter=result,
                         results=AuditFinding.Result.choices,
                         data_sources=sorted(report.data_sources.items()),
                         controls=services.audit.CONTROLS)
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def run_view(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("snapshots.add_auditreport"):
            raise PermissionDenied
        report = services.audit_request(user=request.user, reason="Run audit now (admin)")
        messages.info(request, format_html('Backup audit <a href="{}">report {}</a> requested.',
                                           reverse("admin:snapshots_auditreport_change", args=[report.pk]), report.pk))
        return HttpResponseRedirect(reverse("admin:snapshots_auditreport_change", args=[report.pk]))

    def download_view(self, request, object_id, fmt):
        report = self.get_object(request, str(object_id))
        if report is None or fmt not in ("csv", "json"):
            raise Http404("No such report or format.")
        if not self.has_view_permission(request, report):
            raise PermissionDenied
        body, content_type = (report_csv(report), "text/csv") if fmt == "csv" else (
            report_json(report), "application/json")
        response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="backup-audit-{report.pk}.{fmt}"'
        return response


@admin.register(SnapshotSource)
class SnapshotSourceAdmin(admin.ModelAdmin):
    """Health of each data source (read-only)."""

    list_display = ["environment", "kind", "last_success_at", "last_attempt_at", "last_error_kind", "last_error",
                    "item_count"]
    list_filter = ["kind", "last_error_kind"]
    list_select_related = ["environment"]

    def get_queryset(self, request):
        return access.visible_environments(super().get_queryset(request), request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
