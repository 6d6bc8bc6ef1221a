from django.contrib import admin
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
    fields = ["directory", "role", "image", "port", "cpu_request", "cpu_limit", "memory_request", "memory_limit",
              "data_volume_size"]


@admin.register(Project)
class ProjectAdmin(EnvironmentScopedAdminMixin, ServiceAdminMixin, admin.ModelAdmin):
    """Projects and their containers; a save or delete (inlines too) renders the project's environment."""

    list_display = ["slug", "name", "environment", "owner", "state_badge", "namespace", "host_links", "volume_size",
                    "last_activity_at"]
    list_filter = ["state", "environment", "containers__role"]
    search_fields = ["slug", "name", "owner", "id"]
    list_select_related = ["environment"]
    readonly_fields = ["id", "namespace", "host_links", "live_status_link", "audit_trail", "created_at", "updated_at"]
    inlines = [ContainerInline]
    date_hierarchy = "last_activity_at"
    fieldsets = [
        (None, {"fields": ["name", "slug", "environment", "owner", "state"]}),
        ("Storage", {"fields": ["volume_size", "restore_snapshot_id"]}),
        ("Kubernetes", {"fields": ["id", "namespace", "host_links", "live_status_link"]}),
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

    @admin.display(description="Hosts")
    def host_links(self, obj):
        if not obj.pk or not obj.environment_id:
            return "-"
        scheme = obj.environment.scheme
        containers = [c for c in obj.containers.all() if not c.is_service]
        if not containers:
            return "-"
        return format_html_join(
            mark_safe("<br>"), '<a href="{}://{}" rel="noopener" target="_blank">{}</a>',
            ((scheme, obj.host_for(c.directory), obj.host_for(c.directory)) for c in containers),
        )
