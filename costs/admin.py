"""Admin: the price table (editable), environment cost settings, cost sync runs (read-only history)."""

from django.contrib import admin

from costs.models import CostSyncRun, EnvironmentCostSettings, Price
from jobs.admin import JobRunAdminMixin


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ["key", "description", "amount", "unit", "region", "as_of"]
    list_editable = ["amount"]
    search_fields = ["key", "description"]
    list_filter = ["unit", "region"]


@admin.register(EnvironmentCostSettings)
class EnvironmentCostSettingsAdmin(admin.ModelAdmin):
    list_display = ["environment", "cost_tag_key", "tag_value", "availability_zones", "last_fetched_at",
                    "request_count"]
    list_select_related = ["environment"]
    readonly_fields = ["request_count", "last_fetched_at", "last_error_kind", "last_error", "last_error_at"]
    fieldsets = [
        (None, {"fields": ["environment", "cost_tag_key", "cost_tag_value"]}),
        ("Assumptions (the guide's baseline)", {"fields": ["availability_zones", "baseline_ebs_gb",
                                                           "baseline_volume_type", "s3_storage_gb",
                                                           "data_transfer_out_gb"]}),
        ("Cost Explorer cache", {"fields": readonly_fields}),
    ]

    @admin.display(description="Tag value")
    def tag_value(self, obj):
        return obj.tag_value


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
