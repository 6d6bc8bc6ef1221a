"""Docker Compose environments (the guide's Path 1: one Linux server, Docker Compose, Traefik, Let's Encrypt).

Everything a Compose server needs lives under ``environments/<env>/``; the server follows the repository with a
rendered pull unit (systemd service + timer) instead of Argo CD or Flux:

    README.md                           DNS records, server prerequisites, how the server follows git
    compose/compose.yaml                the Compose Specification file (platform + project services)
    compose/env/<secret>.env.template   one per Secret: KEY=age:<file> references, never a value
    compose/traefik/traefik.yaml        Traefik's static configuration (entry points, ACME resolver)
    compose/traefik/dynamic.yaml        routers and services (studio.<domain>, project hosts), middlewares
    secrets/<secret>/<KEY>.age          each value encrypted to the server's age recipient (ASCII armor)
    scripts/tesslate-deploy.sh          fetch, verify, decrypt, `docker compose up -d --remove-orphans`
    scripts/tesslate-backup.sh          pg_dump | gzip, retention, optional upload to S3
    systemd/tesslate-{deploy,backup}.{service,timer}

Pure like the rest of the renderer: frozen snapshot data in, bytes out. The age ciphertexts are read from the
snapshot (encrypted in ``deployments.secrets.age`` when a value or the recipient changes).
"""

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from deployments import domain
from deployments.rendering.common import (
    DEVSERVER_IMAGE,
    MANAGED_BY,
    SERVICE_DATA_PATHS,
    image_reference,
    image_repository,
)
from deployments.rendering.snapshot import EnvironmentSnapshot, ProjectSnapshot, SecretSnapshot
from deployments.rendering.templating import render_template

# Where things live on the server (the README and the deploy script say the same).
SERVER_CHECKOUT = "/opt/tesslate/repo"
SERVER_RUNTIME = "/run/tesslate"          # tmpfs: decrypted values never touch the disk
SERVER_STATE = "/var/lib/tesslate"
SERVER_AGE_IDENTITY = "/etc/tesslate/age.key"
SERVER_ALLOWED_SIGNERS = "/etc/tesslate/allowed_signers"
SERVER_BACKUP_DIR = "/var/backups/tesslate"

PLATFORM_NETWORK = "tesslate"
POSTGRES_IMAGE = "postgres:16-alpine"
REDIS_IMAGE = "redis:7-alpine"
TRAEFIK_IMAGE = "traefik:v3.3"
POSTGRES_SECRET = "postgres-secret"
CERT_RESOLVER = "letsencrypt"
CLOUDFLARE_TOKEN_KEY = "CF_DNS_API_TOKEN"
# The guide's log rotation: json-file, 10 MB per file, 3 files per container.
LOGGING = {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}}
# The guide's Docker resource limits for the platform services that have no field of their own.
FIXED_LIMITS = {
    "frontend": ("0.5", "256Mi", "0.05", "64Mi"),
    "worker": ("1", "1Gi", "0.25", "512Mi"),
    "redis": ("0.5", "512Mi", "0.05", "64Mi"),
    "traefik": ("0.5", "256Mi", "0.05", "64Mi"),
}
# The backend's probes (DOMAIN.md): /health every 10 s, 5 s timeout, 3 failures; about 2 minutes to boot.
BACKEND_HEALTH_URL = "http://127.0.0.1:8000/health"


# --- PostgreSQL tuning ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PostgresTuning:
    """PostgreSQL settings derived from the server's memory (all sizes in MB).

    PostgreSQL shares the server with the platform and every dev container, so it gets a quarter of the RAM as its
    container limit; inside that budget the usual rules apply (PostgreSQL wiki "Tuning Your PostgreSQL Server"):
    shared_buffers 25 %, effective_cache_size 75 %, maintenance_work_mem 1/16 (at most 1 GB), and work_mem such that
    three sorts per connection fit into what shared_buffers leaves (at least 4 MB).
    """

    memory_limit_mb: int
    shared_buffers_mb: int
    effective_cache_size_mb: int
    maintenance_work_mem_mb: int
    work_mem_mb: int
    max_connections: int

    def command(self) -> list[str]:
        return ["postgres",
                "-c", f"max_connections={self.max_connections}",
                "-c", f"shared_buffers={self.shared_buffers_mb}MB",
                "-c", f"effective_cache_size={self.effective_cache_size_mb}MB",
                "-c", f"maintenance_work_mem={self.maintenance_work_mem_mb}MB",
                "-c", f"work_mem={self.work_mem_mb}MB"]


def postgres_tuning(ram_gb: int) -> PostgresTuning:
    """The tuning for a server with ``ram_gb`` GB of memory (1 GB = 1024 MB). 16 GB gives a 4096 MB container,
    shared_buffers 1024 MB, effective_cache_size 3072 MB, maintenance_work_mem 256 MB, max_connections 160,
    work_mem 6 MB."""
    budget = ram_gb * 1024 // 4
    shared = budget // 4
    max_connections = min(200, max(50, ram_gb * 10))
    return PostgresTuning(
        memory_limit_mb=budget, shared_buffers_mb=shared, effective_cache_size_mb=budget * 3 // 4,
        maintenance_work_mem_mb=min(1024, budget // 16), max_connections=max_connections,
        work_mem_mb=max(4, (budget - shared) // (max_connections * 3)),
    )


# --- quantities -------------------------------------------------------------------------------------------------

def compose_cpus(quantity: str) -> str:
    """A Kubernetes CPU quantity (``500m``, ``2``) as Compose ``cpus`` (``0.5``, ``2``)."""
    value = domain.quantity_amount(quantity)
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def compose_memory(quantity: str) -> str:
    """A Kubernetes memory quantity (``1Gi``, ``512Mi``, ``2G``) as Compose bytes in MiB (``1024m``), rounded down,
    at least 6 MiB (Docker's minimum)."""
    mib = (domain.quantity_amount(quantity) / Decimal(2 ** 20)).to_integral_value(rounding=ROUND_FLOOR)
    return f"{max(6, int(mib))}m"


def _resources(cpu_limit: str, memory_limit: str, cpu_request: str, memory_request: str) -> dict:
    return {"resources": {
        "limits": {"cpus": compose_cpus(cpu_limit), "memory": compose_memory(memory_limit)},
        "reservations": {"cpus": compose_cpus(cpu_request), "memory": compose_memory(memory_request)},
    }}


# --- secrets ----------------------------------------------------------------------------------------------------

def compose_delivered_secrets(env: EnvironmentSnapshot) -> dict[str, list[SecretSnapshot]]:
    """Secret name -> the keys that reach the server (those with an age ciphertext), sorted by key.

    Every Secret name appears, even with no key delivered yet, so the services' env files always exist.
    """
    grouped: dict[str, list[SecretSnapshot]] = {}
    for secret in env.secrets:
        keys = grouped.setdefault(secret.secret_name, [])
        if secret.age_value:
            keys.append(secret)
    return {name: sorted(keys, key=lambda s: s.key) for name, keys in sorted(grouped.items())}


def secret_file(secret: SecretSnapshot) -> str:
    """Where a key's ciphertext lives, relative to ``environments/<env>/``."""
    return f"secrets/{secret.secret_name}/{secret.key}.age"


# --- names ------------------------------------------------------------------------------------------------------

def project_network(project: ProjectSnapshot) -> str:
    """The project's own Docker network (the guide's project isolation: "Docker networks")."""
    return f"proj-{project.id}"


def project_service(project: ProjectSnapshot, workload: str) -> str:
    """Compose service name of a project workload (``file-manager``, ``dev-frontend``, ``svc-db``): unique in the
    file and resolvable by Traefik, which joins every project network."""
    return f"proj-{project.id}-{workload}"


def project_host(env: EnvironmentSnapshot, project: ProjectSnapshot, directory: str) -> str:
    """``{slug}-{dir}.{app domain}`` (one label deep, so a wildcard certificate covers it; DOMAIN.md)."""
    return f"{project.slug}-{directory}.{env.app_domain}"


def _data_path(image: str) -> str:
    family = image_repository(image).rsplit("/", 1)[-1]
    return next((path for prefix, path in SERVICE_DATA_PATHS if family.startswith(prefix)), "/data")


# --- compose.yaml -----------------------------------------------------------------------------------------------

def _tls(env: EnvironmentSnapshot) -> bool:
    return env.tls_mode != domain.TLS_NONE


def _dns01(env: EnvironmentSnapshot) -> bool:
    return _tls(env) and env.acme_challenge == domain.ACME_DNS01


def _runtime(env: EnvironmentSnapshot) -> str:
    return f"{SERVER_RUNTIME}/{env.name}"


def _env_files(env: EnvironmentSnapshot, names: list[str]) -> list[dict]:
    # format raw: each line is KEY=VALUE taken literally (no quotes, no interpolation of '$' in values).
    return [{"path": f"{_runtime(env)}/{name}.env", "format": "raw"} for name in names]


def platform_environment(env: EnvironmentSnapshot) -> dict[str, str]:
    """Non-secret settings of the backend and worker (DOMAIN.md's config keys, in Docker mode)."""
    tls = _tls(env)
    return {
        "APP_BASE_URL": f"{'https' if tls else 'http'}://{env.app_domain}",
        "APP_DOMAIN": env.app_domain,
        "COOKIE_SECURE": "true" if tls else "false",
        "DEPLOYMENT_MODE": "docker",
        "DEVSERVER_IMAGE": image_reference(env.image_registry, DEVSERVER_IMAGE, env.image_tag),
        "REDIS_URL": "redis://redis:6379/0",
    }


def _service_base(image: str, networks) -> dict:
    return {"image": image, "restart": "unless-stopped", "logging": LOGGING, "networks": networks}


def compose_document(env: EnvironmentSnapshot) -> dict:
    """The Compose Specification document as plain data (dicts in the order they are written)."""
    delivered = compose_delivered_secrets(env)
    secret_keys = {secret.key for keys in delivered.values() for secret in keys}
    app_secret_names = [name for name in delivered if name != POSTGRES_SECRET]
    # A key delivered as a secret wins over the default (Compose: `environment` would override `env_file`).
    config = {key: value for key, value in platform_environment(env).items() if key not in secret_keys}
    backend_image = image_reference(env.image_registry, "tesslate-backend", env.image_tag)
    tuning = postgres_tuning(env.server_ram_gb)
    healthy = {"postgres": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"}}
    services: dict[str, dict] = {}

    backend = _service_base(backend_image, [PLATFORM_NETWORK])
    backend.update({
        "environment": config,
        "env_file": _env_files(env, app_secret_names),
        "depends_on": healthy,
        "healthcheck": {
            "test": ["CMD", "python", "-c",
                     f"import urllib.request; urllib.request.urlopen('{BACKEND_HEALTH_URL}', timeout=4)"],
            "interval": "10s", "timeout": "5s", "retries": 3, "start_period": "120s",
        },
        "deploy": _resources(env.backend_cpu_limit, env.backend_memory_limit, env.backend_cpu_request,
                             env.backend_memory_request),
        "stop_grace_period": "30s",
    })
    if not backend["env_file"]:
        del backend["env_file"]
    services["backend"] = backend

    frontend = _service_base(image_reference(env.image_registry, "tesslate-frontend", env.image_tag),
                             [PLATFORM_NETWORK])
    frontend.update({
        "depends_on": {"backend": {"condition": "service_started"}},
        "healthcheck": {"test": ["CMD", "wget", "-q", "--spider", "http://127.0.0.1:80/"],
                        "interval": "10s", "timeout": "3s", "retries": 3},
        "deploy": _resources(*FIXED_LIMITS["frontend"]),
    })
    services["frontend"] = frontend

    worker = _service_base(backend_image, [PLATFORM_NETWORK])
    worker.update({"command": ["arq", "app.worker.WorkerSettings"], "environment": config,
                   "env_file": _env_files(env, app_secret_names), "depends_on": healthy,
                   "deploy": _resources(*FIXED_LIMITS["worker"]), "stop_grace_period": "30s"})
    if not worker["env_file"]:
        del worker["env_file"]
    services["worker"] = worker

    postgres = _service_base(POSTGRES_IMAGE, [PLATFORM_NETWORK])
    postgres.update({
        "command": tuning.command(),
        "environment": {"PGDATA": "/var/lib/postgresql/data/pgdata"},
        "volumes": ["postgres-data:/var/lib/postgresql/data"],
        "shm_size": f"{max(64, tuning.shared_buffers_mb // 4)}m",
        "healthcheck": {"test": ["CMD", "pg_isready", "-h", "127.0.0.1", "-p", "5432"],
                        "interval": "10s", "timeout": "5s", "retries": 5, "start_period": "30s"},
        "deploy": {"resources": {"limits": {"cpus": "2", "memory": f"{tuning.memory_limit_mb}m"},
                                 "reservations": {"memory": f"{tuning.shared_buffers_mb}m"}}},
        "stop_grace_period": "60s",
    })
    if POSTGRES_SECRET in delivered:
        # POSTGRES_DB / POSTGRES_USER / POSTGRES_PASSWORD (DOMAIN.md's postgres-secret).
        postgres["env_file"] = _env_files(env, [POSTGRES_SECRET])
    services["postgres"] = postgres

    redis = _service_base(REDIS_IMAGE, [PLATFORM_NETWORK])
    redis.update({
        "command": ["redis-server", "--appendonly", "yes", "--maxmemory-policy", "noeviction"],
        "volumes": ["redis-data:/data"],
        "healthcheck": {"test": ["CMD", "redis-cli", "ping"], "interval": "10s", "timeout": "3s", "retries": 5},
        "deploy": _resources(*FIXED_LIMITS["redis"]),
    })
    services["redis"] = redis

    networks: dict[str, dict] = {PLATFORM_NETWORK: {"name": f"tesslate-{env.name}"}}
    volumes: dict[str, dict] = {"postgres-data": {}, "redis-data": {}, "traefik-letsencrypt": {}}
    traefik_networks = [PLATFORM_NETWORK]
    for project in env.projects:
        network = project_network(project)
        networks[network] = {"name": f"tesslate-{env.name}-{network}"}
        traefik_networks.append(network)
        services.update(_project_services(env, project, volumes))

    traefik = _service_base(TRAEFIK_IMAGE, sorted(traefik_networks))
    ports = ["80:80", "443:443"] if _tls(env) else ["80:80"]
    traefik.update({
        "command": ["--configFile=/etc/traefik/traefik.yaml"],
        "ports": ports,
        "volumes": ["./traefik/traefik.yaml:/etc/traefik/traefik.yaml:ro",
                    "./traefik/dynamic.yaml:/etc/traefik/dynamic/dynamic.yaml:ro",
                    "traefik-letsencrypt:/letsencrypt"],
        "healthcheck": {"test": ["CMD", "traefik", "healthcheck", "--ping"], "interval": "10s", "timeout": "5s",
                        "retries": 3},
        "deploy": _resources(*FIXED_LIMITS["traefik"]),
    })
    if _dns01(env):
        traefik["env_file"] = _env_files(env, [name for name, keys in delivered.items()
                                                if any(s.key == CLOUDFLARE_TOKEN_KEY for s in keys)])
        if not traefik["env_file"]:
            del traefik["env_file"]
    services["traefik"] = traefik

    return _escape_interpolation({
        "name": f"tesslate-{env.name}",
        "services": services,
        "networks": networks,
        "volumes": volumes,
    })


def _escape_interpolation(value):
    """Compose interpolates ``$VAR`` in every string of the file; ``$$`` is a literal ``$``."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {key: _escape_interpolation(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escape_interpolation(item) for item in value]
    return value


def _labels(project: ProjectSnapshot, component: str, directory: str | None) -> dict[str, str]:
    labels = {"app.kubernetes.io/managed-by": MANAGED_BY, "tesslate.io/component": component,
              "tesslate.io/project-id": project.id, "tesslate.io/user-id": project.owner}
    if directory:
        labels["tesslate.io/container-directory"] = directory
    return dict(sorted(labels.items()))


def _project_services(env: EnvironmentSnapshot, project: ProjectSnapshot, volumes: dict) -> dict[str, dict]:
    """A project's file manager, dev containers and service containers, on the project's network only."""
    network = project_network(project)
    storage = f"{network}-storage"
    volumes[storage] = {}
    devserver = image_reference(env.image_registry, DEVSERVER_IMAGE, env.image_tag)
    services: dict[str, dict] = {}

    def on_network(alias: str) -> dict:
        # The alias mirrors the Kubernetes Service name, so containers of a project reach each other the same way
        # (a dev container reaches its database as svc-db) — and only inside their own network.
        return {network: {"aliases": [alias]}}

    file_manager = _service_base(devserver, on_network("file-manager"))
    file_manager.update({
        "command": ["tail", "-f", "/dev/null"], "user": "1000:1000",
        "labels": _labels(project, "file-manager", None), "volumes": [f"{storage}:/app"],
        "deploy": _resources("1", "1536Mi", "0.05", "256Mi"),
    })
    services[project_service(project, "file-manager")] = file_manager

    for container in project.containers:
        workload = f"{'svc' if container.is_service else 'dev'}-{container.directory}"
        service = _service_base(container.image, on_network(workload))
        service["deploy"] = _resources(container.cpu_limit, container.memory_limit, container.cpu_request,
                                       container.memory_request)
        if container.is_service:
            data = f"{network}-{workload}-data"
            volumes[data] = {}
            data_path = _data_path(container.image)
            service["labels"] = _labels(project, "service-container", container.directory)
            service["volumes"] = [f"{data}:{data_path}"]
            if data_path == "/var/lib/postgresql/data":
                service["environment"] = {"PGDATA": data_path + "/pgdata"}
        else:
            service.update({
                "user": "1000:1000", "working_dir": f"/app/{container.directory}",
                "environment": {"HOST": "0.0.0.0", "PORT": str(container.port)},
                "labels": _labels(project, "dev-container", container.directory),
                "volumes": [f"{storage}:/app"],
                "expose": [str(container.port)],
            })
        services[project_service(project, workload)] = service
    return services


# --- Traefik ----------------------------------------------------------------------------------------------------

def traefik_static(env: EnvironmentSnapshot) -> dict:
    """Traefik's static configuration: entry points (HTTP→HTTPS redirect), the file provider, the ACME resolver."""
    entry_points: dict = {"web": {"address": ":80"}}
    document: dict = {"entryPoints": entry_points}
    if _tls(env):
        entry_points["web"]["http"] = {"redirections": {"entryPoint": {
            "to": "websecure", "scheme": "https", "permanent": True}}}
        websecure_tls: dict = {"certResolver": CERT_RESOLVER}
        if _dns01(env):
            websecure_tls["domains"] = [{"main": env.app_domain, "sans": [f"*.{env.app_domain}"]}]
        entry_points["websecure"] = {"address": ":443", "http": {"tls": websecure_tls}}
        acme: dict = {"email": env.acme_email, "storage": "/letsencrypt/acme.json"}
        if _dns01(env):
            acme["dnsChallenge"] = {"provider": "cloudflare", "resolvers": ["1.1.1.1:53", "1.0.0.1:53"]}
        else:
            acme["httpChallenge"] = {"entryPoint": "web"}
        document["certificatesResolvers"] = {CERT_RESOLVER: {"acme": acme}}
    document.update({
        "providers": {"file": {"directory": "/etc/traefik/dynamic", "watch": True}},
        "ping": {},
        "log": {"level": "INFO"},
        "accessLog": {},
        "api": {"dashboard": False},
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
    })
    return document


def traefik_dynamic(env: EnvironmentSnapshot) -> dict:
    """Routers for studio.<domain> (API, WebSocket, /health → backend; the rest → frontend) and every project
    host, services by Compose service name, and the security headers middleware."""
    tls = _tls(env)
    entry = ["websecure"] if tls else ["web"]
    host = f"Host(`{env.app_domain}`)"
    routers: dict[str, dict] = {}
    middlewares = ["security-headers"]

    def router(rule: str, service: str, priority: int | None = None) -> dict:
        item: dict = {"rule": rule, "entryPoints": entry, "service": service, "middlewares": middlewares}
        if priority is not None:
            item["priority"] = priority
        if tls:
            item["tls"] = {"certResolver": CERT_RESOLVER}
        return item

    routers["studio-api"] = router(
        f"{host} && (PathPrefix(`/api`) || PathPrefix(`/ws`) || Path(`/health`))", "backend", 100)
    routers["studio"] = router(host, "frontend", 10)
    services: dict[str, dict] = {
        "backend": {"loadBalancer": {"servers": [{"url": "http://backend:8000"}],
                                     "healthCheck": {"path": "/health", "interval": "10s", "timeout": "5s"}}},
        "frontend": {"loadBalancer": {"servers": [{"url": "http://frontend:80"}]}},
    }
    for project in env.projects:
        for container in project.containers:
            if container.is_service:
                continue  # service containers (databases) are reachable only inside their project network
            name = project_service(project, f"dev-{container.directory}")
            routers[name] = router(f"Host(`{project_host(env, project, container.directory)}`)", name)
            services[name] = {"loadBalancer": {"servers": [{"url": f"http://{name}:{container.port}"}]}}
    headers: dict = {"contentTypeNosniff": True, "referrerPolicy": "strict-origin-when-cross-origin"}
    if tls:
        headers.update({"stsSeconds": 31536000, "stsIncludeSubdomains": True})
    return {"http": {"routers": routers, "services": services,
                     "middlewares": {"security-headers": {"headers": headers}}}}


# --- the unit ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ComposeInput:
    """What the Compose unit reads: the environment and where the server clones the repository from."""

    env: EnvironmentSnapshot
    repo_url: str
    branch: str


def render_compose_environment(data: ComposeInput) -> dict[str, bytes]:
    """Every file of a Compose environment, ``{repository-relative path: bytes}``, sorted by path."""
    env = data.env
    prefix = f"environments/{env.name}/"
    delivered = compose_delivered_secrets(env)
    tuning = postgres_tuning(env.server_ram_gb)
    project_name = f"tesslate-{env.name}"
    context = {
        "env": env.name, "app_domain": env.app_domain, "repo_url": data.repo_url, "branch": data.branch,
        "project_name": project_name, "tls": _tls(env), "dns01": _dns01(env),
        "checkout": SERVER_CHECKOUT, "runtime": _runtime(env), "state_dir": f"{SERVER_STATE}/{env.name}",
        "age_identity": SERVER_AGE_IDENTITY, "allowed_signers": SERVER_ALLOWED_SIGNERS,
        "compose_dir": f"{SERVER_CHECKOUT}/environments/{env.name}/compose",
        "environment_dir": f"{SERVER_CHECKOUT}/environments/{env.name}",
        "backup_dir": f"{SERVER_BACKUP_DIR}/{env.name}",
        "retention_days": env.backup_retention_days, "backup_schedule": env.backup_schedule,
        "s3_bucket": env.backup_s3_bucket,
        "s3_prefix": (env.backup_s3_prefix.strip("/") or f"tesslate-backups/{env.name}") + "/",
        "s3_region": env.backup_s3_region or env.aws_region,
        "deploy_interval": env.deploy_interval_minutes,
        "server_ip": env.server_ip, "ram_gb": env.server_ram_gb, "disk_gb": env.server_disk_gb,
        "tuning": tuning, "secret_names": list(delivered),
        "projects": [{"slug": p.slug, "network": project_network(p),
                      "hosts": [project_host(env, p, c.directory) for c in p.containers if not c.is_service]}
                     for p in env.projects],
    }
    files: dict[str, str] = {
        "README.md": render_template("compose/README.md.j2", context),
        "compose/compose.yaml": render_template("compose/compose.yaml.j2", {
            **context, "document": compose_document(env)}),
        "compose/traefik/traefik.yaml": render_template("compose/traefik.yaml.j2", {
            **context, "document": traefik_static(env)}),
        "compose/traefik/dynamic.yaml": render_template("compose/traefik-dynamic.yaml.j2", {
            **context, "document": traefik_dynamic(env)}),
        "scripts/tesslate-deploy.sh": render_template("compose/tesslate-deploy.sh.j2", context),
        "scripts/tesslate-backup.sh": render_template("compose/tesslate-backup.sh.j2", context),
        "systemd/tesslate-deploy.service": render_template("compose/tesslate-deploy.service.j2", context),
        "systemd/tesslate-deploy.timer": render_template("compose/tesslate-deploy.timer.j2", context),
        "systemd/tesslate-backup.service": render_template("compose/tesslate-backup.service.j2", context),
        "systemd/tesslate-backup.timer": render_template("compose/tesslate-backup.timer.j2", context),
    }
    for name, keys in delivered.items():
        files[f"compose/env/{name}.env.template"] = render_template("compose/env.template.j2", {
            "secret_name": name, "references": [(s.key, f"age:{secret_file(s)}") for s in keys]})
        for secret in keys:
            files[secret_file(secret)] = secret.age_value if secret.age_value.endswith("\n") else (
                secret.age_value + "\n")
    return {prefix + name: text.encode() for name, text in sorted(files.items())}
