import html

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from deployments import changes, compose, runs, selectors, services
from deployments.adminkit import (
    EnvironmentScopedAdminMixin,
    PlannedRowsMixin,
    ServiceAdminMixin,
    audit_link,
    diff_file_list,
    diff_html,
    run_link,
)
from deployments.forms import EmptyFormOnceInlineFormSet, EnvironmentForm, EnvironmentMoveForm, SecretForm
from deployments.models import Environment, NodeGroup, RenderRun, Secret
from deployments.secrets import crypto
from jobs.admin import JobRunAdminMixin

# Files per page of a preview's diff: the first screen of a never-rendered environment diffs this many files, not
# the whole tree (the file list is always complete).
PREVIEW_PAGE_FILES = 200


def preview_files_html(preview) -> str:
    """The complete file list of a preview as ``<li>`` items ("+" added, "~" changed, "−" deleted), made in
    Python: a never-rendered environment of 5,000 projects lists 40,000 files, too many for a template loop.
    ``html.escape`` is what Django's ``escape`` applies."""
    items = [*(f"<li>+ {html.escape(path)}</li>" for path in preview.added),
             *(f"<li>~ {html.escape(path)}</li>" for path in preview.changed),
             *(f"<li>&minus; {html.escape(path)}</li>" for path in preview.deleted)]
    return mark_safe("".join(items))  # every path escaped above


# Secret values arrive in POST field names ending in "value"; Django's error reports must not show them.
sensitive_value = method_decorator(sensitive_post_parameters())


def _secret_inline_save(form, secret: Secret, user) -> None:
    value = form.new_value()
    if value is not None:
        services.secret_set_value(secret=secret, value=value, user=user)
    else:
        services.secret_save(secret=secret, user=user)  # keeps the value; reseals when the name changed


class NodeGroupInline(EnvironmentScopedAdminMixin, admin.TabularInline):
    model = NodeGroup
    formset = EmptyFormOnceInlineFormSet
    extra = 0
    fields = ["name", "capacity_type", "instance_types", "min_size", "desired_size", "max_size", "disk_size_gb",
              "labels", "taints", "hosts"]


class SecretInline(EnvironmentScopedAdminMixin, admin.TabularInline):
    model = Secret
    formset = EmptyFormOnceInlineFormSet
    form = SecretForm
    extra = 0
    fields = ["secret_name", "key", "description", "value", "generate", "fingerprint", "version", "last_rotated_at"]
    readonly_fields = ["fingerprint", "version", "last_rotated_at"]


@admin.register(Environment)
class EnvironmentAdmin(PlannedRowsMixin, EnvironmentScopedAdminMixin, ServiceAdminMixin, admin.ModelAdmin):
    form = EnvironmentForm
    change_form_template = "admin/deployments/environment/change_form.html"
    actions = ["render_and_commit", "preview_diff"]
    list_display = ["name", "kind", "app_domain", "tls_mode", "gitops_tool", "protected_display", "active_projects",
                    "node_group_count", "render_state", "updated_at"]
    list_filter = ["kind", "gitops_tool", "protected", "tls_mode", "needs_render"]
    search_fields = ["name", "app_domain", "eks_cluster_name", "aws_account_id"]
    readonly_fields = ["render_state", "created_at", "updated_at", "recent_runs", "compose_overview", "audit_trail"]
    inlines = [NodeGroupInline, SecretInline]
    compose_fieldsets = [
        ("Docker Compose server", {
            "fields": ["compose_overview", "server_ip", ("server_ram_gb", "server_disk_gb"), "server_monthly_price",
                       "age_recipient", "acme_challenge", "deploy_interval_minutes"],
            "description": "The guide's Path 1: one server runs Studio with Docker Compose and Traefik, and follows "
                           "this environment's folder in the GitOps repository with a systemd timer."}),
        ("Database backups", {
            "fields": ["backup_schedule", "backup_retention_days", "backup_s3_bucket", "backup_s3_prefix",
                       "backup_s3_region"],
            "description": "pg_dump with gzip on the server, kept for the retention period, optionally uploaded "
                           "to S3."}),
    ]
    fieldsets = [
        (None, {"fields": ["name", "kind", "protected", "gitops_tool"]}),
        ("Domain and TLS", {"fields": ["app_domain", "ingress_class", "ingress_controller_namespace", "tls_mode",
                                       "acme_email", "cloudflare_api_token_secret"]}),
        ("Storage and snapshots", {"fields": ["storage_class_name", "storage_provisioner", "storage_encrypted",
                                              "volume_snapshot_class", "hibernation_idle_minutes",
                                              "snapshot_retention_days", "max_snapshots_per_project"]}),
        ("Images and backend", {"fields": ["image_registry", "image_tag", "backend_replicas",
                                           ("backend_cpu_request", "backend_cpu_limit"),
                                           ("backend_memory_request", "backend_memory_limit"),
                                           "backend_readiness_path", "datastore_mode"]}),
        ("Cluster add-ons", {"fields": ["disabled_addons"], "classes": ["collapse"],
                             "description": "Add-ons the cluster already runs (the tree installs the others)."}),
        ("AWS", {"fields": ["aws_account_id", "aws_region", "eks_cluster_name"],
                 "description": "Required for EKS environments."}),
        ("Cluster access", {"fields": ["kube_context"],
                            "description": "How the portal reads this cluster (live view, snapshots)."}),
        ("Sealed Secrets", {"fields": ["sealed_secrets_certificate"], "classes": ["collapse"],
                            "description": "Clusters without AWS: the controller's public certificate."}),
        ("Status", {"fields": ["render_state", "created_at", "updated_at"]}),
        ("Renders", {"fields": ["recent_runs", "audit_trail"],
                     "description": "The runs that shipped this environment to git, newest first."}),
    ]

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None or obj.kind != Environment.Kind.COMPOSE:
            return fieldsets  # a new Compose environment gets the server's settings once saved (defaults meanwhile)
        # The server's settings after "Domain and TLS".
        return fieldsets[:2] + self.compose_fieldsets + fieldsets[2:]

    @admin.display(description="DNS records and checks")
    def compose_overview(self, obj):
        """The guide's DNS records, the server prerequisites checked against the model, and the SSL hints."""
        if obj is None or not obj.pk or obj.kind != Environment.Kind.COMPOSE:
            return "Shown for saved Docker Compose environments."
        records = format_html_join("", "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                                   ((r.type, r.name, r.value or "(set the server IP)", r.ttl)
                                    for r in compose.compose_dns_records(obj)))
        checks = format_html_join("", '<tr class="{}"><td>{}</td><td>{}</td><td>{}</td></tr>',
                                  (("check-ok" if c.ok else "check-fail", c.name, "OK" if c.ok else "Check", c.detail)
                                   for c in compose.compose_checks(obj)))
        hints = format_html_join("", "<li>{}</li>", ((hint,) for hint in compose.SSL_HINTS))
        return format_html(
            '<table class="compose-dns"><thead><tr><th>Type</th><th>Name</th><th>Value</th><th>TTL</th></tr>'
            '</thead><tbody>{}</tbody></table>'
            '<table class="compose-checks"><thead><tr><th>Prerequisite</th><th>Status</th><th>Detail</th></tr>'
            '</thead><tbody>{}</tbody></table>'
            "<p>SSL certificate not issued?</p><ul class=\"compose-ssl-hints\">{}</ul>",
            records, checks, hints,
        )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _active_projects=selectors.active_project_count(), _node_groups=selectors.node_group_count())

    @admin.display(description="Git", ordering="needs_render")
    def render_state(self, obj):
        """Neutral when git is up to date (a dash, not a red cross); a badge when a render is waiting."""
        if obj is None or not obj.pk or not obj.needs_render:
            return mark_safe('<span class="muted" title="Git has what the model says">—</span>')
        return mark_safe('<span class="badge attention">Needs render</span>')

    @admin.display(description="Protected", ordering="protected")
    def protected_display(self, obj):
        """"Protected" for production environments; a neutral dash otherwise (not a red cross)."""
        return mark_safe('<span class="badge">Protected</span>' if obj.protected else '<span class="muted">—</span>')

    @admin.display(description="Active projects", ordering="_active_projects")
    def active_projects(self, obj):
        return obj._active_projects

    @admin.display(description="Node groups", ordering="_node_groups")
    def node_group_count(self, obj):
        return obj._node_groups

    inline_services = {
        NodeGroup: (lambda form, obj, user: services.node_group_save(node_group=obj, user=user),
                    lambda obj, user: services.node_group_delete(node_group=obj, user=user)),
        Secret: (_secret_inline_save, lambda obj, user: services.secret_delete(secret=obj, user=user)),
    }

    @sensitive_value
    def changeform_view(self, request, *args, **kwargs):
        return super().changeform_view(request, *args, **kwargs)

    def render_environment_ids(self, obj) -> set[int]:
        return {obj.pk}

    def service_save(self, request, obj, form):
        services.environment_save(environment=obj, user=request.user)

    def service_delete(self, request, obj):
        services.environment_delete(environment=obj, user=request.user)

    def get_readonly_fields(self, request, obj=None):
        # Renaming or switching the GitOps tool removes folders: only the move flow may do it.
        fields = list(super().get_readonly_fields(request, obj))
        return fields + list(services.GUARDED_FIELDS) if obj is not None else fields

    @admin.display(description="Audit trail")
    def audit_trail(self, obj):
        return audit_link(environment=obj.pk) if obj.pk else "-"

    @admin.display(description="Recent runs")
    def recent_runs(self, obj):
        if not obj.pk:
            return "-"
        recent = selectors.environment_recent_runs(environment=obj)
        if not recent:
            return "Never rendered."
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((run_link(run), run.get_status_display(), run.commit_sha[:12] or "-",
              run.triggered_by.get_username() if run.triggered_by else runs.SYSTEM_USERNAME,
              f"{run.created_at:%Y-%m-%d %H:%M:%S}", run.reason or "-") for run in recent),
        )
        return format_html(
            '<table class="recent-runs"><thead><tr><th>Run</th><th>Status</th><th>Commit</th><th>By</th>'
            "<th>Created</th><th>Reason</th></tr></thead><tbody>{}</tbody></table>", rows,
        )

    # --- render and preview -------------------------------------------------------------------------

    @admin.action(description="Render and commit selected environments", permissions=["change"])
    def render_and_commit(self, request, queryset):
        environments = list(queryset.order_by("name"))
        if not all(self.has_change_permission(request, env) for env in environments):
            raise PermissionDenied
        try:
            result = runs.render_run_request(environment_ids=[env.pk for env in environments], user=request.user,
                                             reason="Render and commit from the admin", absorb=False)
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            return None
        if result.run is None:
            self._report_render(request, result)
            return None
        run = result.run
        self.message_user(request, format_html(
            "Render run {} queued for {}. Its page shows the progress, the log and the commit.",
            run_link(run), ", ".join(env.name for env in environments),
        ), messages.SUCCESS)
        return None

    @admin.action(description="Preview diff of selected environments (no commit)", permissions=["view"])
    def preview_diff(self, request, queryset):
        ids = ",".join(str(pk) for pk in queryset.order_by("name").values_list("pk", flat=True))
        return HttpResponseRedirect(f"{reverse('admin:deployments_environment_preview_many')}?ids={ids}")

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("preview/", view(self.preview_view), name="deployments_environment_preview_many"),
            path("<path:object_id>/preview/", view(self.preview_view), name="deployments_environment_preview"),
            path("<path:object_id>/render/", view(self.render_view), name="deployments_environment_render"),
            path("<path:object_id>/move/", view(self.move_view), name="deployments_environment_move"),
        ] + super().get_urls()

    def _environments_for(self, request, object_id) -> list[Environment]:
        if object_id is not None:
            raw_ids = [object_id]
        else:
            raw_ids = [part for part in request.GET.get("ids", "").split(",") if part.strip()]
        try:
            ids = [int(part) for part in raw_ids]
        except ValueError:
            raise Http404("Environment ids are numbers.") from None
        environments = list(Environment.objects.filter(pk__in=ids).order_by("name"))
        if not environments or len(environments) != len(set(ids)):
            raise Http404("No such environment.")
        return environments

    def preview_view(self, request, object_id=None):
        """The unified diff a render would commit now; renders into a scratch tree and commits nothing."""
        environments = self._environments_for(request, object_id)
        if not all(self.has_view_permission(request, env) for env in environments):
            raise PermissionDenied
        preview, error = None, ""
        try:
            page = max(1, int(request.GET.get("page", "1")))
        except ValueError:
            page = 1
        try:
            preview = runs.environment_preview(environment_ids=[env.pk for env in environments],
                                               diff_page=((page - 1) * PREVIEW_PAGE_FILES, PREVIEW_PAGE_FILES))
        except Exception as exc:  # noqa: BLE001 - shown on the page; the render pipeline's errors carry no values
            error = f"{type(exc).__name__}: {exc}"
        total = len(preview.paths) if preview else 0
        pages = max(1, -(-total // PREVIEW_PAGE_FILES))
        context = {
            "page": min(page, pages), "pages": pages, "page_numbers": range(1, pages + 1),
            "page_first": (page - 1) * PREVIEW_PAGE_FILES + 1 if preview and preview.diff_paths else 0,
            "page_last": (page - 1) * PREVIEW_PAGE_FILES + len(preview.diff_paths) if preview else 0,
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Preview: {', '.join(env.name for env in environments)}",
            "environments": environments,
            "single": environments[0] if len(environments) == 1 else None,
            "preview": preview,
            "files_html": preview_files_html(preview) if preview else "",
            "diff_html": diff_html(preview.diff) if preview else "",
            "diff_files": diff_file_list(preview.diff) if preview else "",
            "error": error,
            "can_render": all(self.has_change_permission(request, env) for env in environments),
        }
        return TemplateResponse(request, "admin/deployments/environment/preview.html", context)

    def move_view(self, request, object_id):
        """The one flow that may rename an environment or switch its GitOps tool (it removes folders)."""
        environment = self.get_object(request, object_id)
        if environment is None:
            raise Http404("No such environment.")
        if not self.has_change_permission(request, environment):
            raise PermissionDenied
        form = EnvironmentMoveForm(request.POST or None, initial={"name": environment.name,
                                                                   "gitops_tool": environment.gitops_tool})
        if request.method == "POST" and form.is_valid():
            try:
                with changes.change_batch(user=request.user) as batch:
                    services.environment_move(environment=environment, user=request.user, **form.cleaned_data)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                self._report_render(request, batch.request)
                return HttpResponseRedirect(reverse("admin:deployments_environment_change", args=[environment.pk]))
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "environment": environment,
            "form": form, "title": f"Move or rename {environment.name}",
            "active_projects": environment.projects.filter(state="active").count(),
        }
        return TemplateResponse(request, "admin/deployments/environment/move.html", context)

    @method_decorator(require_POST)
    def render_view(self, request, object_id):
        environment = self.get_object(request, object_id)  # None for malformed ids too
        if environment is None:
            raise Http404("No such environment.")
        if not self.has_change_permission(request, environment):
            raise PermissionDenied
        result = runs.render_run_request(environment_ids=[environment.pk], user=request.user,
                                         reason=request.POST.get("reason") or "Render and commit from the admin",
                                         absorb=False)
        if result.run is None:  # held: a protected environment's change waits for approval
            self._report_render(request, result)
            return HttpResponseRedirect(reverse("admin:deployments_environment_change", args=[environment.pk]))
        run = result.run
        self.message_user(request, format_html("Render run {} queued for {}.", run_link(run), environment.name),
                          messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:deployments_renderrun_change", args=[run.pk]))


@admin.register(NodeGroup)
class NodeGroupAdmin(PlannedRowsMixin, EnvironmentScopedAdminMixin, ServiceAdminMixin, admin.ModelAdmin):
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

    def service_save(self, request, obj, form):
        services.node_group_save(node_group=obj, user=request.user)

    def service_delete(self, request, obj):
        services.node_group_delete(node_group=obj, user=request.user)

    @admin.display(description="Min / desired / max")
    def sizes(self, obj):
        return f"{obj.min_size} / {obj.desired_size} / {obj.max_size}"


@admin.register(Secret)
class SecretAdmin(PlannedRowsMixin, EnvironmentScopedAdminMixin, ServiceAdminMixin, admin.ModelAdmin):
    form = SecretForm
    list_display = ["__str__", "environment", "description", "fingerprint", "version", "last_rotated_at"]
    list_filter = ["environment", "secret_name"]
    search_fields = ["key", "secret_name", "description", "environment__name"]
    list_select_related = ["environment"]
    readonly_fields = ["value_status", "fingerprint", "version", "last_rotated_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["environment", "secret_name", "key", "description"]}),
        ("Value (write-only)", {"fields": ["value_status", "value", "generate", "fingerprint", "version",
                                           "last_rotated_at"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    @sensitive_value
    def changeform_view(self, request, *args, **kwargs):
        return super().changeform_view(request, *args, **kwargs)

    def save_model(self, request, obj, form, change):
        if change and not form.has_changed():
            return
        _secret_inline_save(form, obj, request.user)

    def service_delete(self, request, obj):
        services.secret_delete(secret=obj, user=request.user)

    @admin.display(description="Stored value")
    def value_status(self, obj):
        if obj is None or not obj.pk or not obj.ciphertext:
            return "none yet"
        if not crypto.is_readable(obj.ciphertext):
            return mark_safe('<strong class="errornote">unreadable — re-enter the value</strong> (no key in '
                             "PORTAL_ENCRYPTION_KEYS opens it)")
        return "stored, encrypted"


@admin.register(RenderRun)
class RenderRunAdmin(PlannedRowsMixin, EnvironmentScopedAdminMixin, JobRunAdminMixin, admin.ModelAdmin):
    """Read-only history of render runs; a running run's page follows its progress."""

    list_display = ["id", "status_progress", "environment_names", "triggered_by", "short_reason", "file_counts",
                    "short_sha", "created_at", "duration_display"]
    list_display_links = ["id", "status_progress"]
    list_filter = ["status", "error_kind", "dry_run", "environments", "triggered_by"]
    search_fields = ["commit_sha", "reason", "triggered_by__username", "environments__name"]
    list_select_related = ["triggered_by"]
    list_per_page = 50
    job_result_fields = ("commit_sha", "error_file", "error_rule")
    readonly_fields = [*JobRunAdminMixin.job_readonly_fields, "environment_names", "dry_run_display",
                       "allow_deletions_display",
                       "commit_sha", "file_counts", "error_file", "error_rule", "diff_block"]
    fieldsets = [
        (None, {"fields": ["progress_block", "environment_names", "triggered_by", "reason", "dry_run_display",
                           "allow_deletions_display"]}),
        ("Result", {"fields": ["commit_sha", "file_counts", "created_at", "started_at", "finished_at",
                               "duration_display"]}),
        ("Error", {"fields": ["error_kind", "error_file", "error_rule", "error_block"]}),
        ("Log", {"fields": ["log_block"]}),
        ("Committed diff", {"fields": ["diff_block"]}),
    ]

    def get_queryset(self, request):
        # The list never shows diffs or logs: don't load megabytes per row.
        return super().get_queryset(request).defer("diff", "log").prefetch_related("environments")

    def get_object(self, request, object_id, from_field=None):
        try:
            return RenderRun.objects.prefetch_related("environments").get(pk=int(object_id))
        except (TypeError, ValueError, RenderRun.DoesNotExist):
            return None

    @admin.display(description="Status", ordering="status")
    def status_progress(self, obj):
        text = super().status_progress(obj)
        return format_html("{} (dry run)", text) if obj.dry_run and obj.is_finished else text

    @admin.display(description="Environments")
    def environment_names(self, obj):
        names = [env.name for env in obj.environments.all()]
        return ", ".join(sorted(names)) if names else "all environments"

    @admin.display(description="Dry run")
    def dry_run_display(self, obj):
        """Yes / No as words: neither is an error, so no red cross."""
        return "Yes (nothing committed)" if obj.dry_run else "No"

    @admin.display(description="Deletions allowed")
    def allow_deletions_display(self, obj):
        return "Yes (confirmed beyond the deletion budget)" if obj.allow_deletions else "No"

    @admin.display(description="Reason", ordering="reason")
    def short_reason(self, obj):
        return obj.reason if len(obj.reason) <= 60 else obj.reason[:59] + "…"

    @admin.display(description="Files (+/~/−)")
    def file_counts(self, obj):
        return f"+{obj.files_added} ~{obj.files_changed} −{obj.files_deleted}"

    @admin.display(description="Commit", ordering="commit_sha")
    def short_sha(self, obj):
        return format_html("<code>{}</code>", obj.commit_sha[:12]) if obj.commit_sha else "-"

    @admin.display(description="Diff")
    def diff_block(self, obj):
        if not obj.diff:
            return "-"
        return format_html('{}<pre class="run-diff">{}</pre>', diff_file_list(obj.diff), diff_html(obj.diff))
