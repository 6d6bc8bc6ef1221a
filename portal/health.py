"""Health endpoints, as the operator guide lists them. No login, nothing secret."""

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from deployments.models import Environment


@require_GET
@never_cache
def health(request):
    """Liveness: 200 while the process answers."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not ready"
        return type(exc).__name__
    return None


def _check_redis() -> str | None:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return type(exc).__name__
    return None


@require_GET
@never_cache
def ready(request):
    """Readiness: 200 only when the database (and Redis, when configured) answer; 503 says which failed."""
    checks = {"database": _check_database()}
    if settings.REDIS_URL:
        checks["redis"] = _check_redis()
    failed = sorted(name for name, error in checks.items() if error)
    body = {
        "status": "ready" if not failed else "unavailable",
        "checks": {name: ("ok" if error is None else f"failed: {error}") for name, error in checks.items()},
    }
    if failed:
        body["failed"] = failed
    return JsonResponse(body, status=503 if failed else 200)


@require_GET
@never_cache
def public_config(request):
    """Public configuration, as the operator guide's health table lists it: the deployment modes and the app
    domains (which users reach anyway). Nothing else: no environment names, kinds, versions or job setup, since
    anyone may call it without logging in."""
    rows = Environment.objects.order_by("app_domain").values_list("kind", "app_domain")
    return JsonResponse({
        "deployment_modes": sorted({"docker" if kind == Environment.Kind.COMPOSE else "kubernetes"
                                    for kind, _ in rows}),
        "app_domains": sorted({domain for _, domain in rows}),
    })
