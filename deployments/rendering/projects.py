"""User projects: environments/<env>/projects/ (the index) and one proj-<uuid>/ kustomization root each."""

import math
from dataclasses import dataclass

from deployments import domain
from deployments.rendering.common import (
    CLUSTER_DNS_PEER,
    CREDENTIAL_DATABASE,
    CREDENTIAL_KEYS,
    CREDENTIAL_USER,
    DEV_INGRESS_ANNOTATIONS,
    DEV_START_COMMANDS,
    DEVSERVER_IMAGE,
    DNS_PORTS,
    EBS_DRIVER,
    HTTP01_ISSUER,
    INTERNET_PEER,
    MANAGED_BY,
    PROJECTS_SECRET_STORE_NAME,
    READINESS_PROBE,
    SECRET_VERSIONS_ANNOTATION,
    SERVICE_DATA_PATHS,
    STARTUP_PROBE_PERIOD_SECONDS,
    TSINIT,
    WILDCARD_TLS_SECRET,
    credential_family,
    credentials_secret_name,
    image_overrides,
    image_pull_policy,
    image_repository,
    project_credential_path,
    secret_checksum_annotation,
    secret_versions_hash,
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
    ingress_controller_namespace: str
    tls_mode: str
    gitops_tool: str
    storage_class_name: str
    volume_snapshot_class: str
    supports_snapshots: bool
    uses_external_secrets: bool
    image_registry: str
    image_tag: str
    spot_node_labels: tuple[tuple[str, str], ...]
    tolerations: tuple[tuple[str, str, str], ...]

    @classmethod
    def of(cls, env: EnvironmentSnapshot) -> "ProjectEnvironment":
        # The first SPOT group (by name) that hosts user projects is where project pods prefer to run.
        spot = next((group for group in env.node_groups if group.is_spot_for_projects), None)
        return cls(
            name=env.name, kind=env.kind, app_domain=env.app_domain, ingress_class=env.ingress_class,
            ingress_controller_namespace=env.ingress_controller_namespace,
            tls_mode=env.tls_mode, gitops_tool=env.gitops_tool, storage_class_name=env.storage_class_name,
            volume_snapshot_class=env.volume_snapshot_class, supports_snapshots=env.supports_snapshots,
            uses_external_secrets=env.uses_external_secrets,
            image_registry=env.image_registry, image_tag=env.image_tag,
            spot_node_labels=spot.labels if spot else (), tolerations=spot.taints if spot else (),
        )


def _tolerations(taints: tuple[tuple[str, str, str], ...]) -> list[dict]:
    result = []
    for key, value, effect in taints:
        if value:
            result.append({"key": key, "operator": "Equal", "value": value, "effect": effect})
        else:
            result.append({"key": key, "operator": "Exists", "effect": effect})
    return result


def project_placement(penv: ProjectEnvironment, project_id: str) -> dict:
    """Scheduling of every project pod, as preferences only (DOMAIN.md "Nodes and cost"):

    - pod affinity preferred (weight 100) towards the project's other pods on one node (topology
      kubernetes.io/hostname), because the project volume is ReadWriteOnce; a *required* affinity deadlocked
      scheduling in Studio when that node was full;
    - node affinity preferred (weight 50) for the environment's SPOT node group that hosts user projects (its
      labels), with tolerations of its taints; never a nodeSelector, so pods still start when spot capacity is gone.

    Returns ``{"affinity": {...}, "tolerations": [...]}`` for the pod spec.
    """
    affinity: dict = {}
    if penv.spot_node_labels:
        affinity["nodeAffinity"] = {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 50,
            "preference": {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}
                                                for key, value in penv.spot_node_labels]},
        }]}
    affinity["podAffinity"] = {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {
            "labelSelector": {"matchLabels": {"tesslate.io/project-id": project_id}},
            "topologyKey": "kubernetes.io/hostname",
        },
    }]}
    return {"affinity": affinity, "tolerations": _tolerations(penv.tolerations)}


def _service_data_path(image: str) -> str:
    family = image_repository(image).rsplit("/", 1)[-1]
    for prefix, path in SERVICE_DATA_PATHS:
        if family.startswith(prefix):
            return path
    return "/data"


def _is_postgres(image: str) -> bool:
    return image_repository(image).rsplit("/", 1)[-1].startswith("postgres")


def _command(container: ContainerSnapshot, is_devserver: bool) -> list[str] | None:
    """The container's `command`: the devserver image runs the start command under tsinit (its default command
    only sleeps); other images run a given command through a shell, or keep their own entrypoint."""
    command = container.start_command
    if is_devserver:
        if not command:
            default = DEV_START_COMMANDS.get(container.role, DEV_START_COMMANDS["frontend"])
            command = default.replace("{port}", str(container.port))
        # No workingDir on devserver containers (a root-created working directory breaks uid 1000): the process
        # changes into the container's directory itself.
        return [TSINIT, "serve", "--process", f"main=cd /app/{container.directory} && {command}"]
    return ["/bin/sh", "-c", command] if command else None


def _probes(container: ContainerSnapshot, port_name: str) -> tuple[dict, dict]:
    """(readinessProbe, startupProbe) with the same check: the container's choice, or HTTP GET for dev
    containers, pg_isready for PostgreSQL and a TCP connect for other services (DOMAIN.md "A user project")."""
    kind = container.probe or ("tcp" if container.is_service else "http")
    if not container.probe and container.is_service and _is_postgres(container.image):
        # pg_isready needs no credentials: it asks the server whether it accepts connections.
        handler = {"exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-p", str(container.port)]}}
    elif kind == "http":
        handler = {"httpGet": {"path": container.probe_path, "port": port_name}}
    else:
        handler = {"tcpSocket": {"port": port_name}}
    readiness = {**handler, **READINESS_PROBE}
    startup = {**handler, "periodSeconds": STARTUP_PROBE_PERIOD_SECONDS, "timeoutSeconds": 3,
               "failureThreshold": math.ceil(container.startup_timeout_seconds / STARTUP_PROBE_PERIOD_SECONDS)}
    return readiness, startup


def _env(defaults: list[dict], container: ContainerSnapshot) -> list[dict]:
    """The portal's variables first (plain values or secretKeyRefs), then the admin's plain values, which replace
    a portal variable of the same name in place."""
    values = {entry["name"]: entry for entry in defaults}
    for name, value in container.env_vars:
        values[name] = {"name": name, "value": value}
    return list(values.values())


def _plain(pairs) -> list[dict]:
    return [{"name": name, "value": value} for name, value in pairs]


def _secret_ref(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


@dataclass(frozen=True)
class ServiceConnection:
    """A service container with generated credentials: what it reads itself, what the project's dev containers
    get to reach it, and the versions that roll both when the password rotates."""

    workload: str
    family: str
    secret: str
    versions: str
    own_env: list
    consumer_env: list


def _connections(project: ProjectSnapshot, uses_external_secrets: bool) -> dict[str, ServiceConnection]:
    """workload -> ServiceConnection for the project's PostgreSQL and Redis service containers."""
    connections = {}
    for container in project.containers:
        family = credential_family(image=container.image, is_service=container.is_service)
        if family is None:
            continue
        password_key, url_key = CREDENTIAL_KEYS[family]
        secret = credentials_secret_name(container.workload)
        host, port = container.workload, str(container.port)
        if family == "postgres":
            own = _plain([("POSTGRES_USER", CREDENTIAL_USER), ("POSTGRES_DB", CREDENTIAL_DATABASE)])
            own.append(_secret_ref("POSTGRES_PASSWORD", secret, password_key))
            consumer = [_secret_ref("DATABASE_URL", secret, url_key)]
            consumer += _plain([("PGHOST", host), ("PGPORT", port), ("PGUSER", CREDENTIAL_USER),
                                ("PGDATABASE", CREDENTIAL_DATABASE)])
            consumer.append(_secret_ref("PGPASSWORD", secret, password_key))
            consumer += _plain([("POSTGRES_HOST", host), ("POSTGRES_PORT", port), ("POSTGRES_USER", CREDENTIAL_USER),
                                ("POSTGRES_DB", CREDENTIAL_DATABASE)])
            consumer.append(_secret_ref("POSTGRES_PASSWORD", secret, password_key))
        else:
            own = [_secret_ref("REDIS_PASSWORD", secret, password_key)]
            consumer = [_secret_ref("REDIS_URL", secret, url_key)]
            consumer += _plain([("REDIS_HOST", host), ("REDIS_PORT", port)])
            consumer.append(_secret_ref("REDIS_PASSWORD", secret, password_key))
        delivered = [c for c in container.credentials
                     if (c.version > 0 if uses_external_secrets else bool(c.sealed_value))]
        connections[container.workload] = ServiceConnection(
            workload=container.workload, family=family, secret=secret, versions=secret_versions_hash(delivered),
            own_env=own, consumer_env=consumer)
    return connections


def _credentials_document(penv: ProjectEnvironment, project: ProjectSnapshot, container: ContainerSnapshot,
                          connection: ServiceConnection) -> str:
    """The credentials Secret in the project's namespace: a SealedSecret sealed for it, or (EKS) an
    ExternalSecret reading AWS Secrets Manager through the ClusterSecretStore limited to proj-* namespaces."""
    if penv.uses_external_secrets:
        return render_template("overlay/external-secret.yaml.j2", {
            "name": connection.secret, "namespace": project.namespace, "store": PROJECTS_SECRET_STORE_NAME,
            "store_kind": "ClusterSecretStore", "versions_annotation": SECRET_VERSIONS_ANNOTATION,
            "versions": connection.versions,
            "data": [{"secretKey": c.key, "remoteRef": {"key": project_credential_path(
                environment_name=penv.name, project_id=project.id, secret_name=connection.secret, key=c.key)}}
                for c in container.credentials if c.version > 0],
        })
    return render_template("overlay/sealed-secret.yaml.j2", {
        "name": connection.secret, "namespace": project.namespace,
        "versions_annotation": SECRET_VERSIONS_ANNOTATION, "versions": connection.versions,
        "encrypted_data": {c.key: c.sealed_value for c in container.credentials if c.sealed_value},
    })


def _container_context(penv: ProjectEnvironment, project: ProjectSnapshot, container: ContainerSnapshot,
                       base_labels: dict, pull_policy: str, connections: dict[str, ServiceConnection]) -> dict:
    service = container.is_service
    workload = domain.workload_name(container.role, container.directory)
    component = "service-container" if service else "dev-container"
    # The Studio backend finds pods by `app` and `tesslate.io/container-id` (exec, logs, files). The selector keeps
    # its original labels: a Deployment's selector is immutable, so changing it would break every existing one.
    labels = {**base_labels, "app": workload if service else "dev-container", "tesslate.io/component": component,
              "tesslate.io/container-directory": container.directory, "tesslate.io/container-id": container.uuid}
    is_devserver = image_repository(container.image) == DEVSERVER_IMAGE
    port_name = "tcp" if service else "http"
    readiness, startup = _probes(container, port_name)
    context = {
        "name": workload,
        "namespace": project.namespace,
        "labels": dict(sorted(labels.items())),
        "selector": {"tesslate.io/component": component, "tesslate.io/container-directory": container.directory},
        "image": container.image,
        "pull_policy": pull_policy if is_devserver else "IfNotPresent",
        "port": container.port,
        "port_name": port_name,
        "command": _command(container, is_devserver),
        "readiness_probe": readiness,
        "startup_probe": startup,
        "resources": {
            "limits": {"cpu": container.cpu_limit, "memory": container.memory_limit},
            "requests": {"cpu": container.cpu_request, "memory": container.memory_request},
        },
        "service": service,
        "working_dir": None if is_devserver or service else f"/app/{container.directory}",
        "pod_annotations": {},
    }
    own = connections.get(workload)
    if own and own.family == "redis" and not container.start_command:
        # Kubernetes expands $(REDIS_PASSWORD) from the container's env.
        context["command"] = ["redis-server", "--appendonly", "yes", "--requirepass", "$(REDIS_PASSWORD)"]
    # Pods that read generated credentials roll when a password rotates (the versions, never the values).
    readers = [own] if own else ([] if service else list(connections.values()))
    context["pod_annotations"] = dict(sorted(
        (secret_checksum_annotation(connection.secret), connection.versions) for connection in readers))
    if service:
        data_path = _service_data_path(container.image)
        defaults = []
        if data_path == "/var/lib/postgresql/data":
            # initdb refuses a non-empty mount point (ext4 puts lost+found there); use a subdirectory.
            defaults.append({"name": "PGDATA", "value": data_path + "/pgdata"})
        defaults += own.own_env if own else []
        context.update({"data_claim": f"{workload}-data", "data_size": container.data_volume_size,
                        "data_path": data_path, "env": _env(defaults, container)})
    else:
        host = domain.project_host(project.slug, container.directory, penv.app_domain)
        annotations = dict(DEV_INGRESS_ANNOTATIONS)
        tls = None
        if penv.tls_mode == domain.TLS_CERT_MANAGER_DNS01:
            tls = [{"hosts": [host], "secretName": WILDCARD_TLS_SECRET}]
        elif penv.tls_mode == domain.TLS_LETSENCRYPT_HTTP01:
            annotations["cert-manager.io/cluster-issuer"] = HTTP01_ISSUER
            tls = [{"hosts": [host], "secretName": f"{workload}-tls"}]
        defaults = _plain([("HOST", "0.0.0.0"), ("PORT", str(container.port)), ("NODE_ENV", "development")])
        # How to reach the project's databases; with two of one kind, the first by directory keeps the plain names.
        for connection in connections.values():
            defaults += [entry for entry in connection.consumer_env
                         if entry["name"] not in {d["name"] for d in defaults}]
        context.update({
            "host": host, "ingress_class": penv.ingress_class, "ingress_annotations": dict(sorted(annotations.items())),
            "tls": tls, "env": _env(defaults, container),
        })
    return context


def project_volumes(project: ProjectSnapshot) -> list[str]:
    """Every PVC of a project: ``project-storage`` and ``svc-{dir}-data`` of each service container, sorted."""
    return sorted([domain.PROJECT_VOLUME] + [f"{c.workload}-data" for c in project.containers if c.is_service])


def hibernation_snapshots(penv: ProjectEnvironment, project: ProjectSnapshot) -> list[dict]:
    """Template contexts of the VolumeSnapshots a hibernation takes, one per volume (DOMAIN.md "Hibernation and
    snapshots": named ``snap-{first 8 of project id}-{stamp}``, labelled project-id, user-id, snapshot-type, app,
    managed-by — the bare keys Studio's backend reads and the ``tesslate.io/`` keys of project objects — class
    the environment's VolumeSnapshotClass, which retains the EBS snapshot when the namespace goes)."""
    labels = {"app": "tesslate", "app.kubernetes.io/managed-by": MANAGED_BY, "project-id": project.id,
              "user-id": project.owner, "snapshot-type": domain.SNAPSHOT_TYPE_HIBERNATION,
              "tesslate.io/project-id": project.id, "tesslate.io/user-id": project.owner,
              "tesslate.io/snapshot-type": domain.SNAPSHOT_TYPE_HIBERNATION}
    return [{"snapshot_name": domain.hibernation_snapshot_name(project.id, project.hibernation_stamp, volume),
             "namespace": project.namespace, "snapshot_class": penv.volume_snapshot_class, "pvc_name": volume,
             "labels": dict(sorted({**labels, "tesslate.io/volume": volume}.items()))}
            for volume in project_volumes(project)]


def project_restores(penv: ProjectEnvironment, project: ProjectSnapshot) -> dict[str, dict]:
    """volume name -> restore objects' context (content name, snapshot name, EBS handle, driver, class).

    Per-volume restores (``project.restores``) use Studio's names (``domain.restore_object_names``); the legacy
    ``restore_snapshot_id`` of project-storage keeps the names it was first rendered with (a PVC's dataSource is
    immutable). Only clusters with EBS VolumeSnapshots restore."""
    if not penv.supports_snapshots:
        return {}
    restores = {}
    if project.restore_snapshot_id:
        restores[domain.PROJECT_VOLUME] = {
            "content_name": f"{project.namespace}-{project.restore_snapshot_id}",
            "snapshot_name": f"restore-{project.restore_snapshot_id}",
            "snapshot_handle": project.restore_snapshot_id}
    for restore in project.restores:
        content_name, snapshot_name = domain.restore_object_names(restore.source_snapshot_name, project.namespace)
        restores[restore.volume_name] = {"content_name": content_name, "snapshot_name": snapshot_name,
                                         "snapshot_handle": restore.snapshot_handle}
    return {volume: {**values, "driver": EBS_DRIVER, "snapshot_class": penv.volume_snapshot_class}
            for volume, values in restores.items()}


def _restore_documents(restore: dict | None, namespace: str) -> list[str]:
    """The pre-provisioned VolumeSnapshotContent and the VolumeSnapshot bound to it (none without a restore)."""
    if not restore:
        return []
    context = {**restore, "namespace": namespace, "labels": None, "pvc_name": None}
    return [render_template("project/volume-snapshot-content.yaml.j2", context),
            render_template("project/volume-snapshot.yaml.j2", context)]


def render_project(penv: ProjectEnvironment, project: ProjectSnapshot) -> dict[str, bytes]:
    prefix = f"environments/{penv.name}/projects/{project.namespace}/"
    namespace = project.namespace
    base_labels = {"app.kubernetes.io/managed-by": MANAGED_BY, "tesslate.io/project-id": project.id,
                   "tesslate.io/user-id": project.owner}
    pull_policy = image_pull_policy(penv.kind)
    common = {"namespace": namespace, "placement": project_placement(penv, project.id)}

    restores = project_restores(penv, project)
    files: dict[str, str] = {}
    files["namespace.yaml"] = render_template("project/namespace.yaml.j2", {
        "name": namespace, "labels": dict(sorted(base_labels.items()))})
    files["network-policy.yaml"] = render_template("project/network-policy.yaml.j2", {
        "namespace": namespace, "labels": dict(sorted(base_labels.items())),
        "ingress_namespace": penv.ingress_controller_namespace, "dns_peer": CLUSTER_DNS_PEER, "dns_ports": DNS_PORTS,
        "internet_peer": INTERNET_PEER})
    storage = [render_template("project/pvc.yaml.j2", {
        "name": "project-storage", "namespace": namespace,
        "labels": dict(sorted({**base_labels, "tesslate.io/component": "storage"}.items())),
        "size": project.volume_size, "storage_class": penv.storage_class_name,
        "restore": restores.get(domain.PROJECT_VOLUME),
    })]
    storage += _restore_documents(restores.get(domain.PROJECT_VOLUME), namespace)
    files["storage.yaml"] = yaml_documents(*storage).decode()
    # A stopped project (hibernated without VolumeSnapshots) runs no pod. Flux applies `replicas: 0`; Argo CD
    # ignores spec.replicas of Deployments (the ApplicationSet's ignoreDifferences with RespectIgnoreDifferences,
    # so Studio's runtime scaling is never undone), so under Argo CD the Deployments are left out and pruned
    # instead. Every file stays (a stop deletes no file; the deletion budget never sees it): the file manager's
    # file says why it is empty. Volumes, Services and the Namespace stay either way.
    prune_workloads = _prunes_workloads(penv, project)
    if prune_workloads:
        files["file-manager.yaml"] = STOPPED_WORKLOAD_NOTE
    else:
        files["file-manager.yaml"] = render_template("project/file-manager.yaml.j2", {
            **common,
            "labels": dict(sorted({**base_labels, "app": "file-manager",
                                   "tesslate.io/component": "file-manager"}.items())),
            "image": f"{DEVSERVER_IMAGE}:{penv.image_tag}", "pull_policy": pull_policy,
            "command": [TSINIT, "serve"], "replicas": 0 if project.stopped else None,
        })
    resources = ["namespace.yaml", "network-policy.yaml", "storage.yaml", "file-manager.yaml"]
    connections = _connections(project, penv.uses_external_secrets)
    for container in project.containers:
        context = {**common, **_container_context(penv, project, container, base_labels, pull_policy, connections),
                   "replicas": 0 if project.stopped else None}
        documents = []
        if container.workload in connections:
            documents.append(_credentials_document(penv, project, container, connections[container.workload]))
        if context["service"]:
            documents.append(render_template("project/pvc.yaml.j2", {
                "name": context["data_claim"], "namespace": namespace, "labels": context["labels"],
                "size": context["data_size"], "storage_class": penv.storage_class_name,
                "restore": restores.get(context["data_claim"]),
            }))
            documents += _restore_documents(restores.get(context["data_claim"]), namespace)
        if not prune_workloads:
            documents.append(render_template("project/deployment.yaml.j2", context))
        documents.append(render_template("project/service.yaml.j2", context))
        if not context["service"]:
            documents.append(render_template("project/ingress.yaml.j2", context))
        filename = f"{context['name']}.yaml"
        files[filename] = yaml_documents(*documents).decode()
        resources.append(filename)

    if project.hibernation_stamp and penv.supports_snapshots:
        files["volume-snapshots.yaml"] = yaml_documents(*(
            render_template("project/volume-snapshot.yaml.j2", snapshot)
            for snapshot in hibernation_snapshots(penv, project))).decode()
        resources.append("volume-snapshots.yaml")
    files["kustomization.yaml"] = render_template("project/kustomization.yaml.j2", {
        "resources": resources,
        "images": image_overrides(penv, (DEVSERVER_IMAGE,)),
    })
    return {prefix + name: text.encode() for name, text in sorted(files.items())}


STOPPED_WORKLOAD_NOTE = (
    "# The project is stopped (hibernated without VolumeSnapshots). Argo CD ignores spec.replicas of\n"
    "# Deployments, so they are left out of git while it is stopped and pruned; waking the\n"
    "# project renders them again. Its volumes, Services and Namespace stay.\n")


def _prunes_workloads(penv: ProjectEnvironment, project: ProjectSnapshot) -> bool:
    """Whether a stopped project's Deployments are left out of git (Argo CD ignores spec.replicas; see
    render_project)."""
    return project.stopped and penv.gitops_tool == domain.GITOPS_ARGOCD


def project_paths(penv: ProjectEnvironment, project: ProjectSnapshot) -> tuple[str, ...]:
    """The paths render_project(penv, project) returns, sorted, without rendering a template: the file list of a
    preview of thousands of never-rendered projects (tests/deployments/rendering check both agree)."""
    prefix = f"environments/{penv.name}/projects/{project.namespace}/"
    names = {"namespace.yaml", "network-policy.yaml", "storage.yaml", "file-manager.yaml", "kustomization.yaml"}
    names.update(f"{domain.workload_name(container.role, container.directory)}.yaml"
                 for container in project.containers)
    if project.hibernation_stamp and penv.supports_snapshots:
        names.add("volume-snapshots.yaml")
    return tuple(prefix + name for name in sorted(names))


def render_projects_index(env_name: str, project_ids: tuple[str, ...]) -> dict[str, bytes]:
    text = render_template("projects/kustomization.yaml.j2", {"resources": [f"proj-{pk}" for pk in project_ids]})
    return {f"environments/{env_name}/projects/kustomization.yaml": text.encode()}
