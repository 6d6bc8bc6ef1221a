"""Error reports that never show secret values, with DEBUG on as well.

Django's SafeExceptionReporterFilter censors ``sensitive_post_parameters`` and ``sensitive_variables`` only when
DEBUG is off; with DEBUG on (``make run``) its yellow error page lists the raw POST data, and a secret typed
into the admin would be on screen. Wired in with
``DEFAULT_EXCEPTION_REPORTER_FILTER = "deployments.error_reports.SecretSafeExceptionReporterFilter"``.
"""

import re

from django.views.debug import SafeExceptionReporterFilter

# user:password@ (or token@) in any URL-looking value: a remote, DATABASE_URL, REDIS_URL, RQ_QUEUES, …
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Censors sensitive POST parameters and frame variables whether DEBUG is on or off, and the credentials
    inside URL-valued settings (GITOPS_REMOTE_URL, REDIS_URL, …) whose names Django's filter does not catch."""

    def is_active(self, request) -> bool:
        return True

    def cleanse_setting(self, key, value):
        value = super().cleanse_setting(key, value)
        if isinstance(value, str):
            return _URL_CREDENTIALS.sub(lambda m: m.group(1) + self.cleansed_substitute + "@", value)
        return value
