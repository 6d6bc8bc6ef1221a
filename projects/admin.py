import uuid

from django.conf import settings
from django.contrib import admin
from django.db.models import Exists, OuterRef
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from deployments.adminkit import EnvironmentScopedAdminMixin, ServiceAdminMixin, audit_link
from projects import services
from projects.forms import ContainerInlineFormSet
from projects.models import Container, Project
from projects.selectors import project_list_for_admin


class ContainerInline(EnvironmentScopedAdminMixin, admin.TabularInline):
    model = Container
    formset = ContainerInlineFormSet
    extra = 0
    fields = ["directory", "role", "image", "port", "start_command", "env_vars", "probe", "probe_path",
              "startup_timeout_seconds", "cpu_request", "cpu_limit", "memory_request", "memory_limit",
              "data_volume_size"]


class ContainerRoleFilter(admin.SimpleListFilter):
    """Projects with at least one container of a role, as one EXISTS subquery (no join, no DISTINCT)."""

    title = "container role"
    parameter_name = "role"

    def lookups(self, request, model_admin):
        return Container.Role.choices

    def queryset(self, request, queryset):
        value = self.value()
        if value not in Container.Role.values:
            return queryset
        return queryset.filter(Exists(Container.objects.filter(project=OuterRef("pk"), role=value)))


@admin.register(Project)
class ProjectAdmin(EnvironmentScopedAdminMixin, ServiceAdminMixin, admin.ModelAdmin):
    """Projects and their containers; a save or delete (inlines too) renders the project's environment."""

    list_display = ["slug", "name", "environment", "owner", "state_badge", "namespace", "host_links", "volume_size",
                    "last_activity_at"]
    list_filter = ["state", "environment", ContainerRoleFilter, "last_activity_at"]
    # The id matches exactly (get_search_results): "icontains" on a UUID casts every row to text.
    search_fields = ["slug", "name", "owner"]
    list_select_related = ["environment"]
    list_per_page = 50
    show_full_result_count = False  # a filtered page does not count all 10,000 projects again
    readonly_fields = ["id", "namespace", "host_links", "live_status_link", "git_folder_link", "runs_link",
                       "snapshots_link", "audit_trail", "created_at", "updated_at"]
    inlines = [ContainerInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "environment", "owner", "state"]}),
        ("Storage", {"fields": ["volume_size", "restore_snapshot_id"]}),
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
        return obj.get_state_display()

    @admin.display(description="Audit trail")
    def audit_trail(self, obj):
        return audit_link(project=obj.pk) if obj.pk else "-"

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
        if not obj.is_rendered:
            return format_html('<span class="muted">none while {}</span>', obj.get_state_display().lower())
        scheme = obj.environment.scheme
        containers = [c for c in obj.containers.all() if not c.is_service]
        if not containers:
            return "-"
        return format_html_join(
            mark_safe("<br>"), '<a href="{}://{}" rel="noopener" target="_blank">{}</a>',
            ((scheme, obj.host_for(c.directory), obj.host_for(c.directory)) for c in containers),
        )
