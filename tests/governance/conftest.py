"""Fixtures for the governance tests: the demo, a real bare GitOps remote, and users with roles and grants."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from governance import roles, services
from tests.deployments.runfixtures import demo_load_complete, gitops, gitops_queue, kubectl  # noqa: F401


@pytest.fixture
def demo(db):
    return demo_load_complete()


def make_user(username: str, role: str | None, environments, *, superuser: bool = False):
    """A staff user in ``role`` with grants for ``environments`` (a list of Environment, or "all")."""
    roles.ensure_roles()  # transactional tests flush the data migration's groups
    model = get_user_model()
    if superuser:
        return model.objects.create_superuser(username, f"{username}@example.com", None)
    # No password (no hashing): the tests log in with force_login.
    user = model.objects.create_user(username, f"{username}@example.com", None, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    for environment in ([None] if environments == "all" else environments):
        services.grant_environment(user=user, environment=environment)
    return model.objects.get(pk=user.pk)  # fresh: no cached permissions


@pytest.fixture
def people(demo):
    """The cast: who may do what where (minikube is open, aws-production is protected)."""
    minikube, production = demo["minikube"], demo["aws-production"]
    return {
        "root": make_user("root", None, [], superuser=True),
        "operator_minikube": make_user("operator_minikube", roles.OPERATOR, [minikube]),
        "admin_minikube": make_user("admin_minikube", roles.ENVIRONMENT_ADMIN, [minikube]),
        "admin_all": make_user("admin_all", roles.ENVIRONMENT_ADMIN, "all"),
        "viewer_production": make_user("viewer_production", roles.VIEWER, [production]),
        "admin_no_grant": make_user("admin_no_grant", roles.ENVIRONMENT_ADMIN, []),
        "approver": make_user("approver", roles.APPROVER, "all"),
        "approver_minikube": make_user("approver_minikube", roles.APPROVER, [minikube]),
    }
