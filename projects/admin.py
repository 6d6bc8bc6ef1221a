import uuid

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from deployments.adminkit import (
    EnvironmentScopedAdminMixin,
    GroupedKeysPaginator,
    PlannedRowsMixin,
    ServiceAdminMixin,
    audit_link,
)
from deployments.forms import EmptyFormOnceInlineFormSet
from jobs.admin import JobRunAdminMixin
from projects import services
from projects.forms import ContainerInlineFormSet
from projects.models import Container, HibernationRun, HibernationVolume, Project
from projects.selectors import project_list_for_admin


def hibernation_run_link(run: HibernationRun):
    url = reverse("admin:projects_hibernationrun_change", args=[run.pk])
    return format_html('<a href="{}">hibernation run {}</a>', url, run.pk)


class ContainerInline(EnvironmentScopedAdminMixin, admin.TabularInline):
    model = Container
    formset = ContainerInlineFormSet
    extra = 0
    fields = ["directory", "role", "image", "port", "start_command", "env_vars", "probe", "probe_path",
              "startup_timeout_seconds", "cpu_request", "cpu_limit", "memory_request", "memory_limit",
              "data_volume_size"]


class ContainerRoleFilter(admin.SimpleListFilter):
    """Projects with at least one container of a role, as one EXISTS subquery (no join, no DISTINCT) that the
    container_role_project index answers alone."""

    title = "container role"
    parameter_name = "role"

    def lookups(self, request, model_admin):
        return Container.Role.choices

    def queryset(self, request, queryset):
        value = self.value()
        if value not in Container.Role.values:
            return queryset
        return queryset.filter(Exists(Container.objects.filter(project=OuterRef("pk"), role=value)))


class EnvironmentSlugPaginator(GroupedKeysPaginator):
    """Projects in the list's default order (environment name, slug): keys per environment by slug."""

    group, group_field, within = "environment", "name", ("slug", "-pk")


@admin.register(Project)
class ProjectAdmin(PlannedRowsMixin, EnvironmentScopedAdminMixin, ServiceAdminMixin, admin.ModelAdmin):
    """Projects and their containers; a save or delete (inlines too) renders the project's environment."""

    list_display = ["slug", "name", "environment", "owner", "state_badge", "namespace", "host_links", "volume_size",
                    "last_activity_at"]
    list_filter = ["state", "environment", ContainerRoleFilter, "last_activity_at"]
    # The id matches exactly (get_search_results): "icontains" on a UUID casts every row to text.
    search_fields = ["slug", "name", "owner"]
    list_select_related = ["environment"]
    list_per_page = 50
    # Page 200 costs what page 1 does, filtered or not: a page's keys come from the environments it overlaps, each
    # through the (environment_id, slug) index (deployments.adminkit.GroupedKeysPaginator).
    paginator = EnvironmentSlugPaginator
    show_full_result_count = False  # a filtered page does not count all 10,000 projects again
    readonly_fields = ["id", "namespace", "host_links", "live_status_link", "git_folder_link", "runs_link",
                       "snapshots_link", "audit_trail", "created_at", "updated_at", "hibernation_block",
                       "volume_restores_block"]
    inlines = [ContainerInline]
    actions = ["hibernate_projects", "wake_projects"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "environment", "owner", "state", "hibernation_block"]}),
        ("Storage", {"fields": ["volume_size", "restore_snapshot_id", "volume_restores_block"]}),
        ("Kubernetes", {"fields": ["id", "namespace", "host_links", "live_status_link"]}),
        ("Where it ships", {"fields": ["git_folder_link", "runs_link", "snapshots_link"]}),
        ("Activity", {"fields": ["last_activity_at", "created_at", "updated_at", "audit_trail"]}),
    ]

    inline_services = {
        Container: (lambda form, obj, user: services.container_save(container=obj, user=user),
                    lambda obj, user: services.container_delete(container=obj, user=user)),
    }

    def service_save(self, request, obj, form):
        services.project_save(project=obj, user=request.user)

    def service_delete(self, request, obj):
        services.project_delete(project=obj, user=request.user)

    def get_queryset(self, request):
        # One query for projects + environments and one for all their containers, however many projects.
        return self.scope_queryset(request, project_list_for_admin())

    def get_search_results(self, request, queryset, search_term):
        """Slug, name and owner contain the term; a term that is a project id (UUID) also finds that project."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            project_id = uuid.UUID(search_term.strip())
        except ValueError:
            return results, may_have_duplicates
        return results | queryset.filter(pk=project_id), may_have_duplicates

    @admin.display(description="Namespace")
    def namespace(self, obj):
        return obj.namespace if obj.pk else "-"

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj):
        if obj.hibernation_error:
            return f"{obj.get_state_display()} (hibernation failed)"
        return obj.get_state_display()

    @admin.display(description="Audit trail")
    def audit_trail(self, obj):
        return audit_link(project=obj.pk) if obj.pk else "-"

    @admin.display(description="Hibernation")
    def hibernation_block(self, obj):
        """The last hibernation run and, when it failed, why (the namespace and its volumes were kept)."""
        if not obj.pk:
            return "-"
        run = obj.hibernation_runs.order_by("-created_at", "-pk").first()
        if run is None:
            return "Never hibernated with snapshots."
        if obj.hibernation_error:
            return format_html("Hibernation failed, nothing was deleted: {} ({})", obj.hibernation_error,
                               hibernation_run_link(run))
        return format_html("Last: {} ({})", hibernation_run_link(run), run.get_status_display())

    @admin.display(description="Volume restores")
    def volume_restores_block(self, obj):
        """The volumes the last wake restored (kept while the project is rendered: a PVC's dataSource is
        immutable)."""
        restores = list(obj.volume_restores.all()) if obj.pk else []
        if not restores:
            return "-"
        return format_html_join(mark_safe("<br>"), "{} ← {} ({})",
                                ((r.volume_name, r.snapshot_handle, r.source_snapshot_name) for r in restores))

    @admin.action(description="Hibernate selected projects (snapshot every volume first; Minikube: stop)",
                  permissions=["change"])
    def hibernate_projects(self, request, queryset):
        for project in queryset:
            try:
                run = services.project_hibernate(project=project, user=request.user)
            except ValidationError as exc:
                self.message_user(request, f"{project}: {' '.join(exc.messages)}", messages.ERROR)
                continue
            if run is None:
                self.message_user(request, f"{project} stops: its Deployments are rendered with zero replicas; "
                                           "the namespace and volumes stay.", messages.SUCCESS)
            else:
                self.message_user(request, format_html(
                    "{}: {} queued. It commits a VolumeSnapshot of every volume and removes the namespace only "
                    "once all are ready.", project, hibernation_run_link(run)), messages.SUCCESS)

    @admin.action(description="Wake selected projects (restore every volume from the newest snapshot set)",
                  permissions=["change"])
    def wake_projects(self, request, queryset):
        for project in queryset:
            try:
                services.project_wake(project=project, user=request.user)
            except ValidationError as exc:
                self.message_user(request, f"{project}: {' '.join(exc.messages)}", messages.ERROR)
                continue
            self.message_user(request, f"{project} is waking: a render was requested.", messages.SUCCESS)

    @admin.display(description="Live status")
    def live_status_link(self, obj):
        """Link to the project's live status (namespace, diagnostics) when the live view is installed."""
        if not obj.pk:
            return "-"
        try:
            url = reverse("admin:live_project", args=[obj.pk])
        except NoReverseMatch:  # the live app is not installed
            return "-"
        return format_html('<a href="{}">Cluster status and diagnostics</a>', url)

    @admin.display(description="Folder in git")
    def git_folder_link(self, obj):
        """The project's folder in the GitOps repository (GITOPS_BROWSE_URL with {path}); hibernated and deleted
        projects have none (README: the GitOps tree)."""
        if not obj.pk or not obj.environment_id:
            return "-"
        if not obj.is_rendered:
            return format_html('<span class="muted">none while {} (Argo CD / Flux pruned the namespace)</span>',
                               obj.get_state_display().lower())
        folder = f"environments/{obj.environment.name}/projects/{obj.namespace}/"
        template = getattr(settings, "GITOPS_BROWSE_URL", "")
        if not template:
            return format_html("<code>{}</code>", folder)
        return format_html('<a href="{}" rel="noopener" target="_blank"><code>{}</code></a>',
                           template.replace("{path}", folder), folder)

    @admin.display(description="Render runs")
    def runs_link(self, obj):
        if not obj.pk or not obj.environment_id:
            return "-"
        url = reverse("admin:deployments_renderrun_changelist") + f"?environments__id__exact={obj.environment_id}"
        return format_html('<a href="{}">Runs of {}</a>', url, obj.environment.name)

    @admin.display(description="Snapshots")
    def snapshots_link(self, obj):
        if not obj.pk:
            return "-"
        try:
            url = reverse("admin:snapshots_snapshot_timeline", args=[obj.pk])
        except NoReverseMatch:  # the snapshots app is not installed
            return "-"
        return format_html('<a href="{}">Snapshot timeline</a>', url)

    @admin.display(description="Hosts")
    def host_links(self, obj):
        if not obj.pk or not obj.environment_id:
            return "-"
        if obj.state != Project.State.ACTIVE:
            # Hibernated (pruned or, without VolumeSnapshots, stopped at zero replicas): nothing answers there.
            return format_html('<span class="muted">none while {}</span>', obj.get_state_display().lower())
        scheme = obj.environment.scheme
        listed = getattr(obj, "listed_containers", None)  # prefetched by project_list_for_admin
        containers = [c for c in (obj.containers.all() if listed is None else listed) if not c.is_service]
        if not containers:
            return "-"
        return format_html_join(
            mark_safe("<br>"), '<a href="{}://{}" rel="noopener" target="_blank">{}</a>',
            ((scheme, obj.host_for(c.directory), obj.host_for(c.directory)) for c in containers),
        )


class HibernationVolumeInline(admin.TabularInline):
    model = HibernationVolume
    formset = EmptyFormOnceInlineFormSet
    extra = 0
    fields = readonly_fields = ["volume_name", "volume_snapshot_name", "volume_snapshot_content_name",
                                "snapshot_handle", "ready_at"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(HibernationRun)
class HibernationRunAdmin(PlannedRowsMixin, JobRunAdminMixin, admin.ModelAdmin):
    """Hibernation runs: the live progress, the snapshot set (one row per volume) and the two render runs."""

    list_display = ["id", "status_progress", "project", "stamp", "created_at", "duration_display"]
    list_filter = ["status", "project__environment"]
    list_select_related = ["project", "triggered_by"]
    search_fields = ["project__slug", "project__id", "stamp"]
    inlines = [HibernationVolumeInline]
    actions = ["wake_from_set"]
    readonly_fields = [*JobRunAdminMixin.job_readonly_fields, "project", "stamp", "timeout_seconds",
                       "snapshot_render_run", "prune_render_run"]
    fieldsets = [
        (None, {"fields": ["progress_block", "project", "stamp", "timeout_seconds", "triggered_by", "reason"]}),
        ("Renders", {"fields": ["snapshot_render_run", "prune_render_run"]}),
        ("Timing", {"fields": ["created_at", "started_at", "finished_at", "duration_display"]}),
        ("Error", {"fields": ["error_kind", "error_block"]}),
        ("Log", {"fields": ["log_block"]}),
    ]

    def get_actions(self, request):
        # Runs are read-only history, but waking from a chosen set is a change of the project.
        actions = super().get_actions(request)
        if not request.user.has_perm("projects.change_project"):
            actions.pop("wake_from_set", None)
        return actions

    @admin.action(description="Wake the project from this snapshot set")
    def wake_from_set(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one snapshot set.", messages.ERROR)
            return
        run = queryset.select_related("project").get()
        try:
            services.project_wake(project=run.project, user=request.user, snapshot_set=run)
        except ValidationError as exc:
            self.message_user(request, f"{run.project}: {' '.join(exc.messages)}", messages.ERROR)
            return
        self.message_user(request, f"{run.project} is waking from the snapshots of {run.stamp}.", messages.SUCCESS)
