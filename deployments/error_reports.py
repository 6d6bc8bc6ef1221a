"""Error reports that never show secret values, with DEBUG on as well.

Django's SafeExceptionReporterFilter censors ``sensitive_post_parameters`` and ``sensitive_variables`` only when
DEBUG is off; with DEBUG on (``make run``) its yellow error page lists the raw POST data, and a secret typed
into the admin would be on screen. Wired in with
``DEFAULT_EXCEPTION_REPORTER_FILTER = "deployments.error_reports.SecretSafeExceptionReporterFilter"``.
"""

from django.views.debug import SafeExceptionReporterFilter


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Censors sensitive POST parameters and frame variables whether DEBUG is on or off."""

    def is_active(self, request) -> bool:
        return True
