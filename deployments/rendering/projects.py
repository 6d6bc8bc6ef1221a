"""User projects: environments/<env>/projects/ (the index) and one proj-<uuid>/ kustomization root each."""

from dataclasses import dataclass

from deployments import domain
from deployments.rendering.common import (
    DEV_INGRESS_ANNOTATIONS,
    DEVSERVER_IMAGE,
    EBS_DRIVER,
    HTTP01_ISSUER,
    MANAGED_BY,
    SERVICE_DATA_PATHS,
    WILDCARD_TLS_SECRET,
    image_overrides,
    image_pull_policy,
    image_repository,
    yaml_documents,
)
from deployments.rendering.snapshot import ContainerSnapshot, EnvironmentSnapshot, ProjectSnapshot
from deployments.rendering.templating import render_template


@dataclass(frozen=True)
class ProjectEnvironment:
    """The part of an environment that project folders depend on (and nothing more, so that a change elsewhere,
    such as a secret rotation, does not re-render thousands of projects)."""

    name: str
    kind: str
    app_domain: str
    ingress_class: str
    tls_mode: str
    storage_class_name: str
    volume_snapshot_class: str
    supports_snapshots: bool
    image_registry: str
    image_tag: str
    node_selector: tuple[tuple[str, str], ...]
    tolerations: tuple[tuple[str, str, str], ...]

    @classmethod
    def of(cls, env: EnvironmentSnapshot) -> "ProjectEnvironment":
        # The first SPOT group (by name) that hosts user projects places the project pods.
        spot = next((group for group in env.node_groups if group.is_spot_for_projects), None)
        return cls(
            name=env.name, kind=env.kind, app_domain=env.app_domain, ingress_class=env.ingress_class,
            tls_mode=env.tls_mode, storage_class_name=env.storage_class_name,
            volume_snapshot_class=env.volume_snapshot_class, supports_snapshots=env.supports_snapshots,
            image_registry=env.image_registry, image_tag=env.image_tag,
            node_selector=spot.labels if spot else (), tolerations=spot.taints if spot else (),
        )


def _tolerations(taints: tuple[tuple[str, str, str], ...]) -> list[dict]:
    result = []
    for key, value, effect in taints:
        if value:
            result.append({"key": key, "operator": "Equal", "value": value, "effect": effect})
        else:
            result.append({"key": key, "operator": "Exists", "effect": effect})
    return result


def _service_data_path(image: str) -> str:
    family = image_repository(image).rsplit("/", 1)[-1]
    for prefix, path in SERVICE_DATA_PATHS:
        if family.startswith(prefix):
            return path
    return "/data"


def _container_context(penv: ProjectEnvironment, project: ProjectSnapshot, container: ContainerSnapshot,
                       base_labels: dict, pull_policy: str) -> dict:
    service = container.is_service
    workload = domain.workload_name(container.role, container.directory)
    component = "service-container" if service else "dev-container"
    labels = {**base_labels, "tesslate.io/component": component,
              "tesslate.io/container-directory": container.directory}
    is_devserver = image_repository(container.image) == DEVSERVER_IMAGE
    context = {
        "name": workload,
        "namespace": project.namespace,
        "labels": dict(sorted(labels.items())),
        "selector": {"tesslate.io/component": component, "tesslate.io/container-directory": container.directory},
        "image": container.image,
        "pull_policy": pull_policy if is_devserver else "IfNotPresent",
        "port": container.port,
        "resources": {
            "limits": {"cpu": container.cpu_limit, "memory": container.memory_limit},
            "requests": {"cpu": container.cpu_request, "memory": container.memory_request},
        },
        "service": service,
    }
    if service:
        data_path = _service_data_path(container.image)
        env = []
        if data_path == "/var/lib/postgresql/data":
            # initdb refuses a non-empty mount point (ext4 puts lost+found there); use a subdirectory.
            env.append({"name": "PGDATA", "value": data_path + "/pgdata"})
        context.update({"data_claim": f"{workload}-data", "data_size": container.data_volume_size,
                        "data_path": data_path, "env": env})
    else:
        host = domain.project_host(project.slug, container.directory, penv.app_domain)
        annotations = dict(DEV_INGRESS_ANNOTATIONS)
        tls = None
        if penv.tls_mode == domain.TLS_CERT_MANAGER_DNS01:
            tls = [{"hosts": [host], "secretName": WILDCARD_TLS_SECRET}]
        elif penv.tls_mode == domain.TLS_LETSENCRYPT_HTTP01:
            annotations["cert-manager.io/cluster-issuer"] = HTTP01_ISSUER
            tls = [{"hosts": [host], "secretName": f"{workload}-tls"}]
        context.update({
            "host": host, "ingress_class": penv.ingress_class, "ingress_annotations": dict(sorted(annotations.items())),
            "tls": tls, "working_dir": f"/app/{container.directory}",
            "env": [{"name": "HOST", "value": "0.0.0.0"}, {"name": "PORT", "value": str(container.port)}],
        })
    return context


def render_project(penv: ProjectEnvironment, project: ProjectSnapshot) -> dict[str, bytes]:
    prefix = f"environments/{penv.name}/projects/{project.namespace}/"
    namespace = project.namespace
    base_labels = {"app.kubernetes.io/managed-by": MANAGED_BY, "tesslate.io/project-id": project.id,
                   "tesslate.io/user-id": project.owner}
    pull_policy = image_pull_policy(penv.kind)
    placement = {
        # The project volume is ReadWriteOnce: every pod that mounts it must run on the same node.
        "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"tesslate.io/project-id": project.id}},
            "topologyKey": "kubernetes.io/hostname",
        }]}},
        "node_selector": dict(penv.node_selector),
        "tolerations": _tolerations(penv.tolerations),
    }
    common = {"namespace": namespace, "placement": placement}

    restore = None
    if project.restore_snapshot_id and penv.supports_snapshots:
        restore = {
            "content_name": f"{namespace}-{project.restore_snapshot_id}",
            "snapshot_name": f"restore-{project.restore_snapshot_id}",
            "snapshot_handle": project.restore_snapshot_id,
            "driver": EBS_DRIVER,
            "snapshot_class": penv.volume_snapshot_class,
        }

    files: dict[str, str] = {}
    files["namespace.yaml"] = render_template("project/namespace.yaml.j2", {
        "name": namespace, "labels": dict(sorted(base_labels.items()))})
    files["network-policy.yaml"] = render_template("project/network-policy.yaml.j2", {
        "namespace": namespace, "labels": dict(sorted(base_labels.items()))})
    storage = [render_template("project/pvc.yaml.j2", {
        "name": "project-storage", "namespace": namespace,
        "labels": dict(sorted({**base_labels, "tesslate.io/component": "storage"}.items())),
        "size": project.volume_size, "storage_class": penv.storage_class_name,
        "restore": restore,
    })]
    if restore:
        storage.append(render_template("project/volume-snapshot-content.yaml.j2", {**restore, "namespace": namespace}))
        storage.append(render_template("project/volume-snapshot.yaml.j2", {**restore, "namespace": namespace}))
    files["storage.yaml"] = yaml_documents(*storage).decode()
    files["file-manager.yaml"] = render_template("project/file-manager.yaml.j2", {
        **common,
        "labels": dict(sorted({**base_labels, "tesslate.io/component": "file-manager"}.items())),
        "image": f"{DEVSERVER_IMAGE}:{penv.image_tag}", "pull_policy": pull_policy,
    })
    resources = ["namespace.yaml", "network-policy.yaml", "storage.yaml", "file-manager.yaml"]
    for container in project.containers:
        context = {**common, **_container_context(penv, project, container, base_labels, pull_policy)}
        documents = []
        if context["service"]:
            documents.append(render_template("project/pvc.yaml.j2", {
                "name": context["data_claim"], "namespace": namespace, "labels": context["labels"],
                "size": context["data_size"], "storage_class": penv.storage_class_name, "restore": None,
            }))
        documents.append(render_template("project/deployment.yaml.j2", context))
        documents.append(render_template("project/service.yaml.j2", context))
        if not context["service"]:
            documents.append(render_template("project/ingress.yaml.j2", context))
        filename = f"{context['name']}.yaml"
        files[filename] = yaml_documents(*documents).decode()
        resources.append(filename)

    files["kustomization.yaml"] = render_template("project/kustomization.yaml.j2", {
        "resources": resources,
        "images": image_overrides(penv, (DEVSERVER_IMAGE,)),
    })
    return {prefix + name: text.encode() for name, text in sorted(files.items())}


def render_projects_index(env_name: str, project_ids: tuple[str, ...]) -> dict[str, bytes]:
    text = render_template("projects/kustomization.yaml.j2", {"resources": [f"proj-{pk}" for pk in project_ids]})
    return {f"environments/{env_name}/projects/kustomization.yaml": text.encode()}
