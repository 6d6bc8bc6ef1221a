"""The operator guide's setup as portal data: Minikube, EKS production and a single Docker Compose server, projects.

``demo_load`` creates what is missing and never changes a row that exists: an environment that is already there is
left as it is, with everything in it (node groups, secrets, projects, containers), so running it again (``make run``
twice) never reverts what an admin changed nor brings back what an admin deleted.
"""

import uuid

from django.db import transaction

from deployments import changes
from deployments import services as deployment_services
from deployments.models import Environment, NodeGroup, Secret
from projects import services as project_services
from projects.credentials import environment_credentials_ensure
from projects.models import Container, Project

DEMO_NAMESPACE = uuid.UUID("5b0c4c57-8a53-4f3c-9d1e-7a0e5e3d2c10")
ECR_REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
# A placeholder recipient (its identity was thrown away): replace it with the server's `age-keygen -y` output.
DEMO_AGE_RECIPIENT = "age1kmn3l6kn50trdh6up4mkepur0mk3n4hcv2yactx40r0pdlry0f8qrf0ega"

ENVIRONMENTS = {
    "minikube": dict(
        kind=Environment.Kind.MINIKUBE, app_domain="localhost", tls_mode=Environment.TLSMode.NONE,
        storage_provisioner=Environment.StorageProvisioner.MINIKUBE_HOSTPATH, storage_encrypted=False,
        image_registry="", image_tag="latest", backend_replicas=1,
        backend_cpu_request="250m", backend_cpu_limit="1", backend_memory_request="512Mi",
        backend_memory_limit="1Gi", gitops_tool=Environment.GitOpsTool.FLUX, protected=False,
        datastore_mode=Environment.DatastoreMode.IN_CLUSTER, backend_readiness_path="/health",
    ),
    "aws-production": dict(
        kind=Environment.Kind.EKS, app_domain="studio.example.com",
        tls_mode=Environment.TLSMode.CERT_MANAGER_DNS01, acme_email="platform@example.com",
        storage_provisioner=Environment.StorageProvisioner.EBS_GP3, storage_encrypted=True,
        image_registry=ECR_REGISTRY, image_tag="production", backend_replicas=2,
        backend_cpu_request="1", backend_cpu_limit="4", backend_memory_request="2Gi", backend_memory_limit="4Gi",
        aws_account_id="123456789012", aws_region="us-east-1", eks_cluster_name="tesslate-production",
        gitops_tool=Environment.GitOpsTool.ARGOCD, protected=True,
        datastore_mode=Environment.DatastoreMode.EXTERNAL, backend_readiness_path="/ready",
    ),
    # The guide's Path 1: one server, Docker Compose, Traefik and Let's Encrypt; backups to S3.
    "single-server": dict(
        kind=Environment.Kind.COMPOSE, app_domain="studio.example.org",
        tls_mode=Environment.TLSMode.LETSENCRYPT_HTTP01, acme_email="admin@example.org",
        acme_challenge=Environment.AcmeChallenge.HTTP01,
        storage_provisioner=Environment.StorageProvisioner.MINIKUBE_HOSTPATH, storage_encrypted=False,
        image_registry="", image_tag="latest", backend_replicas=1,
        backend_cpu_request="500m", backend_cpu_limit="2", backend_memory_request="1Gi", backend_memory_limit="2Gi",
        server_ip="203.0.113.10", server_ram_gb=16, server_disk_gb=100, age_recipient=DEMO_AGE_RECIPIENT,
        backup_schedule="*-*-* 03:00:00", backup_retention_days=7, backup_s3_bucket="example-tesslate-backups",
        backup_s3_region="eu-central-1", protected=False,
    ),
}

NODE_GROUPS = {
    "aws-production": {
        "primary": dict(capacity_type=NodeGroup.CapacityType.ON_DEMAND, instance_types="t3.large",
                        min_size=1, desired_size=2, max_size=5, disk_size_gb=50, labels="", taints="",
                        hosts=NodeGroup.Hosts.PLATFORM),
        "spot": dict(capacity_type=NodeGroup.CapacityType.SPOT,
                     instance_types="t3.large, t3.xlarge, t3a.large, t3a.xlarge",
                     min_size=0, desired_size=0, max_size=10, disk_size_gb=50,
                     labels="tesslate.io/workload-type=user-project",
                     taints="tesslate.io/spot=true:PreferNoSchedule", hosts=NodeGroup.Hosts.USER_PROJECTS),
    },
}

APP_SECRETS = "tesslate-app-secrets"
SECRETS = [
    (APP_SECRETS, "SECRET_KEY", "Signs the backend's JWTs."),
    (APP_SECRETS, "DATABASE_URL", "Backend database connection string."),
    (APP_SECRETS, "REDIS_URL", "Redis for the worker queue and sessions."),
    (APP_SECRETS, "LITELLM_API_BASE", "Base URL of the LiteLLM proxy."),
    (APP_SECRETS, "LITELLM_MASTER_KEY", "LiteLLM proxy master key."),
]
# The in-cluster PostgreSQL and Redis read their own Secrets (Environment.datastore_mode).
DATASTORE_SECRETS = [
    ("postgres-secret", "POSTGRES_DB", "Database of the in-cluster PostgreSQL."),
    ("postgres-secret", "POSTGRES_USER", "Owner of that database."),
    ("postgres-secret", "POSTGRES_PASSWORD", "Its password (DATABASE_URL holds the same)."),
    ("redis-secret", "REDIS_PASSWORD", "Password of the in-cluster Redis (REDIS_URL holds the same)."),
]

# Compose servers run PostgreSQL next to the platform (DOMAIN.md's postgres-secret).
COMPOSE_DATABASE, COMPOSE_DATABASE_USER = "studio_db", "studio_owner"
COMPOSE_SECRETS = [
    ("postgres-secret", "POSTGRES_DB", "Database of the platform."),
    ("postgres-secret", "POSTGRES_USER", "Database user of the platform."),
    ("postgres-secret", "POSTGRES_PASSWORD", "Password of that user; DATABASE_URL carries the same."),
]

FRONTEND = dict(role=Container.Role.FRONTEND, image="tesslate-devserver:latest", port=5173,
                cpu_request="100m", cpu_limit="1", memory_request="256Mi", memory_limit="1Gi")
BACKEND = dict(role=Container.Role.BACKEND, image="tesslate-devserver:latest", port=8000,
               cpu_request="100m", cpu_limit="1", memory_request="256Mi", memory_limit="1Gi",
               probe=Container.Probe.HTTP, probe_path="/health", env_vars="LOG_LEVEL=debug")
DATABASE = dict(role=Container.Role.DATABASE, image="postgres:16-alpine", port=5432,
                cpu_request="100m", cpu_limit="500m", memory_request="256Mi", memory_limit="512Mi",
                data_volume_size="2Gi")

PROJECTS = [
    # environment, slug, name, owner, state, restore snapshot, containers
    ("minikube", "todo-app", "Todo app", "user-alice", Project.State.ACTIVE, "",
     {"frontend": FRONTEND, "backend": BACKEND, "db": DATABASE}),
    ("minikube", "landing-page", "Landing page", "user-bob", Project.State.ACTIVE, "",
     {"frontend": FRONTEND}),
    ("aws-production", "crm-dashboard", "CRM dashboard", "user-carol", Project.State.ACTIVE, "",
     {"frontend": FRONTEND, "backend": BACKEND, "db": DATABASE}),
    ("aws-production", "portfolio", "Portfolio", "user-dave", Project.State.ACTIVE, "snap-0123456789abcdef0",
     {"frontend": FRONTEND}),
    ("aws-production", "blog", "Blog", "user-erin", Project.State.HIBERNATED, "",
     {"frontend": FRONTEND, "backend": BACKEND}),
    ("single-server", "team-wiki", "Team wiki", "user-frank", Project.State.ACTIVE, "",
     {"frontend": FRONTEND, "backend": BACKEND, "db": DATABASE}),
    ("single-server", "status-page", "Status page", "user-grace", Project.State.ACTIVE, "",
     {"frontend": FRONTEND}),
]


def demo_project_id(environment: str, slug: str) -> uuid.UUID:
    return uuid.uuid5(DEMO_NAMESPACE, f"{environment}/{slug}")


def demo_container_id(environment: str, slug: str, directory: str) -> uuid.UUID:
    return uuid.uuid5(DEMO_NAMESPACE, f"{environment}/{slug}/{directory}")


def _secret_values(environment: Environment) -> dict[str, str]:
    """Fresh values for every demo secret of an environment, generated together so that the URLs and the
    datastores' passwords agree."""
    postgres, redis = deployment_services.secret_generate_value()[:32], deployment_services.secret_generate_value()[:32]
    database, user = "studio_main", "studio_owner"
    if environment.kind == Environment.Kind.COMPOSE:
        database = COMPOSE_DATABASE
        database_url = f"postgresql+asyncpg://{COMPOSE_DATABASE_USER}:{postgres}@postgres:5432/{COMPOSE_DATABASE}"
        redis_url = "redis://redis:6379/0"
    elif environment.datastore_mode == Environment.DatastoreMode.IN_CLUSTER:
        database_url = f"postgresql+asyncpg://{user}:{postgres}@postgres.tesslate.svc:5432/{database}"
        redis_url = f"redis://:{redis}@redis.tesslate.svc:6379/0"
    else:
        database_url = (f"postgresql+asyncpg://{user}:{postgres}@tesslate-{environment.name}"
                        f".cluster-c1a2b3c4d5e6.us-east-1.rds.amazonaws.com:5432/{database}")
        redis_url = f"rediss://:{redis}@master.tesslate-{environment.name}.abc123.use1.cache.amazonaws.com:6379/0"
    return {
        "SECRET_KEY": deployment_services.secret_generate_value(),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LITELLM_API_BASE": f"http://litellm.{environment.name}.internal:4000",
        "LITELLM_MASTER_KEY": deployment_services.secret_generate_value(),
        "POSTGRES_DB": database,
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": postgres,
        "REDIS_PASSWORD": redis,
    }


def _environment_secrets(environment: Environment) -> list[tuple[str, str, str]]:
    if environment.kind == Environment.Kind.COMPOSE:
        return SECRETS + COMPOSE_SECRETS
    if environment.datastore_mode == Environment.DatastoreMode.IN_CLUSTER:
        return SECRETS + DATASTORE_SECRETS
    return SECRETS


def demo_load() -> dict[str, int]:
    """Create the demo environments that do not exist yet, each with its node groups, secrets (values generated
    once), projects and containers. Returns counts: ``environments`` created, ``environments_kept`` (existing ones,
    left unchanged), and the node groups, secrets, projects and containers created. Every write goes through the
    services; the environments are marked for render (``make run`` renders them next), no run is requested."""
    with changes.change_batch(request_render=False), transaction.atomic():
        return _demo_load()


def _demo_load() -> dict[str, int]:
    counts = {"environments": 0, "environments_kept": 0, "node_groups": 0, "secrets_created": 0, "projects": 0,
              "containers": 0}
    created: dict[str, Environment] = {}
    for name, fields in ENVIRONMENTS.items():
        if Environment.objects.filter(name=name).exists():
            counts["environments_kept"] += 1
            continue
        environment = deployment_services.environment_save(environment=Environment(name=name, **fields))
        created[name] = environment
        counts["environments"] += 1
        for group_name, group_fields in NODE_GROUPS.get(name, {}).items():
            deployment_services.node_group_save(
                node_group=NodeGroup(environment=environment, name=group_name, **group_fields))
            counts["node_groups"] += 1
        values = _secret_values(environment)
        for secret_name, key, description in _environment_secrets(environment):
            secret = Secret(environment=environment, secret_name=secret_name, key=key, description=description)
            deployment_services.secret_set_value(secret=secret, value=values[key])
            counts["secrets_created"] += 1
    for env_name, slug, name, owner, state, snapshot, containers in PROJECTS:
        environment = created.get(env_name)
        project_id = demo_project_id(env_name, slug)
        if environment is None or Project.objects.filter(id=project_id).exists():
            continue
        project = project_services.project_save(project=Project(
            id=project_id, environment=environment, slug=slug, name=name, owner=owner, state=state,
            volume_size="5Gi", restore_snapshot_id=snapshot))
        counts["projects"] += 1
        for directory, fields in containers.items():
            project_services.container_save(container=Container(
                project=project, directory=directory, uuid=demo_container_id(env_name, slug, directory), **fields))
            counts["containers"] += 1
    for environment in created.values():
        if environment.kind != Environment.Kind.COMPOSE:
            # The projects' databases get their generated passwords (delivered to Kubernetes clusters).
            environment_credentials_ensure(environment_id=environment.pk)
    return counts
