from django.contrib import admin
from django.db.models import Count, Q
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from deployments import services
from deployments.forms import EnvironmentForm, SecretForm
from deployments.models import Environment, NodeGroup, Secret

# Secret values arrive in POST field names ending in "value"; Django's error reports must not show them.
sensitive_value = method_decorator(sensitive_post_parameters())


class SecretValueAdminMixin:
    """Stores the write-only value of SecretForm through the service, encrypted, never echoing it."""

    def _store_secret(self, form, secret: Secret) -> None:
        value = form.new_value()
        if value is not None:
            services.secret_store_value(secret=secret, value=value)
        else:
            secret.save()


class NodeGroupInline(admin.TabularInline):
    model = NodeGroup
    extra = 0
    fields = ["name", "capacity_type", "instance_types", "min_size", "desired_size", "max_size", "disk_size_gb",
              "labels", "taints", "hosts"]


class SecretInline(admin.TabularInline):
    model = Secret
    form = SecretForm
    extra = 0
    fields = ["secret_name", "key", "description", "value", "generate", "fingerprint", "version", "last_rotated_at"]
    readonly_fields = ["fingerprint", "version", "last_rotated_at"]


@admin.register(Environment)
class EnvironmentAdmin(SecretValueAdminMixin, admin.ModelAdmin):
    form = EnvironmentForm
    list_display = ["name", "kind", "app_domain", "tls_mode", "gitops_tool", "protected", "active_projects",
                    "node_group_count", "needs_render", "updated_at"]
    list_filter = ["kind", "gitops_tool", "protected", "tls_mode", "needs_render"]
    search_fields = ["name", "app_domain", "eks_cluster_name", "aws_account_id"]
    readonly_fields = ["needs_render", "created_at", "updated_at"]
    inlines = [NodeGroupInline, SecretInline]
    fieldsets = [
        (None, {"fields": ["name", "kind", "protected", "gitops_tool"]}),
        ("Domain and TLS", {"fields": ["app_domain", "ingress_class", "tls_mode", "acme_email",
                                       "cloudflare_api_token_secret"]}),
        ("Storage and snapshots", {"fields": ["storage_class_name", "storage_provisioner", "storage_encrypted",
                                              "volume_snapshot_class", "hibernation_idle_minutes",
                                              "snapshot_retention_days", "max_snapshots_per_project"]}),
        ("Images and backend", {"fields": ["image_registry", "image_tag", "backend_replicas",
                                           ("backend_cpu_request", "backend_cpu_limit"),
                                           ("backend_memory_request", "backend_memory_limit")]}),
        ("AWS", {"fields": ["aws_account_id", "aws_region", "eks_cluster_name"],
                 "description": "Required for EKS environments."}),
        ("Sealed Secrets", {"fields": ["sealed_secrets_certificate"], "classes": ["collapse"],
                            "description": "Clusters without AWS: the controller's public certificate."}),
        ("Status", {"fields": ["needs_render", "created_at", "updated_at"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _active_projects=Count("projects", filter=Q(projects__state="active"), distinct=True),
            _node_groups=Count("node_groups", distinct=True),
        )

    @admin.display(description="Active projects", ordering="_active_projects")
    def active_projects(self, obj):
        return obj._active_projects

    @admin.display(description="Node groups", ordering="_node_groups")
    def node_group_count(self, obj):
        return obj._node_groups

    @sensitive_value
    def changeform_view(self, request, *args, **kwargs):
        return super().changeform_view(request, *args, **kwargs)

    def save_model(self, request, obj, form, change):
        obj.needs_render = True
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        if formset.model is not Secret:
            return super().save_formset(request, form, formset, change)
        formset.save(commit=False)  # sets the environment on new rows and collects deletions
        for obj in formset.deleted_objects:
            obj.delete()
        for inline_form in formset.forms:
            if inline_form in formset.deleted_forms or not inline_form.has_changed():
                continue
            self._store_secret(inline_form, inline_form.instance)
        formset.save_m2m()


@admin.register(NodeGroup)
class NodeGroupAdmin(admin.ModelAdmin):
    list_display = ["name", "environment", "capacity_type", "instance_types", "sizes", "disk_size_gb", "hosts"]
    list_filter = ["capacity_type", "hosts", "environment"]
    search_fields = ["name", "environment__name", "instance_types", "labels"]
    list_select_related = ["environment"]
    fieldsets = [
        (None, {"fields": ["environment", "name", "hosts"]}),
        ("Capacity", {"fields": ["capacity_type", "instance_types", ("min_size", "desired_size", "max_size"),
                                 "disk_size_gb"]}),
        ("Scheduling", {"fields": ["labels", "taints"]}),
    ]

    @admin.display(description="Min / desired / max")
    def sizes(self, obj):
        return f"{obj.min_size} / {obj.desired_size} / {obj.max_size}"


@admin.register(Secret)
class SecretAdmin(SecretValueAdminMixin, admin.ModelAdmin):
    form = SecretForm
    list_display = ["__str__", "environment", "description", "fingerprint", "version", "last_rotated_at"]
    list_filter = ["environment", "secret_name"]
    search_fields = ["key", "secret_name", "description", "environment__name"]
    list_select_related = ["environment"]
    readonly_fields = ["fingerprint", "version", "last_rotated_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["environment", "secret_name", "key", "description"]}),
        ("Value (write-only)", {"fields": ["value", "generate", "fingerprint", "version", "last_rotated_at"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    @sensitive_value
    def changeform_view(self, request, *args, **kwargs):
        return super().changeform_view(request, *args, **kwargs)

    def save_model(self, request, obj, form, change):
        self._store_secret(form, obj)
        services.environment_mark_dirty(environment_id=obj.environment_id)
