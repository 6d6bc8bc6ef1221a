"""The authentication backend that scopes permissions to environments (rules' object backend + the grants).

``environment_ids(user, perm)`` is what ``deployments.access`` asks: the environments in which the user holds a
grant *and* whose role (group) gives ``perm``. Object checks (``user.has_perm(perm, obj)``) go through the rules
defined in ``governance.rules``, which ask the same question for the object's environment.
"""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend
from rules.permissions import ObjectPermissionBackend

from governance.models import EnvironmentGrant

_model_backend = ModelBackend()


class EnvironmentGrantBackend(ObjectPermissionBackend):
    """Answers per-environment questions; global (no object) permissions stay with Django's ModelBackend."""

    def environment_ids(self, user, perm: str) -> set[int] | None:
        """Ids of the environments where ``user`` may use ``perm``; None: every environment (a grant without an
        environment). Empty without the role permission or without grants."""
        if not _model_backend.has_perm(user, perm):
            return set()
        cache = getattr(user, "_environment_grant_cache", None)
        if cache is None:
            cache = list(EnvironmentGrant.objects.filter(user_id=user.pk).values_list("environment_id", flat=True))
            user._environment_grant_cache = cache
        if any(pk is None for pk in cache):
            return None
        return set(cache)
