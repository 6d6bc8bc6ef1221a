"""Docker Compose environments (deployments/rendering/compose.py): the rendered tree of the demo server, the
Compose schema, project networks, PostgreSQL tuning, Traefik, and the validation gate (validation/compose.py)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.urls import reverse

from deployments.models import Environment, Secret
from deployments.rendering import render_tree
from deployments.rendering.compose import compose_cpus, compose_memory, postgres_tuning
from deployments.secrets import crypto
from deployments.selectors import environments_snapshot
from deployments.validation import tree_validate
from deployments.validation.compose import (
    compose_isolation_problems,
    compose_schema_validator,
    compose_tree_validate,
)
from projects.demo import demo_load, demo_project_id
from tests.factories import environment_factory, project_factory, secret_factory

pytestmark = pytest.mark.django_db

ENV = "single-server"
PREFIX = f"environments/{ENV}/"
COMPOSE = PREFIX + "compose/compose.yaml"
PLATFORM_SERVICES = {"backend", "frontend", "worker", "postgres", "redis", "traefik"}


@pytest.fixture
def gitops_source(settings):
    settings.GITOPS_SOURCE_URL = "https://git.example.com/tesslate/gitops.git"
    settings.GITOPS_BRANCH = "main"


@pytest.fixture
def demo_tree(gitops_source):
    demo_load()
    return render_tree(environments_snapshot())


@pytest.fixture
def schema_validator(settings):
    validator = compose_schema_validator(settings.COMPOSE_SCHEMA_PATH)
    if validator is None:
        pytest.skip(f"the Compose Specification schema is not at {settings.COMPOSE_SCHEMA_PATH}")
    return validator


def compose_env(**overrides) -> Environment:
    fields = dict(kind=Environment.Kind.COMPOSE, tls_mode=Environment.TLSMode.LETSENCRYPT_HTTP01,
                  acme_email="ops@example.com", server_ip="198.51.100.7")
    fields.update(overrides)
    return environment_factory(**fields)


def render_env(environment: Environment) -> dict[str, bytes]:
    return render_tree(environments_snapshot(environment_ids=[environment.pk]))


def load(tree: dict[str, bytes], path: str):
    return yaml.safe_load(tree[path])


def write(tree: dict[str, bytes], root: Path) -> Path:
    for path, content in tree.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    return root


# --- the compose file ---------------------------------------------------------------------------------------------

def test_demo_compose_file_validates_against_the_compose_specification(demo_tree, schema_validator):
    document = load(demo_tree, COMPOSE)
    assert list(schema_validator.iter_errors(document)) == []
    # The check can fail: a misspelt key and a wrong type are both refused.
    document["services"]["backend"]["restartt"] = "always"
    document["services"]["redis"]["healthcheck"]["retries"] = ["3"]
    errors = {".".join(map(str, e.absolute_path)) for e in schema_validator.iter_errors(document)}
    assert errors >= {"services.backend", "services.redis.healthcheck.retries"}


def test_platform_services_have_health_checks_restart_policies_limits_and_log_rotation(demo_tree):
    services = load(demo_tree, COMPOSE)["services"]
    assert PLATFORM_SERVICES <= set(services)
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert service["logging"] == {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}}, name
        assert set(service["deploy"]["resources"]["limits"]) == {"cpus", "memory"}, name
    backend = services["backend"]
    assert "http://127.0.0.1:8000/health" in " ".join(backend["healthcheck"]["test"])
    assert backend["healthcheck"]["interval"] == "10s" and backend["healthcheck"]["retries"] == 3
    # The environment's backend resources, in Compose units.
    assert backend["deploy"]["resources"] == {"limits": {"cpus": "2", "memory": "2048m"},
                                              "reservations": {"cpus": "0.5", "memory": "1024m"}}
    assert backend["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                     "redis": {"condition": "service_healthy"}}
    assert backend["environment"]["DEPLOYMENT_MODE"] == "docker"
    assert backend["environment"]["APP_BASE_URL"] == "https://studio.example.org"
    assert backend["env_file"] == [{"path": "/run/tesslate/single-server/tesslate-app-secrets.env", "format": "raw"}]
    assert services["worker"]["command"] == ["arq", "app.worker.WorkerSettings"]
    assert services["postgres"]["env_file"] == [
        {"path": "/run/tesslate/single-server/postgres-secret.env", "format": "raw"}]
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert services["traefik"]["ports"] == ["80:80", "443:443"]
    assert set(load(demo_tree, COMPOSE)["volumes"]) >= {"postgres-data", "redis-data", "traefik-letsencrypt"}


def test_projects_are_isolated_on_their_own_networks(demo_tree):
    document = load(demo_tree, COMPOSE)
    services = document["services"]
    wiki, status = (str(demo_project_id(ENV, slug)) for slug in ("team-wiki", "status-page"))
    expected = {
        f"proj-{wiki}-file-manager", f"proj-{wiki}-dev-frontend", f"proj-{wiki}-dev-backend", f"proj-{wiki}-svc-db",
        f"proj-{status}-file-manager", f"proj-{status}-dev-frontend",
    }
    assert set(services) == PLATFORM_SERVICES | expected
    for name in expected:
        project = wiki if wiki in name else status
        assert list(services[name]["networks"]) == [f"proj-{project}"], name
        assert services[name]["labels"]["tesslate.io/project-id"] == project
    # Containers of a project reach each other by their Kubernetes names, only on their network.
    assert services[f"proj-{wiki}-svc-db"]["networks"] == {f"proj-{wiki}": {"aliases": ["svc-db"]}}
    assert services[f"proj-{wiki}-svc-db"]["volumes"] == [f"proj-{wiki}-svc-db-data:/var/lib/postgresql/data"]
    assert services[f"proj-{wiki}-dev-frontend"]["volumes"] == [f"proj-{wiki}-storage:/app"]
    assert services[f"proj-{wiki}-dev-frontend"]["user"] == "1000:1000"
    # Only Traefik joins every project network; the platform stays on its own.
    assert sorted(services["traefik"]["networks"]) == sorted(["tesslate", f"proj-{wiki}", f"proj-{status}"])
    for name in PLATFORM_SERVICES - {"traefik"}:
        assert services[name]["networks"] == ["tesslate"]
    assert compose_isolation_problems(document) == []

    # The rule can fail: a service of one project on another project's network, a platform service on a
    # project network.
    services[f"proj-{status}-dev-frontend"]["networks"][f"proj-{wiki}"] = {}
    services["backend"]["networks"].append(f"proj-{wiki}")
    problems = compose_isolation_problems(document)
    assert len(problems) == 2
    assert f"proj-{status}-dev-frontend of project {status} joins network(s) proj-{wiki}" in problems[1]
    assert "services.backend is not a project service but joins" in problems[0]


@pytest.mark.parametrize(("ram_gb", "expected"), [
    # memory limit, shared_buffers, effective_cache_size, maintenance_work_mem, work_mem, max_connections
    (4, (1024, 256, 768, 64, 5, 50)),
    (16, (4096, 1024, 3072, 256, 6, 160)),
    (64, (16384, 4096, 12288, 1024, 20, 200)),
])
def test_postgres_tuning_follows_the_server_memory(ram_gb, expected):
    tuning = postgres_tuning(ram_gb)
    assert (tuning.memory_limit_mb, tuning.shared_buffers_mb, tuning.effective_cache_size_mb,
            tuning.maintenance_work_mem_mb, tuning.work_mem_mb, tuning.max_connections) == expected


def test_rendered_postgres_settings_change_with_the_modeled_ram(gitops_source):
    environment = compose_env(server_ram_gb=16)
    postgres = load(render_env(environment), f"environments/{environment.name}/compose/compose.yaml")[
        "services"]["postgres"]
    assert postgres["command"] == ["postgres", "-c", "max_connections=160", "-c", "shared_buffers=1024MB",
                                   "-c", "effective_cache_size=3072MB", "-c", "maintenance_work_mem=256MB",
                                   "-c", "work_mem=6MB"]
    assert postgres["deploy"]["resources"]["limits"]["memory"] == "4096m"
    Environment.objects.filter(pk=environment.pk).update(server_ram_gb=64)
    postgres = load(render_env(environment), f"environments/{environment.name}/compose/compose.yaml")[
        "services"]["postgres"]
    assert "shared_buffers=4096MB" in postgres["command"] and "max_connections=200" in postgres["command"]


@pytest.mark.parametrize(("quantity", "cpus"), [("500m", "0.5"), ("2", "2"), ("1.5", "1.5"), ("250m", "0.25")])
def test_cpu_quantities_in_compose_units(quantity, cpus):
    assert compose_cpus(quantity) == cpus


@pytest.mark.parametrize(("quantity", "memory"), [("1Gi", "1024m"), ("512Mi", "512m"), ("2G", "1907m"),
                                                  ("1Ki", "6m")])
def test_memory_quantities_in_compose_units(quantity, memory):
    assert compose_memory(quantity) == memory


# --- Traefik ------------------------------------------------------------------------------------------------------

def test_traefik_http01_redirects_to_https_and_routes_studio_and_project_hosts(demo_tree):
    static = load(demo_tree, PREFIX + "compose/traefik/traefik.yaml")
    assert static["entryPoints"]["web"]["http"]["redirections"]["entryPoint"] == {
        "to": "websecure", "scheme": "https", "permanent": True}
    assert static["certificatesResolvers"]["letsencrypt"]["acme"] == {
        "email": "admin@example.org", "storage": "/letsencrypt/acme.json", "httpChallenge": {"entryPoint": "web"}}
    assert static["providers"]["file"]["directory"] == "/etc/traefik/dynamic" and "ping" in static
    dynamic = load(demo_tree, PREFIX + "compose/traefik/dynamic.yaml")["http"]
    wiki = demo_project_id(ENV, "team-wiki")
    assert dynamic["routers"]["studio"]["rule"] == "Host(`studio.example.org`)"
    assert dynamic["routers"]["studio-api"]["service"] == "backend"
    assert "PathPrefix(`/api`)" in dynamic["routers"]["studio-api"]["rule"]
    router = dynamic["routers"][f"proj-{wiki}-dev-frontend"]
    assert router["rule"] == "Host(`team-wiki-frontend.studio.example.org`)"
    assert router["tls"] == {"certResolver": "letsencrypt"} and router["entryPoints"] == ["websecure"]
    assert dynamic["services"][f"proj-{wiki}-dev-frontend"] == {
        "loadBalancer": {"servers": [{"url": f"http://proj-{wiki}-dev-frontend:5173"}]}}
    assert not any("svc-db" in name for name in dynamic["routers"]), "databases are not published"
    assert dynamic["middlewares"]["security-headers"]["headers"]["stsSeconds"] == 31536000


def test_traefik_dns01_gets_a_wildcard_certificate_and_the_cloudflare_token(gitops_source):
    environment = compose_env(acme_challenge=Environment.AcmeChallenge.DNS01, app_domain="studio.corp.example",
                              age_recipient=_recipient())
    secret_factory(environment, secret_name="cloudflare", key="CF_DNS_API_TOKEN", value="cf-token-value")
    tree = render_env(environment)
    prefix = f"environments/{environment.name}/compose/"
    static = yaml.safe_load(tree[prefix + "traefik/traefik.yaml"])
    assert static["certificatesResolvers"]["letsencrypt"]["acme"]["dnsChallenge"]["provider"] == "cloudflare"
    assert "httpChallenge" not in static["certificatesResolvers"]["letsencrypt"]["acme"]
    assert static["entryPoints"]["websecure"]["http"]["tls"]["domains"] == [
        {"main": "studio.corp.example", "sans": ["*.studio.corp.example"]}]
    traefik = yaml.safe_load(tree[prefix + "compose.yaml"])["services"]["traefik"]
    assert traefik["env_file"] == [{"path": f"/run/tesslate/{environment.name}/cloudflare.env", "format": "raw"}]
    assert b"cf-token-value" not in b"".join(tree.values())


def test_without_tls_traefik_serves_http_only(gitops_source):
    environment = compose_env(tls_mode=Environment.TLSMode.NONE, acme_email="")
    tree = render_env(environment)
    prefix = f"environments/{environment.name}/compose/"
    static = yaml.safe_load(tree[prefix + "traefik/traefik.yaml"])
    assert list(static["entryPoints"]) == ["web"] and "http" not in static["entryPoints"]["web"]
    assert "certificatesResolvers" not in static
    assert yaml.safe_load(tree[prefix + "compose.yaml"])["services"]["traefik"]["ports"] == ["80:80"]
    routers = yaml.safe_load(tree[prefix + "traefik/dynamic.yaml"])["http"]["routers"]
    assert all(router["entryPoints"] == ["web"] and "tls" not in router for router in routers.values())


# --- secrets, determinism -----------------------------------------------------------------------------------------

def _recipient() -> str:
    import pyrage

    return str(pyrage.x25519.Identity.generate().to_public())


def test_env_templates_hold_references_only_and_no_value_reaches_the_tree(demo_tree):
    templates = {path: content.decode() for path, content in demo_tree.items() if path.endswith(".env.template")}
    assert set(templates) == {PREFIX + "compose/env/postgres-secret.env.template",
                              PREFIX + "compose/env/tesslate-app-secrets.env.template"}
    references = 0
    for text in templates.values():
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, reference = line.partition("=")
                assert reference == f"age:secrets/{reference.split('/')[1]}/{key}.age"
                assert demo_tree[PREFIX + reference[4:]].startswith(b"-----BEGIN AGE ENCRYPTED FILE-----\n")
                references += 1
    assert references == 8  # 5 app keys (REDIS_URL among them) + 3 of postgres-secret
    everything = b"".join(demo_tree.values())
    for secret in Secret.objects.filter(environment__name=ENV):
        assert crypto.decrypt(secret.ciphertext).encode() not in everything
        assert secret.age_value.encode() in everything


def test_renders_are_deterministic_and_only_a_rotated_key_changes(gitops_source):
    environment = compose_env(age_recipient=_recipient())
    first = secret_factory(environment, key="SECRET_KEY", value="first-value")
    secret_factory(environment, key="DATABASE_URL", value="postgresql://u:p@postgres/db")
    before = render_env(environment)
    assert render_env(environment) == before
    from deployments import services

    services.secret_store_value(secret=Secret.objects.get(pk=first.pk), value="first-value")  # the same value
    assert render_env(environment) == before
    services.secret_store_value(secret=Secret.objects.get(pk=first.pk), value="rotated-value")
    after = render_env(environment)
    changed = sorted(path for path in after if after[path] != before.get(path))
    assert changed == [f"environments/{environment.name}/secrets/tesslate-app-secrets/SECRET_KEY.age"]


def test_a_secret_without_a_recipient_is_left_out(gitops_source):
    environment = compose_env()
    secret_factory(environment, key="SECRET_KEY", value="value-1")
    tree = render_env(environment)
    assert not any(path.endswith(".age") for path in tree)
    template = tree[f"environments/{environment.name}/compose/env/tesslate-app-secrets.env.template"].decode()
    assert "SECRET_KEY" not in template and "value-1" not in template


# --- the validation gate ------------------------------------------------------------------------------------------

def test_the_gate_passes_the_demo_compose_folder(demo_tree, tmp_path, settings, schema_validator):
    root = write(demo_tree, tmp_path / "tree")
    messages: list[str] = []
    assert compose_tree_validate(root=root, schema_path=settings.COMPOSE_SCHEMA_PATH, report=messages.append) == []
    assert messages == ["Checked 1 Compose environment folder(s): 0 problem(s)."]
    # Through the whole gate, limited to the Compose folder (no kustomize build is affected).
    messages.clear()
    assert tree_validate(root=root, paths=[COMPOSE], progress=messages.append) == []
    assert any("Checked 1 Compose environment folder(s)" in message for message in messages)


def test_the_gate_refuses_broken_compose_folders(demo_tree, tmp_path, settings, schema_validator):
    root = write(demo_tree, tmp_path / "tree")
    document = load(demo_tree, COMPOSE)
    document["services"]["backend"]["restartt"] = "always"
    wiki, status = (str(demo_project_id(ENV, slug)) for slug in ("team-wiki", "status-page"))
    document["services"][f"proj-{status}-file-manager"]["networks"][f"proj-{wiki}"] = {}
    (root / COMPOSE).write_text(yaml.safe_dump(document))
    dynamic = load(demo_tree, PREFIX + "compose/traefik/dynamic.yaml")
    dynamic["http"]["routers"]["studio"]["service"] = "no-such-service"
    (root / PREFIX / "compose/traefik/dynamic.yaml").write_text(yaml.safe_dump(dynamic))
    template = root / PREFIX / "compose/env/tesslate-app-secrets.env.template"
    template.write_text(template.read_text() + "LEAKED=plain-text-value\n")
    (root / PREFIX / "scripts/tesslate-backup.sh").write_text("#!/usr/bin/env bash\nif then fi\n")
    (root / PREFIX / "scripts/tesslate-deploy.sh").write_text("#!/usr/bin/env bash\necho $UNQUOTED_VAR\n")

    problems = compose_tree_validate(root=root, schema_path=settings.COMPOSE_SCHEMA_PATH)
    rules = {(problem.file.removeprefix(PREFIX), problem.rule) for problem in problems}
    expected = {("compose/compose.yaml", "compose-schema"), ("compose/compose.yaml", "compose-isolation"),
                ("compose/traefik/dynamic.yaml", "traefik-config"),
                ("compose/env/tesslate-app-secrets.env.template", "secret-reference"),
                ("scripts/tesslate-backup.sh", "shell-syntax")}
    if shutil.which("shellcheck"):
        expected.add(("scripts/tesslate-deploy.sh", "shellcheck"))
    assert rules == expected
    assert all("plain-text-value" not in str(problem) for problem in problems)  # the value is never echoed
    assert tree_validate(root=root, paths=[PREFIX + "compose"]) != []  # the gate reports them too


def test_the_gate_skips_the_schema_with_a_message_when_it_is_absent(demo_tree, tmp_path):
    root = write(demo_tree, tmp_path / "tree")
    messages: list[str] = []
    assert compose_tree_validate(root=root, schema_path=str(tmp_path / "missing.json"), report=messages.append) == []
    assert "not checked against the Compose Specification" in messages[0] and "COMPOSE_SCHEMA_PATH" in messages[0]


# --- the environment page and the model rules ---------------------------------------------------------------------

def test_environment_page_shows_dns_records_prerequisites_and_ssl_hints(client, gitops_source):
    demo_load()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password-1"))
    environment = Environment.objects.get(name=ENV)
    page = client.get(reverse("admin:deployments_environment_change", args=[environment.pk])).content.decode()
    assert "<code>studio.example.org</code></td><td>203.0.113.10</td><td>300</td>" in page
    assert "<code>*.studio.example.org</code></td><td>203.0.113.10</td><td>300</td>" in page
    assert "16 GB modeled; the guide recommends 16 GB." in page and "100 GB modeled" in page
    assert "Port 80 blocked by a firewall" in page and "5 duplicate certificates per week" in page
    # 203.0.113.0/24 is a documentation network: Let's Encrypt could not reach it.
    assert "203.0.113.10 is not a public address" in page

    Environment.objects.filter(pk=environment.pk).update(server_ram_gb=8, server_disk_gb=40)
    page = client.get(reverse("admin:deployments_environment_change", args=[environment.pk])).content.decode()
    assert '<tr class="check-fail"><td>Memory</td><td>Check</td><td>8 GB modeled' in page
    assert '<tr class="check-fail"><td>Disk</td><td>Check</td><td>40 GB modeled' in page
    # Kubernetes environments have no Compose section.
    minikube = Environment.objects.get(name="minikube")
    page = client.get(reverse("admin:deployments_environment_change", args=[minikube.pk])).content.decode()
    assert "Docker Compose server" not in page and 'name="server_ip"' not in page


@pytest.mark.parametrize(("overrides", "field", "fragment"), [
    (dict(tls_mode="cert-manager-dns01"), "tls_mode", "cert-manager runs in Kubernetes"),
    (dict(age_recipient="age1notarecipient"), "age_recipient", "is not an age X25519 recipient"),
    (dict(age_recipient="AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"),
     "age_recipient", "This is an age identity"),
    (dict(server_ip="300.1.2.3"), "server_ip", "valid IPv4 or IPv6"),
    (dict(server_ram_gb=0), "server_ram_gb", "greater than or equal to 1"),
    (dict(backup_schedule="03:00\nExecStart=/bin/sh"), "backup_schedule", "not a systemd calendar expression"),
    (dict(backup_schedule="sometimes"), "backup_schedule", "not a systemd calendar shorthand"),
    (dict(backup_retention_days=0), "backup_retention_days", "greater than or equal to 1"),
    (dict(backup_s3_bucket="Bad_Bucket"), "backup_s3_bucket", "is not an S3 bucket name"),
    (dict(backup_s3_bucket="ok-bucket", backup_s3_prefix="../up"), "backup_s3_prefix", "not a usable S3 key"),
    (dict(backup_s3_region="moon-1"), "backup_s3_region", "is not an AWS region"),
    (dict(backup_s3_region="eu-west-1"), "backup_s3_bucket", "needs a bucket"),
    (dict(server_monthly_price=-1), "server_monthly_price", "greater than or equal to 0"),
])
def test_compose_fields_refuse_bad_input(overrides, field, fragment):
    from tests.factories import field_errors

    fields = dict(name="srv", kind=Environment.Kind.COMPOSE, app_domain="studio.example.com")
    fields.update(overrides)
    errors = field_errors(Environment(**fields))
    assert field in errors and any(fragment in message for message in errors[field]), errors


def test_good_compose_settings_are_accepted():
    environment = compose_env(age_recipient=_recipient(), backup_schedule="Mon..Fri 02:30", backup_s3_bucket=
                              "my.backups-1", backup_s3_prefix="studio/prod/", backup_s3_region="eu-central-1",
                              server_ip="2001:db8::10", acme_challenge="dns-01")
    assert environment.backup_s3_key_prefix == "studio/prod/"
    assert compose_env().backup_s3_key_prefix == f"tesslate-backups/{Environment.objects.last().name}/"
    assert compose_env().server_monthly_price == 120  # the guide's monthly server price


def test_project_hosts_follow_the_app_domain(gitops_source):
    environment = compose_env(app_domain="dev.example.net")
    project = project_factory(environment, slug="shop", containers=("web",))
    dynamic = yaml.safe_load(render_env(environment)[f"environments/{environment.name}/compose/traefik/dynamic.yaml"])
    router = dynamic["http"]["routers"][f"proj-{project.id}-dev-web"]
    assert router["rule"] == "Host(`shop-web.dev.example.net`)"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("schedule", ["*-*-* 03:00:00", "Mon..Fri 02:30", "daily", "Sun *-*-1..7 04:00",
                                      "*-*-* 00/6:00:00"])
def test_schedules_the_model_accepts_are_systemd_calendar_events(schedule):
    from deployments.validators import validate_systemd_calendar

    validate_systemd_calendar(schedule)
    result = subprocess.run(["systemd-analyze", "calendar", schedule], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
