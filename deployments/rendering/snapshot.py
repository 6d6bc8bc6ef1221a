"""The renderer's input: plain, immutable data read from the database in a constant number of queries.

Nothing here is a model instance, so rendering can run anywhere (a worker, a thread, a benchmark) without the
ORM, and the same snapshot always renders the same bytes.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from deployments import validators
from deployments.models import Environment, NodeGroup, Secret
from projects.models import Container, Project, ServiceCredential

KUBERNETES_KINDS = (Environment.Kind.MINIKUBE.value, Environment.Kind.EKS.value)
_SERVICE_ROLES = frozenset(role.value for role in Container.SERVICE_ROLES)


@dataclass(frozen=True)
class NodeGroupSnapshot:
    name: str
    capacity_type: str
    hosts: str
    labels: tuple[tuple[str, str], ...]  # sorted by key
    taints: tuple[tuple[str, str, str], ...]  # (key, value, effect) in the admin's order

    @property
    def is_spot_for_projects(self) -> bool:
        return (self.capacity_type == NodeGroup.CapacityType.SPOT
                and self.hosts in (NodeGroup.Hosts.USER_PROJECTS, NodeGroup.Hosts.BOTH))


@dataclass(frozen=True)
class SecretSnapshot:
    """One key of a Kubernetes Secret: names, the version and the sealed value, never the plaintext."""

    secret_name: str
    key: str
    version: int
    sealed_value: str


@dataclass(frozen=True)
class ContainerSnapshot:
    directory: str
    role: str
    image: str
    port: int
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    data_volume_size: str
    uuid: str  # Studio's container id (tesslate.io/container-id)
    start_command: str  # empty: the role's default (devserver image) or the image's own command
    env_vars: tuple[tuple[str, str], ...]  # (name, value) in the admin's order
    probe: str  # "http", "tcp" or empty (the role's default)
    probe_path: str
    startup_timeout_seconds: int
    credentials: tuple[SecretSnapshot, ...]  # generated keys of svc-{dir}-credentials, sorted by key

    @property
    def workload(self) -> str:
        return f"{'svc' if self.is_service else 'dev'}-{self.directory}"

    @property
    def is_service(self) -> bool:
        return self.role in _SERVICE_ROLES


@dataclass(frozen=True)
class ProjectSnapshot:
    id: str  # UUID text
    slug: str
    owner: str
    volume_size: str
    restore_snapshot_id: str
    containers: tuple[ContainerSnapshot, ...]  # sorted by directory

    @property
    def namespace(self) -> str:
        return f"proj-{self.id}"


@dataclass(frozen=True)
class EnvironmentSnapshot:
    id: int
    name: str
    kind: str
    gitops_tool: str
    app_domain: str
    ingress_class: str
    ingress_controller_namespace: str
    tls_mode: str
    acme_email: str
    cloudflare_api_token_secret: str
    storage_class_name: str
    storage_provisioner: str
    storage_encrypted: bool
    volume_snapshot_class: str
    hibernation_idle_minutes: int
    snapshot_retention_days: int
    max_snapshots_per_project: int
    image_registry: str
    image_tag: str
    backend_replicas: int
    backend_cpu_request: str
    backend_cpu_limit: str
    backend_memory_request: str
    backend_memory_limit: str
    backend_readiness_path: str
    datastore_mode: str
    aws_account_id: str
    aws_region: str
    eks_cluster_name: str
    secrets_manager_role_arn: str
    disabled_addons: tuple[str, ...]  # sorted add-on names the cluster already runs
    node_groups: tuple[NodeGroupSnapshot, ...]  # sorted by name
    secrets: tuple[SecretSnapshot, ...]  # sorted by (secret_name, key)
    projects: tuple[ProjectSnapshot, ...]  # ACTIVE projects only, sorted by id

    @property
    def is_kubernetes(self) -> bool:
        return self.kind in KUBERNETES_KINDS

    @property
    def supports_snapshots(self) -> bool:
        return (self.kind == Environment.Kind.EKS
                and self.storage_provisioner == Environment.StorageProvisioner.EBS_GP3)

    @property
    def uses_external_secrets(self) -> bool:
        return self.kind == Environment.Kind.EKS


@dataclass(frozen=True)
class TreeSnapshot:
    repo_url: str  # what Argo CD / Flux clone (settings.GITOPS_SOURCE_URL)
    branch: str  # settings.GITOPS_BRANCH
    environments: tuple[EnvironmentSnapshot, ...]  # sorted by name
    covers_all_environments: bool  # True: environments no longer listed get their folders pruned

    @property
    def environment_names(self) -> tuple[str, ...]:
        return tuple(environment.name for environment in self.environments)

    @property
    def environment_ids(self) -> tuple[int, ...]:
        return tuple(environment.id for environment in self.environments)


_ENVIRONMENT_FIELDS = [
    "id", "name", "kind", "gitops_tool", "app_domain", "ingress_class", "ingress_controller_namespace", "tls_mode",
    "acme_email", "cloudflare_api_token_secret", "storage_class_name", "storage_provisioner", "storage_encrypted",
    "volume_snapshot_class", "hibernation_idle_minutes", "snapshot_retention_days", "max_snapshots_per_project",
    "image_registry", "image_tag", "backend_replicas", "backend_cpu_request", "backend_cpu_limit",
    "backend_memory_request", "backend_memory_limit", "backend_readiness_path", "datastore_mode", "aws_account_id",
    "aws_region", "eks_cluster_name", "secrets_manager_role_arn", "disabled_addons",
]
_CONTAINER_FIELDS = ["directory", "role", "image", "port", "cpu_request", "cpu_limit", "memory_request",
                     "memory_limit", "data_volume_size", "uuid", "start_command", "env_vars", "probe", "probe_path",
                     "startup_timeout_seconds"]


def environments_snapshot(*, environment_ids: Iterable[int] | None = None) -> TreeSnapshot:
    """Read what the renderer needs for some environments (None: all of them) in six queries.

    Only ACTIVE projects are read: hibernated and deleted projects have no folder in git.
    Rows are sorted in Python, not by the database, so the order (and the rendered bytes) does not depend on the
    database's collation.
    """
    environments = Environment.objects.all()
    if environment_ids is not None:
        environments = environments.filter(pk__in=list(environment_ids))
    environment_rows = sorted(environments.values(*_ENVIRONMENT_FIELDS), key=lambda row: row["name"])
    for row in environment_rows:
        row["disabled_addons"] = tuple(validators.parse_addon_names(row["disabled_addons"]))
    ids = [row["id"] for row in environment_rows]

    node_groups: dict[int, list[NodeGroupSnapshot]] = {pk: [] for pk in ids}
    for row in NodeGroup.objects.filter(environment_id__in=ids).values(
            "environment_id", "name", "capacity_type", "hosts", "labels", "taints"):
        node_groups[row["environment_id"]].append(NodeGroupSnapshot(
            name=row["name"], capacity_type=row["capacity_type"], hosts=row["hosts"],
            labels=tuple(sorted(validators.parse_labels(row["labels"]).items())),
            taints=tuple((t["key"], t["value"], t["effect"]) for t in validators.parse_taints(row["taints"])),
        ))

    secrets: dict[int, list[SecretSnapshot]] = {pk: [] for pk in ids}
    for environment_id, secret_name, key, version, sealed_value in Secret.objects.filter(
            environment_id__in=ids).values_list("environment_id", "secret_name", "key", "version", "sealed_value"):
        secrets[environment_id].append(SecretSnapshot(secret_name=secret_name, key=key, version=version,
                                                      sealed_value=sealed_value))

    # Generated credentials: versions and sealed values only, never the plaintext.
    credentials: dict[int, list[tuple[str, int, str]]] = {}
    for container_id, key, version, sealed_value in ServiceCredential.objects.filter(
            container__project__environment_id__in=ids, container__project__state=Project.State.ACTIVE).values_list(
            "container_id", "key", "version", "sealed_value"):
        credentials.setdefault(container_id, []).append((key, version, sealed_value))

    containers: dict[str, list[ContainerSnapshot]] = {}
    for row in Container.objects.filter(project__environment_id__in=ids, project__state=Project.State.ACTIVE).values(
            "project_id", "id", *_CONTAINER_FIELDS):
        project_id = str(row.pop("project_id"))
        workload = f"{'svc' if row['role'] in _SERVICE_ROLES else 'dev'}-{row['directory']}"
        row["credentials"] = tuple(
            SecretSnapshot(secret_name=f"{workload}-credentials", key=key, version=version, sealed_value=sealed)
            for key, version, sealed in sorted(credentials.get(row.pop("id"), ())))
        row["uuid"] = str(row["uuid"])
        row["env_vars"] = tuple(validators.parse_env_vars(row["env_vars"]))
        containers.setdefault(project_id, []).append(ContainerSnapshot(**row))

    projects: dict[int, list[ProjectSnapshot]] = {pk: [] for pk in ids}
    for row in Project.objects.filter(environment_id__in=ids, state=Project.State.ACTIVE).values(
            "id", "environment_id", "slug", "owner", "volume_size", "restore_snapshot_id"):
        project_id = str(row["id"])
        projects[row["environment_id"]].append(ProjectSnapshot(
            id=project_id, slug=row["slug"], owner=row["owner"], volume_size=row["volume_size"],
            restore_snapshot_id=row["restore_snapshot_id"],
            containers=tuple(sorted(containers.get(project_id, ()), key=lambda c: c.directory)),
        ))

    return TreeSnapshot(
        repo_url=settings.GITOPS_SOURCE_URL,
        branch=settings.GITOPS_BRANCH,
        environments=tuple(
            EnvironmentSnapshot(
                **row,
                node_groups=tuple(sorted(node_groups[row["id"]], key=lambda g: g.name)),
                secrets=tuple(sorted(secrets[row["id"]], key=lambda s: (s.secret_name, s.key))),
                projects=tuple(sorted(projects[row["id"]], key=lambda p: p.id)),
            )
            for row in environment_rows
        ),
        covers_all_environments=environment_ids is None,
    )
