"""Project containers that start: start commands, environment, probes and the labels Studio's backend selects on
(DOMAIN.md "A user project"), built with the real `kubectl kustomize` and checked per role."""

import pytest
from django.core.exceptions import ValidationError

from deployments import validators
from deployments.rendering import render_tree
from deployments.selectors import environments_snapshot
from projects.demo import demo_container_id, demo_load, demo_project_id
from projects.models import Container
from tests.deployments.rendering.test_rendering import SOURCE_URL, build_all, container, find
from tests.factories import assert_field_error, container_factory, environment_factory, project_factory

pytestmark = pytest.mark.django_db


@pytest.fixture
def source(settings):
    settings.GITOPS_SOURCE_URL = SOURCE_URL
    settings.GITOPS_BRANCH = "main"


@pytest.fixture
def demo_built(source, tmp_path):
    demo_load()
    return build_all(render_tree(environments_snapshot()), tmp_path)


def _todo_app(demo_built) -> list[dict]:
    return demo_built[f"environments/minikube/projects/proj-{demo_project_id('minikube', 'todo-app')}"]


def _pod(objects: list[dict], name: str) -> dict:
    return find(objects, "Deployment", name)["spec"]["template"]


def test_frontend_on_the_devserver_image_runs_its_dev_server_under_tsinit(demo_built):
    pod = _pod(_todo_app(demo_built), "dev-frontend")
    dev = container(pod["spec"], "dev-server")
    assert dev["command"] == ["tsinit", "serve", "--process",
                              "main=cd /app/frontend && npm install && npm run dev -- --host 0.0.0.0 --port 5173"]
    assert "workingDir" not in dev, "a root-created working directory breaks uid 1000"
    # The portal's variables, then how to reach the project's database (test_workloads_credentials.py).
    assert dev["env"][:3] == [{"name": "HOST", "value": "0.0.0.0"}, {"name": "PORT", "value": "5173"},
                              {"name": "NODE_ENV", "value": "development"}]
    assert dev["env"][3]["name"] == "DATABASE_URL"
    assert dev["readinessProbe"] == {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5,
                                     "timeoutSeconds": 3, "failureThreshold": 3}
    # A generous startup budget (npm install, first build): 60 × 10 s.
    assert dev["startupProbe"] == {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10,
                                   "timeoutSeconds": 3, "failureThreshold": 60}
    assert "livenessProbe" not in dev
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000


def test_backend_gets_its_default_command_its_health_path_and_its_variables(demo_built):
    dev = container(_pod(_todo_app(demo_built), "dev-backend")["spec"], "dev-server")
    assert dev["command"] == ["tsinit", "serve", "--process", "main=cd /app/backend && npm install && npm run dev"]
    assert {"name": "PORT", "value": "8000"} in dev["env"]
    assert dev["env"][-1] == {"name": "LOG_LEVEL", "value": "debug"}
    assert dev["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert dev["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_postgres_service_is_checked_with_pg_isready(demo_built):
    db = container(_pod(_todo_app(demo_built), "svc-db")["spec"], "service")
    check = {"exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-p", "5432"]}}
    assert db["readinessProbe"] == {**check, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3}
    assert db["startupProbe"]["exec"] == check["exec"]
    assert "command" not in db and "workingDir" not in db, "the postgres image keeps its own entrypoint"
    assert {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"} in db["env"]


def test_file_manager_serves_files_with_tsinit(demo_built):
    pod = _pod(_todo_app(demo_built), "file-manager")
    files = container(pod["spec"], "file-manager")
    assert files["command"] == ["tsinit", "serve"]
    assert "workingDir" not in files
    required = pod["spec"].get("affinity", {}).get("podAffinity", {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    assert not required, "a required pod affinity deadlocked scheduling in Studio"


def test_every_project_pod_carries_the_labels_studio_selects_on(demo_built):
    """app=file-manager / app=dev-container / app=svc-{dir} and tesslate.io/container-id = the Container's id."""
    checked = 0
    # (Kubernetes environments: the Compose server single-server renders no Kubernetes objects.)
    for container_row in Container.objects.select_related("project__environment").filter(
            project__state="active").exclude(project__environment__kind="compose"):
        project = container_row.project
        objects = demo_built[f"environments/{project.environment.name}/projects/proj-{project.id}"]
        workload = container_row.workload_name
        labels = _pod(objects, workload)["metadata"]["labels"]
        assert labels["app"] == (workload if container_row.is_service else "dev-container")
        assert labels["tesslate.io/container-id"] == str(container_row.uuid)
        assert labels["tesslate.io/project-id"] == str(project.id)
        assert labels["tesslate.io/user-id"] == project.owner
        assert labels["app.kubernetes.io/managed-by"] == "tesslate-portal"
        # The Deployment's selector is unchanged (immutable on existing Deployments) and still matches.
        selector = find(objects, "Deployment", workload)["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        manager = _pod(objects, "file-manager")["metadata"]["labels"]
        assert manager["app"] == "file-manager" and manager["tesslate.io/project-id"] == str(project.id)
        checked += 1
    assert checked == 8
    assert str(Container.objects.get(project_id=demo_project_id("minikube", "todo-app"), directory="db").uuid) == str(
        demo_container_id("minikube", "todo-app", "db"))


def _built_project(project, tmp_path) -> list[dict]:
    built = build_all(render_tree(environments_snapshot(environment_ids=[project.environment_id])), tmp_path)
    return built[f"environments/{project.environment.name}/projects/proj-{project.id}"]


def test_admin_choices_reach_the_container_spec(source, tmp_path):
    project = project_factory(environment_factory(), containers=(), slug="shop")
    container_factory(project, directory="web", start_command="pnpm dev --port 3000", port=3000,
                      env_vars="NODE_ENV=production\n# comment\nAPI_URL = https://api.example.com/v1?a=b\n",
                      probe=Container.Probe.TCP, startup_timeout_seconds=125)
    container_factory(project, directory="api", role=Container.Role.BACKEND, image="python:3.12-slim", port=8000,
                      start_command="uvicorn main:app --host 0.0.0.0 --port 8000", probe_path="/ready")
    container_factory(project, directory="cache", role=Container.Role.SERVICE, image="redis:7-alpine", port=6379)
    objects = _built_project(project, tmp_path)

    web = container(_pod(objects, "dev-web")["spec"], "dev-server")
    assert web["command"] == ["tsinit", "serve", "--process", "main=cd /app/web && pnpm dev --port 3000"]
    # The admin's NODE_ENV replaces the portal's default in place; new names follow.
    env = [entry for entry in web["env"] if not entry["name"].startswith("REDIS_")]  # the cache's connection
    assert env == [{"name": "HOST", "value": "0.0.0.0"}, {"name": "PORT", "value": "3000"},
                   {"name": "NODE_ENV", "value": "production"},
                   {"name": "API_URL", "value": "https://api.example.com/v1?a=b"}]
    assert web["readinessProbe"]["tcpSocket"] == {"port": "http"} and "httpGet" not in web["readinessProbe"]
    assert web["startupProbe"]["failureThreshold"] == 13  # ceil(125 s / 10 s)

    # Another image: its command runs through a shell in the container's directory (it is not the devserver image,
    # so its working directory is its own business).
    api = container(_pod(objects, "dev-api")["spec"], "dev-server")
    assert api["command"] == ["/bin/sh", "-c", "uvicorn main:app --host 0.0.0.0 --port 8000"]
    assert api["workingDir"] == "/app/api"
    assert api["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}

    cache = container(_pod(objects, "svc-cache")["spec"], "service")
    assert cache["readinessProbe"]["tcpSocket"] == {"port": "tcp"}
    assert cache["command"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]


@pytest.mark.parametrize(("text", "fragment"), [
    ("NOEQUALS", "is not NAME=value"),
    ("1ST=a", "is not an environment variable name"),
    ("MY-VAR=a", "is not an environment variable name"),
    ("A=1\nA=2", "is given twice"),
    ("DB_PASSWORD=hunter2", "looks like a credential"),
    ("stripe_api_key=sk_live", "looks like a credential"),
    ("GITHUB_TOKEN=x", "looks like a credential"),
    ("BIG=" + "x" * 4097, "longer than 4096"),
])
def test_bad_environment_variables_are_refused_on_the_field(text, fragment):
    project = project_factory(containers=())
    assert_field_error(Container(project=project, directory="web", image="tesslate-devserver:latest",
                                 env_vars=text), "env_vars", fragment)


def test_environment_variables_parse_in_order():
    assert validators.parse_env_vars("B=2\n\n  # note\nA = x=y \nEMPTY=\n") == [("B", "2"), ("A", "x=y"), ("EMPTY", "")]


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("start_command", "npm run dev\nrm -rf /", "one line"),
    ("probe_path", "health", "is not an HTTP path"),
    ("probe_path", "/a b", "is not an HTTP path"),
    ("startup_timeout_seconds", 10, "greater than or equal to 30"),
    ("probe", "grpc", "is not a valid choice"),
])
def test_bad_commands_and_probes_are_refused_on_the_field(field, value, fragment):
    project = project_factory(containers=())
    assert_field_error(Container(project=project, directory="web", image="tesslate-devserver:latest",
                                 **{field: value}), field, fragment)


def test_every_container_gets_its_own_id():
    project = project_factory(containers=("web", "api"))
    ids = list(project.containers.values_list("uuid", flat=True))
    assert len(set(ids)) == 2 and all(ids)
    with pytest.raises(ValidationError):
        Container(project=project, directory="other", image="tesslate-devserver:latest", uuid=ids[0]).full_clean()
