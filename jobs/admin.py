"""One admin mixin for every job-run model: read-only pages with a live progress bar, the log and the error."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from jobs.models import JobRun


class JobRunAdminMixin:
    """Mix into a ModelAdmin of a JobRun subclass.

    Pages are read-only (runs are history). The change page polls ``<id>/progress/`` (JSON) while the run is
    not finished. The "Error" fieldset is shown only when the run has an error. Subclasses list their own
    fields in ``fieldsets`` and may add ``job_result_fields`` to the JSON.
    """

    change_form_template = "admin/jobs/jobrun_change_form.html"
    job_readonly_fields = ["progress_block", "triggered_by", "reason", "created_at", "started_at", "finished_at",
                           "duration_display", "error_kind", "error_block", "log_block"]
    job_result_fields: tuple[str, ...] = ()

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and not (obj.error or obj.enqueue_error):  # a failed hand-over is shown too
            fieldsets = [(name, options) for name, options in fieldsets if name != "Error"]
        return fieldsets

    def get_urls(self):
        meta = self.model._meta
        return [
            path("<path:object_id>/progress/", self.admin_site.admin_view(self.progress_view),
                 name=f"{meta.app_label}_{meta.model_name}_progress"),
        ] + super().get_urls()

    def progress_view(self, request, object_id):
        """JSON for the run page's progress bar: status, progress and the tail of the log. 404 for a malformed
        or unknown id; 403 without view permission on the run."""
        run = self.get_object(request, object_id)  # None for malformed ids too
        if run is None:
            raise Http404("No such run.")
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        body = {
            "id": run.pk, "status": run.status, "status_display": run.get_status_display(),
            "progress": run.progress, "finished": run.is_finished, "error_kind": run.error_kind,
            "warning_count": run.warning_count, "log_tail": "\n".join(run.log.splitlines()[-40:]),
        }
        body.update({name: getattr(run, name) for name in self.job_result_fields})
        return JsonResponse(body)

    # --- columns and fields --------------------------------------------------------------------------

    @staticmethod
    def _progress_url(obj: JobRun) -> str:
        meta = obj._meta
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_progress", args=[obj.pk])

    def status_progress(self, obj):
        if obj.status in (JobRun.Status.RUNNING, JobRun.Status.QUEUED):
            waiting = " (not queued: see the error)" if obj.enqueue_error else ""
            return format_html('{}{} <progress value="{}" max="100"></progress> {}%', obj.get_status_display(),
                               waiting, obj.progress, obj.progress)
        return obj.get_status_display()

    status_progress.short_description = "Status"
    status_progress.admin_order_field = "status"

    def duration_display(self, obj):
        duration = obj.duration
        return f"{duration.total_seconds():.1f} s" if duration is not None else "-"

    duration_display.short_description = "Duration"

    def progress_block(self, obj):
        return format_html(
            '<div id="run-progress" data-url="{}" data-finished="{}"><progress value="{}" max="100"></progress> '
            '<span class="run-status">{} — {}%</span>{}</div>',
            self._progress_url(obj), "1" if obj.is_finished else "0", obj.progress, obj.get_status_display(),
            obj.progress,
            mark_safe(' <span class="run-not-queued">Not queued yet: the queue could not be reached (see the '
                      'error below); the recovery job queues it again once the queue is back.</span>')
            if obj.status == JobRun.Status.QUEUED and obj.enqueue_error else "",
        )

    progress_block.short_description = "Progress"

    def error_block(self, obj):
        text = obj.error or obj.enqueue_error
        return format_html('<pre class="run-error">{}</pre>', text) if text else "-"

    error_block.short_description = "Error"

    def log_block(self, obj):
        return format_html('<pre id="run-log" class="run-log">{}</pre>', obj.log or "")

    log_block.short_description = "Log"
