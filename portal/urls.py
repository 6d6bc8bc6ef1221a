from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from portal import health
from portal.rq_dashboard import rq_dashboard_patterns

admin.site.site_header = "Tesslate Studio GitOps portal"
admin.site.site_title = "Tesslate GitOps"
admin.site.index_title = "Environments, projects and what ships to the clusters"

urlpatterns = [
    path("health", health.health, name="health"),
    path("ready", health.ready, name="ready"),
    path("api/config", health.public_config, name="public-config"),
    path("admin/", admin.site.urls),
    # The dashboard is the admin index; "View site" and the bare host lead there.
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False), name="home"),
]

if settings.REDIS_URL:
    # Queue and worker pages need a real Redis; with inline jobs there is nothing to show (and nothing mounted).
    # They can empty queues and stop running renders: superusers only (django-rq itself lets any staff user in).
    urlpatterns.insert(0, path("admin/rq/", include((rq_dashboard_patterns(), "django_rq"))))
