"""Who may do what, in which environment: the checks the services, the admin and the runs call.

Permissions are Django's model permissions (``deployments.change_nodegroup``, ``projects.add_project``, …),
granted per environment. The scope comes from the authentication backends: a backend with an
``environment_ids(user, perm)`` method (the governance app's) answers "in which environments"; without one, a
global permission covers every environment (Django's ModelBackend). ``user=None`` is the system (commands,
scheduled jobs): always allowed. Superusers may do everything.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_backends
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet

# The environment path of each model, for filtering querysets (a render run covers its environments, or all).
ENVIRONMENT_LOOKUPS = {
    "deployments.environment": "pk",
    "deployments.nodegroup": "environment",
    "deployments.secret": "environment",
    "deployments.renderrun": "environments",
    "projects.project": "environment",
    "projects.container": "project__environment",
}


def environment_ids(user, perm: str) -> set[int] | None:
    """The ids of the environments in which ``user`` has ``perm`` ("app_label.codename"); None means all of them.

    None for the system (``user=None``) and for active superusers; an empty set for anonymous or inactive users.
    """
    if user is None:
        return None
    if not user.is_active or not user.is_authenticated:
        return set()
    if user.is_superuser:
        return None
    scoped = [backend for backend in get_backends() if hasattr(backend, "environment_ids")]
    if not scoped:
        return None if user.has_perm(perm) else set()
    result: set[int] = set()
    for backend in scoped:
        ids = backend.environment_ids(user, perm)
        if ids is None:
            return None
        result |= set(ids)
    return result


def viewable_environment_ids(user, model_label: str) -> set[int] | None:
    """The environments where ``user`` may see rows of ``model_label`` ("app_label.model_name"): those where it has
    the model's view or its change permission (Django's admin shows a model to either). None means all."""
    app_label, model_name = model_label.split(".", 1)
    view = environment_ids(user, f"{app_label}.view_{model_name}")
    change = environment_ids(user, f"{app_label}.change_{model_name}")
    return None if view is None or change is None else view | change


def allowed(user, perm: str, environments: Iterable[int | None] | None) -> bool:
    """Whether ``user`` has ``perm`` in every one of these environment ids (None: in all environments)."""
    ids = environment_ids(user, perm)
    if ids is None:
        return True
    if environments is None:
        return False  # a request for every environment needs the permission everywhere
    wanted = {int(pk) for pk in environments if pk is not None}
    if not wanted:  # an object without an environment yet (an add form): the permission somewhere suffices
        return bool(ids) or (user.has_perm(perm) and not _scoped())
    return wanted <= ids


def _scoped() -> bool:
    return any(hasattr(backend, "environment_ids") for backend in get_backends())


def require(user, perm: str, environments: Iterable[int | None] | None, *, what: str = "") -> None:
    """Raise PermissionDenied unless ``user`` has ``perm`` in all these environments (see ``allowed``).

    The message names the permission and the object, never data of other environments.
    """
    if not allowed(user, perm, environments):
        raise PermissionDenied(f"{user.get_username() if user else 'system'} may not {perm.split('.', 1)[1]}"
                               f"{f' ({what})' if what else ''}: no grant for this environment.")


def act_as(obj, user) -> None:
    """Record who writes ``obj`` (read by the audit trail's history rows; the admin's requests set it too)."""
    obj._history_user = user if user is not None and user.is_authenticated else None


def environment_ids_of(obj) -> set[int] | None:
    """The environment ids an object belongs to (None: every environment, e.g. a run of all environments)."""
    label = obj._meta.label_lower
    if label == "deployments.environment":
        return {obj.pk} if obj.pk else set()
    if label == "projects.container":
        return {obj.project.environment_id} if obj.project_id else set()
    if label == "deployments.renderrun" or hasattr(obj, "environments"):
        ids = set(obj.environments.values_list("pk", flat=True)) if obj.pk else set()
        return ids or None
    return {obj.environment_id} if getattr(obj, "environment_id", None) else set()


def filter_visible(queryset: QuerySet, user, perm: str, lookup: str | None = None) -> QuerySet:
    """Only the rows in environments where ``user`` has ``perm`` (``lookup``: the environment path of the model,
    default from ENVIRONMENT_LOOKUPS). Rows covering every environment (a run of all environments, whose
    environment set is empty) are shown only to users with the permission everywhere."""
    return filter_by_ids(queryset, environment_ids(user, perm), lookup)


def filter_by_ids(queryset: QuerySet, ids: set[int] | None, lookup: str | None = None) -> QuerySet:
    """Only the rows whose environments are all among ``ids`` (None: no filter); see ``filter_visible``."""
    if ids is None:
        return queryset
    lookup = lookup or ENVIRONMENT_LOOKUPS[queryset.model._meta.label_lower]
    if lookup == "environments":  # many-to-many: every environment of the row must be allowed
        through = queryset.model._meta.get_field("environments").remote_field.through
        column = f"{queryset.model._meta.model_name}_id"
        denied = through.objects.exclude(environment_id__in=ids).values(column)
        covered = through.objects.values(column)
        return queryset.filter(pk__in=covered).exclude(pk__in=denied)
    key = "pk__in" if lookup == "pk" else f"{lookup}__in"
    return queryset.filter(**{key: ids})


VIEW_ENVIRONMENT = "deployments.view_environment"


def require_environment_view(user, environment_id: int) -> None:
    """PermissionDenied unless ``user`` may see this environment (per-environment pages of other apps)."""
    require(user, VIEW_ENVIRONMENT, {environment_id}, what=f"environment {environment_id}")


def visible_environments(queryset: QuerySet, user, lookup: str = "environment") -> QuerySet:
    """Rows of environments the user may see (``lookup``: the row's path to its environment, "pk" for
    environments themselves)."""
    return filter_by_ids(queryset, environment_ids(user, VIEW_ENVIRONMENT), lookup)
