"""The renderer's input: plain, immutable data (read from the database by deployments.selectors).

Nothing here is a model instance and nothing here reads the database or the settings, so rendering can run
anywhere (a worker, a thread, a benchmark) without the ORM, and the same snapshot always renders the same bytes.
The field lists below name the model columns the selector reads; the rules come from deployments.domain.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from deployments import domain


class ProjectsChanged(Exception):
    """Projects changed between a lazy snapshot and the read of their data: the run fails and is requested
    again (its dirty flags are set back), rather than render data under a marker that does not describe it."""


@dataclass(frozen=True)
class NodeGroupSnapshot:
    name: str
    capacity_type: str
    hosts: str
    labels: tuple[tuple[str, str], ...]  # sorted by key
    taints: tuple[tuple[str, str, str], ...]  # (key, value, effect) in the admin's order

    @property
    def is_spot_for_projects(self) -> bool:
        return (self.capacity_type == domain.CAPACITY_SPOT
                and self.hosts in (domain.HOSTS_USER_PROJECTS, domain.HOSTS_BOTH))


@dataclass(frozen=True)
class SecretSnapshot:
    """One key of a Kubernetes Secret: names, the version and the sealed / age-encrypted value, never the plaintext."""

    secret_name: str
    key: str
    version: int
    sealed_value: str
    age_value: str = ""  # Compose environments: ASCII-armored age ciphertext for the server's recipient


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
        return domain.is_service_role(self.role)


@dataclass(frozen=True)
class VolumeRestoreSnapshot:
    """One volume restored from an EBS snapshot (projects.models.VolumeRestore)."""

    volume_name: str  # project-storage or svc-{dir}-data
    source_snapshot_name: str  # the hibernation's VolumeSnapshot; names the restore objects
    snapshot_handle: str  # EBS snapshot id (snap-…)


@dataclass(frozen=True)
class ProjectSnapshot:
    id: str  # UUID text
    slug: str
    owner: str
    volume_size: str
    restore_snapshot_id: str  # legacy single-volume restore of project-storage (names restore-{snap})
    containers: tuple[ContainerSnapshot, ...]  # sorted by directory
    hibernation_stamp: str = ""  # non-empty while hibernating: render a VolumeSnapshot of every volume
    stopped: bool = False  # hibernated without VolumeSnapshots (Minikube): every Deployment at zero replicas
    restores: tuple[VolumeRestoreSnapshot, ...] = ()  # sorted by volume name
    # The project's render change marker (projects.models.RenderToken: replaced by database triggers whenever any
    # of the fields above changes). Non-empty: the unit's fingerprint hashes it instead of this whole snapshot.
    render_token: str = ""

    @property
    def namespace(self) -> str:
        return domain.project_namespace(self.id)


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
    projects: tuple[ProjectSnapshot, ...]  # rendered projects (domain.project_is_rendered), sorted by id
    # Rendered projects not read yet, as (id, render token) sorted by id: TreeSnapshot.load_projects reads the
    # ones a run actually renders (Kubernetes environments only; never overlaps `projects`).
    lazy_projects: tuple[tuple[str, str], ...] = ()
    # Docker Compose servers (the guide's Path 1); defaults keep snapshots built by hand short.
    server_ip: str = ""
    server_ram_gb: int = 16
    server_disk_gb: int = 50
    acme_challenge: str = domain.ACME_HTTP01
    deploy_interval_minutes: int = 5
    backup_schedule: str = "*-*-* 03:00:00"
    backup_retention_days: int = 7
    backup_s3_bucket: str = ""
    backup_s3_prefix: str = ""
    backup_s3_region: str = ""

    @property
    def is_kubernetes(self) -> bool:
        return domain.is_kubernetes(self.kind)

    @property
    def supports_snapshots(self) -> bool:
        return domain.supports_snapshots(self.kind, self.storage_provisioner)

    @property
    def uses_external_secrets(self) -> bool:
        return domain.uses_external_secrets(self.kind)


@dataclass(frozen=True)
class TreeSnapshot:
    repo_url: str  # what Argo CD / Flux clone (settings.GITOPS_SOURCE_URL)
    branch: str  # settings.GITOPS_BRANCH
    environments: tuple[EnvironmentSnapshot, ...]  # sorted by name
    covers_all_environments: bool  # True: environments no longer listed get their folders pruned
    # load_projects(environment_id, project_ids) -> {id: ProjectSnapshot} for EnvironmentSnapshot.lazy_projects:
    # called with the ids of the units being rendered (deployments.selectors provides it). Raises
    # ProjectsChanged when a project is no longer rendered or its token moved since the snapshot.
    load_projects: Callable[[int, Sequence[str]], dict[str, ProjectSnapshot]] | None = field(
        default=None, compare=False, repr=False)

    @property
    def environment_names(self) -> tuple[str, ...]:
        return tuple(environment.name for environment in self.environments)

    @property
    def environment_ids(self) -> tuple[int, ...]:
        return tuple(environment.id for environment in self.environments)


ENVIRONMENT_FIELDS = [
    "id", "name", "kind", "gitops_tool", "app_domain", "ingress_class", "ingress_controller_namespace", "tls_mode",
    "acme_email", "cloudflare_api_token_secret", "storage_class_name", "storage_provisioner", "storage_encrypted",
    "volume_snapshot_class", "hibernation_idle_minutes", "snapshot_retention_days", "max_snapshots_per_project",
    "image_registry", "image_tag", "backend_replicas", "backend_cpu_request", "backend_cpu_limit",
    "backend_memory_request", "backend_memory_limit", "backend_readiness_path", "datastore_mode", "aws_account_id",
    "aws_region", "eks_cluster_name", "secrets_manager_role_arn", "disabled_addons", "server_ip", "server_ram_gb",
    "server_disk_gb", "acme_challenge", "deploy_interval_minutes", "backup_schedule", "backup_retention_days",
    "backup_s3_bucket", "backup_s3_prefix", "backup_s3_region",
]
CONTAINER_FIELDS = ["directory", "role", "image", "port", "cpu_request", "cpu_limit", "memory_request",
                    "memory_limit", "data_volume_size", "uuid", "start_command", "env_vars", "probe", "probe_path",
                    "startup_timeout_seconds"]
