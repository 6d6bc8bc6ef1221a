"""The pure renderer: a TreeSnapshot in, render units out, each ``{repository-relative path: bytes}``.

Layout of the GitOps repository (GitOps habits: a base, per-environment overlays, ``clusters/<env>/`` entry
points for Argo CD or Flux):

    platform/base/                            shared Kustomize base of the platform (namespace tesslate)
    environments/<env>/platform/              the environment's overlay of that base
    environments/<env>/projects/              kustomization listing every active project folder
    environments/<env>/projects/proj-<uuid>/  one kustomization root per active project
    clusters/<env>/                           Argo CD AppProject/Application/ApplicationSet or Flux objects
    environments/<env>/README.md              Compose environments only: a note, nothing for a cluster

Each unit's ``render`` reads nothing but the frozen data captured in its closure, and its fingerprint hashes
exactly that data plus the renderer version, so equal fingerprints give equal bytes. ``tree_units`` only builds
closures and hashes; the template work happens when a unit's ``render`` is called.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from deployments.rendering.snapshot import (
    ContainerSnapshot,
    EnvironmentSnapshot,
    ProjectSnapshot,
    SecretSnapshot,
    TreeSnapshot,
)
from deployments.rendering.templating import RENDERER_VERSION, render_template

PLATFORM_NAMESPACE = "tesslate"
PLATFORM_BASE_DIR = "platform/base/"
PLATFORM_NAME_LABEL = ("app.kubernetes.io/name", "tesslate-studio")
# Objects in project namespaces are shipped by the portal through the GitOps tool.
MANAGED_BY = "tesslate-portal"
IMAGE_NAMES = ("tesslate-backend", "tesslate-devserver", "tesslate-frontend")
DEVSERVER_IMAGE = "tesslate-devserver"
WILDCARD_TLS_SECRET = "tesslate-wildcard-tls"
SECRET_STORE_NAME = "aws-secrets-manager"
EXTERNAL_SECRETS_SERVICE_ACCOUNT = "tesslate-external-secrets"
SECRET_CHECKSUM_PREFIX = "checksum.tesslate.io/"
SECRET_VERSIONS_ANNOTATION = "checksum.tesslate.io/versions"
CONFIG_CHECKSUM_ANNOTATION = "config.tesslate.io/checksum"
ANNOTATION_NAME_MAX = 63
EBS_DRIVER = "ebs.csi.aws.com"
LETSENCRYPT_SERVER = "https://acme-v02.api.letsencrypt.org/directory"
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
ARGOCD_NAMESPACE = "argocd"
ARGOCD_FINALIZER = "resources-finalizer.argocd.argoproj.io"
FLUX_NAMESPACE = "flux-system"
FLUX_SOURCE_NAME = "tesslate-gitops"
REFLECTOR_ANNOTATIONS = {
    # emberstack/reflector copies the wildcard certificate's Secret into every proj-* namespace, so the project
    # Ingresses can reference it (an Ingress can only use a TLS Secret of its own namespace).
    "reflector.v1.k8s.emberstack.com/reflection-allowed": "true",
    "reflector.v1.k8s.emberstack.com/reflection-allowed-namespaces": "proj-.*",
    "reflector.v1.k8s.emberstack.com/reflection-auto-enabled": "true",
    "reflector.v1.k8s.emberstack.com/reflection-auto-namespaces": "proj-.*",
}
DEV_INGRESS_ANNOTATIONS = {
    "nginx.ingress.kubernetes.io/proxy-http-version": "1.1",
    "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
    "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
}
# Where service containers keep their data, by image family; anything else gets /data.
SERVICE_DATA_PATHS = (
    ("postgres", "/var/lib/postgresql/data"),
    ("mysql", "/var/lib/mysql"),
    ("mariadb", "/var/lib/mysql"),
    ("mongo", "/data/db"),
    ("redis", "/data"),
)

# The base ConfigMap: Studio's defaults for Kubernetes mode (DOMAIN.md). Overlays set the environment's values.
BASE_CONFIG = {
    "APP_DOMAIN": "localhost",
    "COOKIE_SECURE": "false",
    "DEPLOYMENT_MODE": "kubernetes",
    "K8S_AFFINITY_TOPOLOGY_KEY": "kubernetes.io/hostname",
    "K8S_DEVSERVER_IMAGE": "tesslate-devserver:latest",
    "K8S_ENABLE_NETWORK_POLICIES": "true",
    "K8S_ENABLE_POD_AFFINITY": "true",
    "K8S_HIBERNATION_IDLE_MINUTES": "10",
    "K8S_IMAGE_PULL_POLICY": "IfNotPresent",
    "K8S_INGRESS_CLASS": "nginx",
    "K8S_MAX_SNAPSHOTS_PER_PROJECT": "5",
    "K8S_NAMESPACE_PER_PROJECT": "true",
    "K8S_PVC_ACCESS_MODE": "ReadWriteOnce",
    "K8S_PVC_SIZE": "5Gi",
    "K8S_SNAPSHOT_CLASS": "tesslate-ebs-snapshots",
    "K8S_SNAPSHOT_READY_TIMEOUT_SECONDS": "300",
    "K8S_SNAPSHOT_RETENTION_DAYS": "30",
    "K8S_STORAGE_CLASS": "tesslate-block-storage",
    "K8S_USE_VOLUME_SNAPSHOTS": "false",
    "K8S_WILDCARD_TLS_SECRET": "",
    "KUBERNETES_NAMESPACE": PLATFORM_NAMESPACE,
}


@dataclass(frozen=True)
class RenderUnit:
    """A folder of the repository and how to render it; the git writer skips units whose fingerprint it has."""

    key: str
    directory: str
    fingerprint: str
    render: Callable[[], dict[str, bytes]]


# --- helpers ----------------------------------------------------------------------------------------------------

def _sha256(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _fingerprint(key: str, *inputs) -> str:
    # repr of frozen dataclasses, tuples, str, int and bool is exact and deterministic.
    return _sha256(RENDERER_VERSION, key, *(repr(item) for item in inputs))


def _documents(*texts: str) -> bytes:
    """Join rendered manifests into one multi-document YAML file."""
    return "---\n".join(text if text.endswith("\n") else text + "\n" for text in texts).encode()


def _image(registry: str, name: str, tag: str) -> str:
    return f"{registry}/{name}:{tag}" if registry else f"{name}:{tag}"


def _image_overrides(env, names) -> list[dict]:
    overrides = []
    for name in names:
        override = {"name": name}
        if env.image_registry:
            override["newName"] = f"{env.image_registry}/{name}"
        override["newTag"] = env.image_tag
        overrides.append(override)
    return overrides


def _pull_policy(kind: str) -> str:
    # Minikube runs images loaded into the node (`minikube image load`); pulling them would fail.
    return "Never" if kind == "minikube" else "IfNotPresent"


def _image_repository(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name


def secret_versions_hash(secrets: tuple[SecretSnapshot, ...] | list[SecretSnapshot]) -> str:
    """sha256 over the sorted (key, version) pairs of one Secret's delivered keys: changes with any rotation,
    reveals nothing about the values."""
    pairs = sorted((secret.key, secret.version) for secret in secrets)
    return hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()


def secret_checksum_annotation(secret_name: str) -> str:
    """The pod-template annotation key that rolls the pods when a Secret's versions change."""
    name = secret_name if len(secret_name) <= ANNOTATION_NAME_MAX else (
        "secret-" + hashlib.sha256(secret_name.encode()).hexdigest()[:32])
    return SECRET_CHECKSUM_PREFIX + name


def delivered_secrets(env: EnvironmentSnapshot) -> dict[str, list[SecretSnapshot]]:
    """Secret name -> the keys that reach the cluster.

    External Secrets: keys that have a value (version > 0; the run writes them to AWS Secrets Manager).
    Sealed Secrets: keys that have a sealed value (the others are left out; the run warns about them).
    Every Secret name appears, even with no key delivered yet, so the workloads' envFrom always resolves.
    """
    grouped: dict[str, list[SecretSnapshot]] = {}
    for secret in env.secrets:
        keys = grouped.setdefault(secret.secret_name, [])
        if (secret.version > 0) if env.uses_external_secrets else bool(secret.sealed_value):
            keys.append(secret)
    return grouped


# --- the shared platform base -----------------------------------------------------------------------------------

def _render_platform_base() -> dict[str, bytes]:
    context = {
        "namespace": PLATFORM_NAMESPACE,
        "name_label": dict([PLATFORM_NAME_LABEL]),
        "images": [{"name": name, "newTag": "latest"} for name in IMAGE_NAMES],
        "config": BASE_CONFIG,
    }
    files = {
        "kustomization.yaml": render_template("platform/kustomization.yaml.j2", context),
        "namespace.yaml": render_template("platform/namespace.yaml.j2", context),
        "rbac.yaml": render_template("platform/rbac.yaml.j2", context),
        "configmap.yaml": render_template("platform/configmap.yaml.j2", context),
        "backend.yaml": _documents(render_template("platform/backend-deployment.yaml.j2", context),
                                   render_template("platform/service.yaml.j2", {
                                       "name": "tesslate-backend-service", "app": "tesslate-backend",
                                       "port": 8000, "port_name": "http"})).decode(),
        "frontend.yaml": _documents(render_template("platform/frontend-deployment.yaml.j2", context),
                                    render_template("platform/service.yaml.j2", {
                                        "name": "tesslate-frontend-service", "app": "tesslate-frontend",
                                        "port": 80, "port_name": "http"})).decode(),
        "worker.yaml": render_template("platform/worker-deployment.yaml.j2", context),
        "snapshot-cleanup.yaml": render_template("platform/snapshot-cleanup-cronjob.yaml.j2", context),
        "namespace-reaper.yaml": render_template("platform/namespace-reaper-cronjob.yaml.j2", context),
        "ingress.yaml": render_template("platform/ingress.yaml.j2", context),
    }
    return {PLATFORM_BASE_DIR + name: text.encode() for name, text in sorted(files.items())}


# --- an environment's platform overlay --------------------------------------------------------------------------

def environment_config(env: EnvironmentSnapshot) -> dict[str, str]:
    """The environment's values of the tesslate-config ConfigMap (merged over BASE_CONFIG by the overlay)."""
    tls = env.tls_mode != "none"
    return {
        "APP_BASE_URL": f"{'https' if tls else 'http'}://{env.app_domain}",
        "APP_DOMAIN": env.app_domain,
        "COOKIE_SECURE": "true" if tls else "false",
        "K8S_DEVSERVER_IMAGE": _image(env.image_registry, DEVSERVER_IMAGE, env.image_tag),
        "K8S_HIBERNATION_IDLE_MINUTES": str(env.hibernation_idle_minutes),
        "K8S_IMAGE_PULL_POLICY": _pull_policy(env.kind),
        "K8S_INGRESS_CLASS": env.ingress_class,
        "K8S_MAX_SNAPSHOTS_PER_PROJECT": str(env.max_snapshots_per_project),
        "K8S_SNAPSHOT_CLASS": env.volume_snapshot_class,
        "K8S_SNAPSHOT_RETENTION_DAYS": str(env.snapshot_retention_days),
        "K8S_STORAGE_CLASS": env.storage_class_name,
        "K8S_USE_VOLUME_SNAPSHOTS": "true" if env.supports_snapshots else "false",
        "K8S_WILDCARD_TLS_SECRET": WILDCARD_TLS_SECRET if env.tls_mode == "cert-manager-dns01" else "",
    }


def _cluster_issuer_name(env: EnvironmentSnapshot) -> str:
    return "tesslate-letsencrypt-dns01" if env.tls_mode == "cert-manager-dns01" else "tesslate-letsencrypt-http01"


def _render_platform_overlay(env: EnvironmentSnapshot) -> dict[str, bytes]:
    prefix = f"environments/{env.name}/platform/"
    config = environment_config(env)
    merged_config = {**BASE_CONFIG, **config}
    config_checksum = hashlib.sha256(json.dumps(merged_config, sort_keys=True).encode()).hexdigest()
    secrets = delivered_secrets(env)
    secret_names = sorted(secrets)
    versions = {name: secret_versions_hash(keys) for name, keys in secrets.items()}
    pull_policy = _pull_policy(env.kind)
    env_from = [{"configMapRef": {"name": "tesslate-config"}}]
    env_from += [{"secretRef": {"name": name}} for name in secret_names]
    pod_annotations = {CONFIG_CHECKSUM_ANNOTATION: config_checksum}
    pod_annotations.update({secret_checksum_annotation(name): versions[name] for name in secret_names})
    pod_annotations = dict(sorted(pod_annotations.items()))

    files: dict[str, str] = {}
    resources = ["../../../platform/base", "storage-class.yaml"]
    files["storage-class.yaml"] = render_template("overlay/storage-class.yaml.j2", {
        "name": env.storage_class_name,
        "ebs": env.storage_provisioner == "ebs-gp3",
        "encrypted": "true" if env.storage_encrypted else "false",
    })
    if env.supports_snapshots:
        resources.append("volume-snapshot-class.yaml")
        files["volume-snapshot-class.yaml"] = render_template("overlay/volume-snapshot-class.yaml.j2", {
            "name": env.volume_snapshot_class, "driver": EBS_DRIVER})

    ingress_tls = None
    ingress_annotations = {}
    if env.tls_mode != "none":
        resources.append("tls.yaml")
        issuer = _cluster_issuer_name(env)
        documents = [render_template("overlay/cluster-issuer.yaml.j2", {
            "name": issuer, "server": LETSENCRYPT_SERVER, "email": env.acme_email,
            "dns01": env.tls_mode == "cert-manager-dns01",
            "cloudflare_secret": env.cloudflare_api_token_secret, "ingress_class": env.ingress_class,
        })]
        if env.tls_mode == "cert-manager-dns01":
            documents.append(render_template("overlay/certificate.yaml.j2", {
                "name": WILDCARD_TLS_SECRET, "namespace": PLATFORM_NAMESPACE, "secret_name": WILDCARD_TLS_SECRET,
                "dns_names": [f"*.{env.app_domain}", env.app_domain], "issuer": issuer,
                "secret_annotations": REFLECTOR_ANNOTATIONS,
            }))
            ingress_tls = [{"hosts": [env.app_domain], "secretName": WILDCARD_TLS_SECRET}]
        else:
            # ingress-shim issues the main Ingress's own certificate through HTTP-01.
            ingress_annotations["cert-manager.io/cluster-issuer"] = issuer
            ingress_tls = [{"hosts": [env.app_domain], "secretName": "tesslate-tls"}]
        files["tls.yaml"] = _documents(*documents).decode()

    if secret_names:
        resources.append("secrets.yaml")
        if env.uses_external_secrets:
            role_arn = env.secrets_manager_role_arn or (
                f"arn:aws:iam::{env.aws_account_id}:role/tesslate-external-secrets-{env.name}")
            documents = [render_template("overlay/external-secrets-store.yaml.j2", {
                "namespace": PLATFORM_NAMESPACE, "service_account": EXTERNAL_SECRETS_SERVICE_ACCOUNT,
                "role_arn": role_arn, "store": SECRET_STORE_NAME, "region": env.aws_region,
            })]
            for name in secret_names:
                documents.append(render_template("overlay/external-secret.yaml.j2", {
                    "name": name, "namespace": PLATFORM_NAMESPACE, "store": SECRET_STORE_NAME,
                    "versions_annotation": SECRET_VERSIONS_ANNOTATION, "versions": versions[name],
                    "data": [{"secretKey": s.key,
                              "remoteRef": {"key": f"tesslate/{env.name}/{name}/{s.key}"}} for s in secrets[name]],
                }))
        else:
            documents = [render_template("overlay/sealed-secret.yaml.j2", {
                "name": name, "namespace": PLATFORM_NAMESPACE,
                "versions_annotation": SECRET_VERSIONS_ANNOTATION, "versions": versions[name],
                "encrypted_data": {s.key: s.sealed_value for s in secrets[name]},
            }) for name in secret_names]
        files["secrets.yaml"] = _documents(*documents).decode()

    patches = []
    files["patches/configmap.yaml"] = render_template("overlay/configmap-patch.yaml.j2", {
        "namespace": PLATFORM_NAMESPACE, "config": config})
    patches.append({"path": "patches/configmap.yaml"})
    backend_resources = {
        "limits": {"cpu": env.backend_cpu_limit, "memory": env.backend_memory_limit},
        "requests": {"cpu": env.backend_cpu_request, "memory": env.backend_memory_request},
    }
    for name, container, replicas, resources_, env_from_, annotations in (
            ("tesslate-backend", "backend", env.backend_replicas, backend_resources, env_from, pod_annotations),
            ("tesslate-frontend", "frontend", None, None, None, None),
            ("tesslate-worker", "worker", None, None, env_from, pod_annotations)):
        files[f"patches/{name}.yaml"] = render_template("overlay/deployment-patch.yaml.j2", {
            "name": name, "namespace": PLATFORM_NAMESPACE, "container": container, "replicas": replicas,
            "resources": resources_, "env_from": env_from_, "annotations": annotations, "pull_policy": pull_policy,
        })
        patches.append({"path": f"patches/{name}.yaml"})
    for name, container, suspend in (
            ("namespace-reaper", "reaper", None),
            # Minikube has no VolumeSnapshots, so there is nothing to clean up.
            ("snapshot-cleanup", "cleanup", env.kind == "minikube" or None)):
        files[f"patches/{name}.yaml"] = render_template("overlay/cronjob-patch.yaml.j2", {
            "name": name, "namespace": PLATFORM_NAMESPACE, "container": container, "suspend": suspend,
            "env_from": env_from, "pull_policy": pull_policy,
        })
        patches.append({"path": f"patches/{name}.yaml"})

    operations = [
        {"op": "replace", "path": "/spec/ingressClassName", "value": env.ingress_class},
        {"op": "add", "path": "/spec/rules/0/host", "value": env.app_domain},
    ]
    for key, value in ingress_annotations.items():
        operations.append({"op": "add", "path": "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1"),
                           "value": value})
    if ingress_tls:
        operations.append({"op": "add", "path": "/spec/tls", "value": ingress_tls})
    files["patches/ingress.yaml"] = render_template("overlay/json-patch.yaml.j2", {"operations": operations})
    patches.append({"path": "patches/ingress.yaml",
                    "target": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress",
                               "name": "tesslate-ingress"}})

    files["kustomization.yaml"] = render_template("overlay/kustomization.yaml.j2", {
        "resources": resources,
        "labels": {"tesslate.io/environment": env.name},
        "images": _image_overrides(env, IMAGE_NAMES),
        "patches": patches,
    })
    return {prefix + name: text.encode() for name, text in sorted(files.items())}


# --- projects ---------------------------------------------------------------------------------------------------

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
    family = _image_repository(image).rsplit("/", 1)[-1]
    for prefix, path in SERVICE_DATA_PATHS:
        if family.startswith(prefix):
            return path
    return "/data"


def _container_context(penv: ProjectEnvironment, project: ProjectSnapshot, container: ContainerSnapshot,
                       base_labels: dict, pull_policy: str) -> dict:
    service = container.is_service
    workload = f"{'svc' if service else 'dev'}-{container.directory}"
    component = "service-container" if service else "dev-container"
    labels = {**base_labels, "tesslate.io/component": component,
              "tesslate.io/container-directory": container.directory}
    is_devserver = _image_repository(container.image) == DEVSERVER_IMAGE
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
        host = f"{project.slug}-{container.directory}.{penv.app_domain}"
        annotations = dict(DEV_INGRESS_ANNOTATIONS)
        tls = None
        if penv.tls_mode == "cert-manager-dns01":
            tls = [{"hosts": [host], "secretName": WILDCARD_TLS_SECRET}]
        elif penv.tls_mode == "letsencrypt-http01":
            annotations["cert-manager.io/cluster-issuer"] = "tesslate-letsencrypt-http01"
            tls = [{"hosts": [host], "secretName": f"{workload}-tls"}]
        context.update({
            "host": host, "ingress_class": penv.ingress_class, "ingress_annotations": dict(sorted(annotations.items())),
            "tls": tls, "working_dir": f"/app/{container.directory}",
            "env": [{"name": "HOST", "value": "0.0.0.0"}, {"name": "PORT", "value": str(container.port)}],
        })
    return context


def _render_project(penv: ProjectEnvironment, project: ProjectSnapshot) -> dict[str, bytes]:
    prefix = f"environments/{penv.name}/projects/{project.namespace}/"
    namespace = project.namespace
    base_labels = {"app.kubernetes.io/managed-by": MANAGED_BY, "tesslate.io/project-id": project.id,
                   "tesslate.io/user-id": project.owner}
    pull_policy = _pull_policy(penv.kind)
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
    files["storage.yaml"] = _documents(*storage).decode()
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
        files[filename] = _documents(*documents).decode()
        resources.append(filename)

    files["kustomization.yaml"] = render_template("project/kustomization.yaml.j2", {
        "resources": resources,
        "images": _image_overrides(penv, (DEVSERVER_IMAGE,)),
    })
    return {prefix + name: text.encode() for name, text in sorted(files.items())}


def _render_projects_index(env_name: str, project_ids: tuple[str, ...]) -> dict[str, bytes]:
    text = render_template("projects/kustomization.yaml.j2", {"resources": [f"proj-{pk}" for pk in project_ids]})
    return {f"environments/{env_name}/projects/kustomization.yaml": text.encode()}


# --- clusters/<env>/ --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClusterEntry:
    env_name: str
    gitops_tool: str
    repo_url: str
    branch: str


def _render_cluster_entry(entry: ClusterEntry) -> dict[str, bytes]:
    prefix = f"clusters/{entry.env_name}/"
    context = {
        "env": entry.env_name, "repo_url": entry.repo_url, "branch": entry.branch,
        "platform_path": f"environments/{entry.env_name}/platform",
        "projects_path": f"environments/{entry.env_name}/projects",
    }
    if entry.gitops_tool == "flux":
        context.update({"namespace": FLUX_NAMESPACE, "source": FLUX_SOURCE_NAME})
        files = {
            "source.yaml": render_template("clusters/flux-gitrepository.yaml.j2", context),
            "platform.yaml": render_template("clusters/flux-kustomization.yaml.j2", {
                **context, "name": f"tesslate-platform-{entry.env_name}", "path": context["platform_path"],
                "depends_on": None, "timeout": "5m"}),
            "projects.yaml": render_template("clusters/flux-kustomization.yaml.j2", {
                **context, "name": f"tesslate-projects-{entry.env_name}", "path": context["projects_path"],
                "depends_on": f"tesslate-platform-{entry.env_name}", "timeout": "15m"}),
        }
    else:
        context.update({
            "namespace": ARGOCD_NAMESPACE, "project": f"tesslate-{entry.env_name}", "server": IN_CLUSTER_SERVER,
            "finalizer": ARGOCD_FINALIZER,
            # Argo CD's Go template syntax, passed as data so jinja leaves the braces alone.
            "app_name_template": f"{entry.env_name}-{{{{ .path.basename }}}}",
            "path_template": "{{ .path.path }}",
            "namespace_template": "{{ .path.basename }}",
        })
        files = {
            "appproject.yaml": render_template("clusters/argocd-appproject.yaml.j2", context),
            "platform.yaml": render_template("clusters/argocd-application.yaml.j2", context),
            "projects.yaml": render_template("clusters/argocd-applicationset.yaml.j2", context),
        }
    files["kustomization.yaml"] = render_template("clusters/kustomization.yaml.j2", {
        "resources": sorted(files)})
    return {prefix + name: text.encode() for name, text in sorted(files.items())}


def _render_compose_note(env_name: str) -> dict[str, bytes]:
    text = render_template("compose/README.md.j2", {"env": env_name})
    return {f"environments/{env_name}/README.md": text.encode()}


# --- the public API ---------------------------------------------------------------------------------------------

def tree_units(snapshot: TreeSnapshot) -> list[RenderUnit]:
    """Every unit of the snapshot, sorted by key. Cheap: hashing only, no template is rendered here."""
    units = [RenderUnit(key="shared:platform-base", directory=PLATFORM_BASE_DIR,
                        fingerprint=_fingerprint("shared:platform-base"), render=_render_platform_base)]
    for env in snapshot.environments:
        base_key = f"env:{env.name}"
        if not env.is_kubernetes:
            key = f"{base_key}:compose"
            units.append(RenderUnit(key=key, directory=f"environments/{env.name}/",
                                    fingerprint=_fingerprint(key, env.name),
                                    render=partial(_render_compose_note, env.name)))
            continue
        platform_input = _platform_input(env)
        key = f"{base_key}:platform"
        units.append(RenderUnit(key=key, directory=f"environments/{env.name}/platform/",
                                fingerprint=_fingerprint(key, platform_input),
                                render=partial(_render_platform_overlay, platform_input)))
        entry = ClusterEntry(env_name=env.name, gitops_tool=env.gitops_tool, repo_url=snapshot.repo_url,
                             branch=snapshot.branch)
        key = f"{base_key}:clusters"
        units.append(RenderUnit(key=key, directory=f"clusters/{env.name}/", fingerprint=_fingerprint(key, entry),
                                render=partial(_render_cluster_entry, entry)))
        project_ids = tuple(project.id for project in env.projects)
        key = f"{base_key}:projects-index"
        units.append(RenderUnit(key=key, directory=f"environments/{env.name}/projects/",
                                fingerprint=_fingerprint(key, env.name, project_ids),
                                render=partial(_render_projects_index, env.name, project_ids)))
        penv = ProjectEnvironment.of(env)
        # Hash the shared environment part once, not once per project.
        penv_digest = _sha256(repr(penv))
        for project in env.projects:
            key = f"{base_key}:project:{project.id}"
            units.append(RenderUnit(
                key=key, directory=f"environments/{env.name}/projects/{project.namespace}/",
                fingerprint=_sha256(RENDERER_VERSION, key, penv_digest, repr(project)),
                render=partial(_render_project, penv, project),
            ))
    units.sort(key=lambda unit: unit.key)
    return units


def _platform_input(env: EnvironmentSnapshot) -> EnvironmentSnapshot:
    """The environment without its projects and database id: what the platform overlay reads."""
    return replace(env, id=0, projects=())


def render_tree(snapshot: TreeSnapshot) -> dict[str, bytes]:
    """All units rendered and merged, sorted by path."""
    files: dict[str, bytes] = {}
    for unit in tree_units(snapshot):
        for path, content in unit.render().items():
            if path in files:
                raise ValueError(f"{path} is rendered by two units (the second is {unit.key})")
            if not path.startswith(unit.directory):
                raise ValueError(f"{unit.key} rendered {path} outside its folder {unit.directory}")
            files[path] = content
    return dict(sorted(files.items()))


def snapshot_scopes(snapshot: TreeSnapshot) -> tuple[str, ...]:
    """Folders this render owns: files under them that it no longer renders are deleted by the git writer."""
    if snapshot.covers_all_environments:
        return (PLATFORM_BASE_DIR, "clusters/", "environments/")
    scopes = [PLATFORM_BASE_DIR]
    for env in snapshot.environments:
        scopes += [f"environments/{env.name}/", f"clusters/{env.name}/"]
    return tuple(sorted(scopes))
