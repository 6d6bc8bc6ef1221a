"""The operator guide's setup as portal data: a Minikube environment, an EKS production environment, projects.

``demo_load`` is idempotent: running it again leaves the same rows (secret values are generated once and kept).
"""

import uuid

from django.db import transaction

from deployments import services as deployment_services
from deployments.models import Environment, NodeGroup, Secret
from projects.credentials import environment_credentials_ensure
from projects.models import Container, Project

DEMO_NAMESPACE = uuid.UUID("5b0c4c57-8a53-4f3c-9d1e-7a0e5e3d2c10")
ECR_REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"

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
]


def demo_project_id(environment: str, slug: str) -> uuid.UUID:
    return uuid.uuid5(DEMO_NAMESPACE, f"{environment}/{slug}")


def demo_container_id(environment: str, slug: str, directory: str) -> uuid.UUID:
    return uuid.uuid5(DEMO_NAMESPACE, f"{environment}/{slug}/{directory}")


def _secret_values(environment: Environment) -> dict[str, str]:
    """Fresh values for every demo secret of an environment; only keys without a value take theirs, so the
    URLs and the datastores' passwords agree when they are created together."""
    postgres, redis = deployment_services.secret_generate_value()[:32], deployment_services.secret_generate_value()[:32]
    if environment.datastore_mode == Environment.DatastoreMode.IN_CLUSTER:
        database_url = f"postgresql+asyncpg://studio_owner:{postgres}@postgres.tesslate.svc:5432/studio_main"
        redis_url = f"redis://:{redis}@redis.tesslate.svc:6379/0"
    else:
        database_url = (f"postgresql+asyncpg://studio_owner:{postgres}@tesslate-{environment.name}"
                        ".cluster-c1a2b3c4d5e6.us-east-1.rds.amazonaws.com:5432/studio_main")
        redis_url = f"rediss://:{redis}@master.tesslate-{environment.name}.abc123.use1.cache.amazonaws.com:6379/0"
    return {
        "SECRET_KEY": deployment_services.secret_generate_value(),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LITELLM_API_BASE": f"http://litellm.{environment.name}.internal:4000",
        "LITELLM_MASTER_KEY": deployment_services.secret_generate_value(),
        "POSTGRES_DB": "studio_main",
        "POSTGRES_USER": "studio_owner",
        "POSTGRES_PASSWORD": postgres,
        "REDIS_PASSWORD": redis,
    }


@transaction.atomic
def demo_load() -> dict[str, int]:
    counts = {"environments": 0, "node_groups": 0, "secrets_created": 0, "projects": 0, "containers": 0}
    environments = {}
    for name, fields in ENVIRONMENTS.items():
        environment, _ = Environment.objects.update_or_create(name=name, defaults=fields)
        environment.full_clean()
        environments[name] = environment
        counts["environments"] += 1
        for group_name, group_fields in NODE_GROUPS.get(name, {}).items():
            NodeGroup.objects.update_or_create(environment=environment, name=group_name, defaults=group_fields)
            counts["node_groups"] += 1
        values = _secret_values(environment)
        in_cluster = environment.datastore_mode == Environment.DatastoreMode.IN_CLUSTER
        for secret_name, key, description in SECRETS + (DATASTORE_SECRETS if in_cluster else []):
            secret, created = Secret.objects.get_or_create(
                environment=environment, secret_name=secret_name, key=key,
                defaults={"description": description},
            )
            if created or not secret.ciphertext:
                deployment_services.secret_store_value(secret=secret, value=values[key])
                counts["secrets_created"] += 1
    for env_name, slug, name, owner, state, snapshot, containers in PROJECTS:
        project, _ = Project.objects.update_or_create(
            id=demo_project_id(env_name, slug),
            defaults=dict(environment=environments[env_name], slug=slug, name=name, owner=owner, state=state,
                          volume_size="5Gi", restore_snapshot_id=snapshot),
        )
        counts["projects"] += 1
        for directory, fields in containers.items():
            Container.objects.update_or_create(project=project, directory=directory, defaults=dict(
                fields, uuid=demo_container_id(env_name, slug, directory)))
            counts["containers"] += 1
    for environment in environments.values():
        # The databases' generated passwords (kept when they exist).
        environment_credentials_ensure(environment_id=environment.pk)
    return counts
