"""django-rq's dashboard, for superusers only.

django-rq guards its views with ``staff_member_required``; its pages can empty the ``gitops`` queue, requeue or
delete jobs and stop a running render, which is not for every staff user. Every view is wrapped again so that only
an active superuser gets through; others are sent to the login page (anonymous) or get 403.
"""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.urls import URLPattern, URLResolver


def superuser_required(view):
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (user.is_active and user.is_superuser):
            raise PermissionDenied("The job queue dashboard is for superusers only.")
        return view(request, *args, **kwargs)

    return wrapped


def _wrap(patterns):
    wrapped = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            wrapped.append(URLResolver(pattern.pattern, _wrap(pattern.url_patterns), pattern.default_kwargs,
                                       pattern.app_name, pattern.namespace))
        elif isinstance(pattern, URLPattern):
            wrapped.append(URLPattern(pattern.pattern, superuser_required(pattern.callback), pattern.default_args,
                                      pattern.name))
    return wrapped


def rq_dashboard_patterns() -> list:
    from django_rq import urls

    return _wrap(urls.urlpatterns)
