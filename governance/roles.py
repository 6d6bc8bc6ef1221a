"""The roles: Django groups with model permissions, created by a data migration (``ensure_roles``).

A role says *what* a user may do; an ``EnvironmentGrant`` says *where* (see governance.backends). A user needs
both: a role permission and a grant for the environment.

* viewer            — sees environments, node groups, secrets (never values), projects, containers, runs, changes
* operator          — viewer + adds, changes and deletes projects and their containers
* environment admin — operator + adds, changes and deletes environments, node groups and secrets; renders
                      and moves environments (``deployments.change_environment``)
* approver          — viewer + approves or rejects changes of protected environments
"""

from __future__ import annotations

VIEWER, OPERATOR, ENVIRONMENT_ADMIN, APPROVER = "viewer", "operator", "environment admin", "approver"

_VIEW = [
    "deployments.view_environment", "deployments.view_nodegroup", "deployments.view_secret",
    "deployments.view_renderrun", "projects.view_project", "projects.view_container",
    "governance.view_changerequest",
]
_PROJECTS = [f"projects.{action}_{model}" for model in ("project", "container")
             for action in ("add", "change", "delete")]
_ENVIRONMENTS = [f"deployments.{action}_{model}" for model in ("environment", "nodegroup", "secret")
                 for action in ("add", "change", "delete")]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    VIEWER: _VIEW,
    OPERATOR: _VIEW + _PROJECTS,
    ENVIRONMENT_ADMIN: _VIEW + _PROJECTS + _ENVIRONMENTS,
    APPROVER: _VIEW + ["governance.approve_changerequest"],
}

# Every permission that is scoped to environments (the object rules and the grant backend answer for these).
SCOPED_PERMISSIONS = sorted({perm for perms in ROLE_PERMISSIONS.values() for perm in perms})


def ensure_roles(group_model=None, permission_model=None) -> dict[str, object]:
    """Create the four groups and give them their permissions (idempotent; also used by the data migration,
    which passes its historical models). Returns {role name: group}. Raises LookupError naming a missing
    permission (its app is not migrated)."""
    if group_model is None:
        from django.contrib.auth.models import Group, Permission

        group_model, permission_model = Group, Permission
    groups = {}
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".", 1)
            found = permission_model.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if found is None:
                raise LookupError(f"Permission {perm} does not exist (is its app migrated?).")
            wanted.append(found)
        group.permissions.set(wanted)
        groups[role] = group
    return groups
