"""Who may do what where: a matrix of user × environment × action, through the admin (lists, pages, forged POSTs,
actions, preview, render, run pages, the progress JSON) and through the services directly."""

import pytest
from django.core.exceptions import PermissionDenied
from django.forms.models import model_to_dict
from django.urls import reverse

from deployments import services as deployment_services
from deployments.models import Environment, RenderRun, Secret
from projects import services as project_services
from projects.models import Project
from tests.deployments.runfixtures import queued_run

VIEW = {"list", "open", "preview", "run_page", "progress", "secret_list"}
PROJECTS = {"edit_project", "delete_project", "service_project"}
ALL = VIEW | PROJECTS | {"render", "action_render", "service_secret", "service_environment"}

# user → {environment name → the actions that must be allowed there}; everything else must be denied.
EXPECTED = {
    "root": {"minikube": ALL, "aws-production": ALL},
    "admin_all": {"minikube": ALL, "aws-production": ALL},
    "admin_minikube": {"minikube": ALL, "aws-production": set()},
    "operator_minikube": {"minikube": VIEW | PROJECTS, "aws-production": set()},
    "viewer_production": {"minikube": set(), "aws-production": VIEW},
    "approver": {"minikube": VIEW, "aws-production": VIEW},
    "admin_no_grant": {"minikube": set(), "aws-production": set()},
}


def _project(environment: Environment) -> Project:
    return Project.objects.filter(environment=environment).order_by("slug").first()


def _project_post(project: Project, **overrides) -> dict:
    data = {key: ("" if value is None else value) for key, value in model_to_dict(project).items()}
    data = {key: value for key, value in data.items() if key != "id"}
    data["environment"] = project.environment_id
    data["last_activity_at_0"], data["last_activity_at_1"] = "", ""
    data.update({"containers-TOTAL_FORMS": "0", "containers-INITIAL_FORMS": "0"})
    data.update(overrides)
    return data


# --- the actions: each returns True when it took effect (or showed the object), False when refused ---------


def act_list(client, user, env):
    response = client.get(reverse("admin:deployments_environment_changelist"))
    return response.status_code == 200 and env in response.context["cl"].result_list


def act_open(client, user, env):
    return client.get(reverse("admin:deployments_environment_change", args=[env.pk])).status_code == 200


def act_secret_list(client, user, env):
    response = client.get(reverse("admin:deployments_secret_changelist"))
    if response.status_code != 200:
        return False
    shown = {secret.environment_id for secret in response.context["cl"].result_list}
    return env.pk in shown


def act_preview(client, user, env):
    return client.get(reverse("admin:deployments_environment_preview", args=[env.pk])).status_code == 200


def _run_of(env):
    return queued_run(environment_ids=[env.pk], user=None, reason="matrix")


def act_run_page(client, user, env):
    return client.get(reverse("admin:deployments_renderrun_change", args=[_run_of(env).pk])).status_code == 200


def act_progress(client, user, env):
    response = client.get(reverse("admin:deployments_renderrun_progress", args=[_run_of(env).pk]))
    return response.status_code == 200 and response.json()["status"] == "queued"


def act_edit_project(client, user, env):
    project = _project(env)
    client.post(reverse("admin:projects_project_change", args=[project.pk]),
                _project_post(project, name="Renamed by a forged POST"))
    return Project.objects.get(pk=project.pk).name == "Renamed by a forged POST"


def act_delete_project(client, user, env):
    project = _project(env)
    client.post(reverse("admin:projects_project_delete", args=[project.pk]), {"post": "yes"})
    return not Project.objects.filter(pk=project.pk).exists()


def act_render(client, user, env):
    client.post(reverse("admin:deployments_environment_render", args=[env.pk]), {"reason": "matrix"})
    return RenderRun.objects.filter(environments=env, reason="matrix").exists()


def act_action_render(client, user, env):
    client.post(reverse("admin:deployments_environment_changelist"),
                {"action": "render_and_commit", "_selected_action": [env.pk]})
    return RenderRun.objects.filter(environments=env).exists()


def _service(call):
    try:
        call()
    except PermissionDenied:
        return False
    return True


def act_service_project(client, user, env):
    project = _project(env)
    project.name = "Renamed by the service"
    return _service(lambda: project_services.project_save(project=project, user=user))


def act_service_secret(client, user, env):
    secret = Secret.objects.filter(environment=env).first()
    return _service(lambda: deployment_services.secret_set_value(secret=secret, value="a-new-value", user=user))


def act_service_environment(client, user, env):
    env = Environment.objects.get(pk=env.pk)
    env.image_tag = "v9"
    return _service(lambda: deployment_services.environment_save(environment=env, user=user))


ACTIONS = {name[4:]: func for name, func in globals().items() if name.startswith("act_")}
assert set(ACTIONS) == ALL


@pytest.mark.django_db
@pytest.mark.parametrize("username", sorted(EXPECTED))
@pytest.mark.parametrize("environment", ["minikube", "aws-production"])
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_matrix(client, gitops, people, demo, username, environment, action):
    user = people[username]
    client.force_login(user)
    env = demo[environment]
    allowed = action in EXPECTED[username][environment]
    assert ACTIONS[action](client, user, env) is allowed, f"{username} {action} in {environment}"


@pytest.mark.django_db
def test_lists_show_only_granted_environments_everywhere(client, gitops, people, demo):
    client.force_login(people["operator_minikube"])
    minikube, production = demo["minikube"], demo["aws-production"]
    projects = client.get(reverse("admin:projects_project_changelist")).context["cl"].result_list
    assert {p.environment_id for p in projects} == {minikube.pk}
    queued_run(environment_ids=[production.pk], user=None, reason="production only")
    queued_run(environment_ids=None, user=None, reason="every environment")
    mine = queued_run(environment_ids=[minikube.pk], user=None, reason="minikube only")
    runs = client.get(reverse("admin:deployments_renderrun_changelist")).context["cl"].result_list
    assert [run.pk for run in runs] == [mine.pk]
    # The environment choices of a project form offer only where the user may add projects.
    form = client.get(reverse("admin:projects_project_add")).context["adminform"].form
    assert list(form.fields["environment"].queryset) == [minikube]
    # Per-environment pages of the other apps.
    assert client.get(reverse("admin:live_environment", args=[production.pk]) + "?cached=1").status_code == 403
    assert client.get(reverse("admin:costs_report", args=[production.pk])).status_code in (403, 302)


@pytest.mark.django_db
def test_forged_post_moving_a_project_into_a_foreign_environment_is_refused(client, gitops, people, demo):
    client.force_login(people["operator_minikube"])
    project = _project(demo["minikube"])
    client.post(reverse("admin:projects_project_change", args=[project.pk]),
                _project_post(project, environment=demo["aws-production"].pk))
    assert Project.objects.get(pk=project.pk).environment_id == demo["minikube"].pk


@pytest.mark.django_db
def test_services_refuse_without_grant_and_allow_the_system(people, demo, gitops):
    production = demo["aws-production"]
    group = production.node_groups.first()
    group.desired_size = 3
    with pytest.raises(PermissionDenied):
        deployment_services.node_group_save(node_group=group, user=people["admin_minikube"])
    with pytest.raises(PermissionDenied):
        deployment_services.node_group_delete(node_group=group, user=people["operator_minikube"])
    with pytest.raises(PermissionDenied):
        deployment_services.environment_move(environment=production, user=people["admin_minikube"],
                                             name="prod-2", gitops_tool=production.gitops_tool,
                                             confirm=production.name)
    assert production.node_groups.get(pk=group.pk).desired_size == 2
    deployment_services.node_group_save(node_group=group, user=None)  # the system (commands, jobs)
    assert production.node_groups.get(pk=group.pk).desired_size == 3


@pytest.mark.django_db
def test_anonymous_sees_only_login_and_health(client, demo):
    for url in (reverse("admin:deployments_environment_changelist"), reverse("admin:governance_audit"),
                reverse("admin:deployments_environment_preview", args=[demo["minikube"].pk])):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert client.get("/health").status_code == 200
    body = client.get("/api/config").json()
    assert set(body) == {"deployment_modes", "app_domains"}
    assert "aws-production" not in str(body) and "minikube" not in str(body)


@pytest.mark.django_db
def test_object_permissions_answer_for_the_objects_environment(people, demo):
    """user.has_perm(perm, obj) (django-rules) follows the grant of the object's environment, for every model."""
    operator, viewer = people["operator_minikube"], people["viewer_production"]
    mine = Project.objects.filter(environment=demo["minikube"]).first()
    theirs = Project.objects.filter(environment=demo["aws-production"]).first()
    assert operator.has_perm("projects.change_project", mine)
    assert operator.has_perm("projects.change_container", mine.containers.first())
    assert not operator.has_perm("projects.change_project", theirs)
    assert not operator.has_perm("deployments.change_environment", demo["minikube"])  # not in the operator role
    assert viewer.has_perm("deployments.view_secret", Secret.objects.filter(environment=demo["aws-production"]).first())
    assert not viewer.has_perm("projects.change_project", theirs)
    assert operator.has_perm("projects.change_project")  # the role, without an object
