from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The admin index as a dashboard: one card per environment (see ``dashboard.selectors``)."""

    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        from django.contrib import admin

        # The index keeps the admin's app list and shows the environment cards above it; "View site" leads here.
        admin.site.index_template = "admin/dashboard/index.html"
        admin.site.site_url = "/"
