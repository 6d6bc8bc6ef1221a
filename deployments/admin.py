import re

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from deployments import compose, runs, sealing, services
from deployments.forms import EnvironmentForm, SecretForm
from deployments.models import Environment, NodeGroup, RenderRun, Secret

# Secret values arrive in POST field names ending in "value"; Django's error reports must not show them.
sensitive_value = method_decorator(sensitive_post_parameters())


class SecretValueAdminMixin:
    """Stores the write-only value of SecretForm through the service, encrypted, never echoing it."""

    def _store_secret(self, form, secret: Secret) -> None:
        value = form.new_value()
        if value is not None:
            services.secret_store_value(secret=secret, value=value)
        else:
            # Keeps the stored value and version; reseals when the Secret's name changed.
            services.secret_save(secret=secret)


def diff_html(diff: str):
    """A unified diff as escaped HTML lines, coloured by kind (added, removed, hunk header, file header)."""

    def css(line: str) -> str:
        if line.startswith(("+++", "---", "diff ", "index ", "new file", "deleted file")):
            return "diff-file"
        if line.startswith("@@"):
            return "diff-hunk"
        if line.startswith("+"):
            return "diff-add"
        if line.startswith("-"):
            return "diff-del"
        return "diff-ctx"

    return format_html_join("", '<span class="{}">{}\n</span>', ((css(line), line) for line in diff.splitlines()))


def run_link(run: RenderRun):
    url = reverse("admin:deployments_renderrun_change", args=[run.pk])
    return format_html('<a href="{}">#{}</a>', url, run.pk)


class AutoRenderAdminMixin:
    """After an admin save or delete: mark the environments it touched dirty and request one render.

    Requests collapse into a queued run (deployments.runs.render_run_request), so a burst of saves gives one run.
    The request is made in ``save_related`` — after the inlines are saved, still inside the admin's transaction —
    so the job is enqueued only once everything is committed.
    """

    def render_environment_ids(self, obj, *, deleted: bool = False) -> set[int] | None:
        """The environments a change of ``obj`` affects; None means all environments."""
        return {obj.environment_id} if getattr(obj, "environment_id", None) else set()

    def _request_render(self, request, environment_ids: set[int] | None, reason: str) -> None:
        if environment_ids is not None and not environment_ids:
            return
        run = runs.render_auto_request(environment_ids=environment_ids, user=request.user, reason=reason)
        if run is not None:
            # The run starts once this request's transaction commits (inline without REDIS_URL), so its status here
            # would always read "queued": link to the run page, which shows the live status.
            self.message_user(request, format_html(
                "Render run {} ships this change to git; its page shows the progress and the commit.", run_link(run),
            ), messages.INFO)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if change and not form.has_changed() and not any(formset.has_changed() for formset in formsets):
            return
        obj = form.instance
        ids = self.render_environment_ids(obj)
        previous = form.initial.get("environment") if change else None
        if ids is not None and previous:
            ids.add(int(getattr(previous, "pk", previous)))  # moved to another environment: render both
        verb = "Changed" if change else "Added"
        self._request_render(request, ids, f"{verb} {obj._meta.verbose_name} {obj}")

    def delete_model(self, request, obj):
        ids = self.render_environment_ids(obj, deleted=True)
        label = f"Deleted {obj._meta.verbose_name} {obj}"
        super().delete_model(request, obj)
        self._request_render(request, ids, label)

    def delete_queryset(self, request, queryset):
        objects = list(queryset)
        ids: set[int] | None = set()
        for obj in objects:
            obj_ids = self.render_environment_ids(obj, deleted=True)
            ids = None if obj_ids is None or ids is None else ids | obj_ids
        names = ", ".join(str(obj) for obj in objects[:5]) + (" …" if len(objects) > 5 else "")
        super().delete_queryset(request, queryset)
        self._request_render(request, ids, f"Deleted {queryset.model._meta.verbose_name_plural} {names}")


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
class EnvironmentAdmin(AutoRenderAdminMixin, SecretValueAdminMixin, admin.ModelAdmin):
    form = EnvironmentForm
    change_form_template = "admin/deployments/environment/change_form.html"
    actions = ["render_and_commit", "preview_diff"]
    list_display = ["name", "kind", "app_domain", "tls_mode", "gitops_tool", "protected", "active_projects",
                    "node_group_count", "needs_render", "updated_at"]
    list_filter = ["kind", "gitops_tool", "protected", "tls_mode", "needs_render"]
    search_fields = ["name", "app_domain", "eks_cluster_name", "aws_account_id"]
    readonly_fields = ["needs_render", "created_at", "updated_at", "recent_runs", "compose_overview"]
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
        ("Cluster access", {"fields": ["kube_context"],
                            "description": "How the portal reads this cluster (live view, snapshots)."}),
        ("Sealed Secrets", {"fields": ["sealed_secrets_certificate"], "classes": ["collapse"],
                            "description": "Clusters without AWS: the controller's public certificate."}),
        ("Status", {"fields": ["needs_render", "created_at", "updated_at"]}),
        ("Renders", {"fields": ["recent_runs"],
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

    def render_environment_ids(self, obj, *, deleted: bool = False) -> set[int] | None:
        # A deleted environment's folders are pruned only by a render of the whole tree.
        return None if deleted else {obj.pk}

    def save_model(self, request, obj, form, change):
        obj.needs_render = True
        super().save_model(request, obj, form, change)
        if change and {"sealed_secrets_certificate", "age_recipient", "kind"} & set(form.changed_data):
            # Seal (or age-encrypt) now, so the preview already shows the new ciphertext (a render would anyway).
            sealing.environment_secrets_reseal(environment=obj)

    @admin.display(description="Recent runs")
    def recent_runs(self, obj):
        if not obj.pk:
            return "-"
        recent = runs.environment_recent_runs(environment=obj)
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
        try:
            run = runs.render_run_submit(environment_ids=[env.pk for env in environments], user=request.user,
                                         reason="Render and commit from the admin")
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            return None
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
            preview = runs.environment_preview(environment_ids=[env.pk for env in environments])
        except Exception as exc:  # noqa: BLE001 - shown on the page; the render pipeline's errors carry no values
            error = f"{type(exc).__name__}: {exc}"
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Preview: {', '.join(env.name for env in environments)}",
            "environments": environments,
            "single": environments[0] if len(environments) == 1 else None,
            "preview": preview,
            "diff_html": diff_html(preview.diff) if preview else "",
            "error": error,
            "can_render": all(self.has_change_permission(request, env) for env in environments),
        }
        return TemplateResponse(request, "admin/deployments/environment/preview.html", context)

    @method_decorator(require_POST)
    def render_view(self, request, object_id):
        environment = get_object_or_404(Environment, pk=object_id)
        if not self.has_change_permission(request, environment):
            raise PermissionDenied
        run = runs.render_run_submit(environment_ids=[environment.pk], user=request.user,
                                     reason=request.POST.get("reason") or "Render and commit from the admin")
        self.message_user(request, format_html("Render run {} queued for {}.", run_link(run), environment.name),
                          messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:deployments_renderrun_change", args=[run.pk]))

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
class NodeGroupAdmin(AutoRenderAdminMixin, admin.ModelAdmin):
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
class SecretAdmin(AutoRenderAdminMixin, SecretValueAdminMixin, admin.ModelAdmin):
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
        # The environment is marked dirty and rendered by AutoRenderAdminMixin.save_related.
        self._store_secret(form, obj)


ERROR_RULE_RE = re.compile(r"^.*?: \[(?P<rule>[^\]]+)\] ", re.MULTILINE)


@admin.register(RenderRun)
class RenderRunAdmin(admin.ModelAdmin):
    """Read-only history of render runs; a running run's page follows its progress."""

    change_form_template = "admin/jobs/jobrun_change_form.html"
    list_display = ["id", "status_progress", "environment_names", "triggered_by", "short_reason", "file_counts",
                    "short_sha", "created_at", "duration_display"]
    list_display_links = ["id", "status_progress"]
    list_filter = ["status", "dry_run", "environments", "triggered_by", "created_at"]
    search_fields = ["commit_sha", "reason", "triggered_by__username", "environments__name"]
    list_select_related = ["triggered_by"]
    date_hierarchy = "created_at"
    readonly_fields = ["progress_block", "environment_names", "triggered_by", "reason", "dry_run", "commit_sha",
                       "file_counts", "created_at", "started_at", "finished_at", "duration_display",
                       "error_file", "error_rule", "error_block", "log_block", "diff_block"]
    fieldsets = [
        (None, {"fields": ["progress_block", "environment_names", "triggered_by", "reason", "dry_run"]}),
        ("Result", {"fields": ["commit_sha", "file_counts", "created_at", "started_at", "finished_at",
                               "duration_display"]}),
        ("Error", {"fields": ["error_file", "error_rule", "error_block"]}),
        ("Log", {"fields": ["log_block"]}),
        ("Committed diff", {"fields": ["diff_block"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("environments")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        runs.render_runs_recover()  # a run whose worker died shows as failed, not running forever
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        runs.render_runs_recover()
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path("<path:object_id>/progress/", self.admin_site.admin_view(self.progress_view),
                 name="deployments_renderrun_progress"),
        ] + super().get_urls()

    def progress_view(self, request, object_id):
        """JSON for the run page's progress bar: status, progress and the tail of the log."""
        run = get_object_or_404(RenderRun, pk=object_id)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        if run.status == RenderRun.Status.RUNNING:
            runs.render_runs_recover()
            run.refresh_from_db()
        return JsonResponse({
            "id": run.pk, "status": run.status, "status_display": run.get_status_display(),
            "progress": run.progress, "finished": run.is_finished, "commit_sha": run.commit_sha,
            "error_file": run.error_file, "log_tail": "\n".join(run.log.splitlines()[-40:]),
        })

    # --- columns and fields ------------------------------------------------------------------------

    @admin.display(description="Status", ordering="status")
    def status_progress(self, obj):
        if obj.status in (RenderRun.Status.RUNNING, RenderRun.Status.QUEUED):
            return format_html('{} <progress value="{}" max="100"></progress> {}%', obj.get_status_display(),
                               obj.progress, obj.progress)
        return obj.get_status_display() + (" (dry run)" if obj.dry_run else "")

    @admin.display(description="Environments")
    def environment_names(self, obj):
        names = [env.name for env in obj.environments.all()]
        return ", ".join(sorted(names)) if names else "all environments"

    @admin.display(description="Reason", ordering="reason")
    def short_reason(self, obj):
        return obj.reason if len(obj.reason) <= 60 else obj.reason[:59] + "…"

    @admin.display(description="Files (+/~/−)")
    def file_counts(self, obj):
        return f"+{obj.files_added} ~{obj.files_changed} −{obj.files_deleted}"

    @admin.display(description="Commit", ordering="commit_sha")
    def short_sha(self, obj):
        return format_html("<code>{}</code>", obj.commit_sha[:12]) if obj.commit_sha else "-"

    @admin.display(description="Duration")
    def duration_display(self, obj):
        duration = obj.duration
        return f"{duration.total_seconds():.1f} s" if duration is not None else "-"

    @admin.display(description="Progress")
    def progress_block(self, obj):
        url = reverse("admin:deployments_renderrun_progress", args=[obj.pk])
        return format_html(
            '<div id="run-progress" data-url="{}" data-finished="{}"><progress value="{}" max="100"></progress> '
            '<span class="run-status">{} — {}%</span></div>',
            url, "1" if obj.is_finished else "0", obj.progress, obj.get_status_display(), obj.progress,
        )

    @admin.display(description="Rule")
    def error_rule(self, obj):
        match = ERROR_RULE_RE.search(obj.error or "")
        return match["rule"] if match else "-"

    @admin.display(description="Error")
    def error_block(self, obj):
        return format_html('<pre class="run-error">{}</pre>', obj.error) if obj.error else "-"

    @admin.display(description="Log")
    def log_block(self, obj):
        return format_html('<pre id="run-log" class="run-log">{}</pre>', obj.log or "")

    @admin.display(description="Diff")
    def diff_block(self, obj):
        if not obj.diff:
            return "-"
        return format_html('<pre class="run-diff">{}</pre>', diff_html(obj.diff))
