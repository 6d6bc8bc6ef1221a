"""Names, defaults and small helpers shared by the renderer's modules (Studio's facts from DOMAIN.md)."""

import hashlib
import json

from deployments import domain
from deployments.rendering.snapshot import EnvironmentSnapshot, SecretSnapshot
from deployments.rendering.templating import RENDERER_VERSION

PLATFORM_NAMESPACE = "tesslate"
PLATFORM_BASE_DIR = "platform/base/"
PLATFORM_NAME_LABEL = ("app.kubernetes.io/name", "tesslate-studio")
# Objects in project namespaces are shipped by the portal through the GitOps tool.
MANAGED_BY = "tesslate-portal"
IMAGE_NAMES = ("tesslate-backend", "tesslate-devserver", "tesslate-frontend")
DEVSERVER_IMAGE = "tesslate-devserver"
WILDCARD_TLS_SECRET = "tesslate-wildcard-tls"
SECRET_STORE_NAME = "aws-secrets-manager"
# The ClusterSecretStore of the projects' generated credentials (proj-* namespaces only).
PROJECTS_SECRET_STORE_NAME = "tesslate-projects"
EXTERNAL_SECRETS_SERVICE_ACCOUNT = "tesslate-external-secrets"
SECRET_CHECKSUM_PREFIX = "checksum.tesslate.io/"
SECRET_VERSIONS_ANNOTATION = "checksum.tesslate.io/versions"
CONFIG_CHECKSUM_ANNOTATION = "config.tesslate.io/checksum"
ANNOTATION_NAME_MAX = 63
EBS_DRIVER = "ebs.csi.aws.com"
DNS01_ISSUER = "tesslate-letsencrypt-dns01"
HTTP01_ISSUER = "tesslate-letsencrypt-http01"
LETSENCRYPT_SERVER = "https://acme-v02.api.letsencrypt.org/directory"
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
ARGOCD_NAMESPACE = "argocd"
ARGOCD_FINALIZER = "resources-finalizer.argocd.argoproj.io"
# Argo CD retries a failed sync 10 s, 20 s, 40 s, ... up to every 5 minutes; a negative limit retries forever.
ARGOCD_RETRY = {"limit": -1, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"}}
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
# The devserver image's process supervisor (DOMAIN.md "A user project"): Studio starts a dev server as
# `tsinit serve --process main=<command>`; `tsinit serve` alone is the file-manager's file-serving process.
TSINIT = "tsinit"
# Start commands of dev containers on the devserver image, by role, when the admin gives none. They run in
# /app/{dir}; `{port}` is the container's port. The environment also carries HOST and PORT, which Node backends
# (Express, Fastify, Nest) read, so the backend default needs no flags.
DEV_START_COMMANDS = {
    "frontend": "npm install && npm run dev -- --host 0.0.0.0 --port {port}",
    "backend": "npm install && npm run dev",
}
# Readiness every 5 s; the startup probe polls every 10 s for the container's startup budget (npm install and a
# first build can take minutes; the readiness and liveness checks only start once it has passed).
READINESS_PROBE = {"periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3}
STARTUP_PROBE_PERIOD_SECONDS = 10
# The cluster DNS (CoreDNS on EKS, Minikube and kubeadm clusters keeps the kube-dns label for compatibility):
# pods may send DNS queries over UDP and TCP 53 to it and to no other resolver.
CLUSTER_DNS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
# Anywhere outside the cluster except the cloud metadata endpoint (instance credentials).
METADATA_ENDPOINT = "169.254.169.254/32"
INTERNET_PEER = {"ipBlock": {"cidr": "0.0.0.0/0", "except": [METADATA_ENDPOINT]}}
# In-cluster platform datastores (Environment.datastore_mode): images pinned to a major version, the Secrets
# they read (DOMAIN.md: postgres-secret with POSTGRES_DB/USER/PASSWORD), their volume sizes.
POSTGRES_IMAGE = "postgres:16-alpine"
REDIS_IMAGE = "redis:7-alpine"
POSTGRES_SECRET = "postgres-secret"
REDIS_SECRET = "redis-secret"
DATASTORE_SECRETS = (POSTGRES_SECRET, REDIS_SECRET)
POSTGRES_VOLUME_SIZE = "10Gi"
REDIS_VOLUME_SIZE = "2Gi"
# The main Ingress with more than one backend replica: a WebSocket or terminal session must stay on the replica
# that holds it (DOMAIN.md "Platform": cookie TESS_AFFINITY).
BACKEND_AFFINITY_ANNOTATIONS = {
    "nginx.ingress.kubernetes.io/affinity": "cookie",
    "nginx.ingress.kubernetes.io/affinity-mode": "persistent",
    "nginx.ingress.kubernetes.io/session-cookie-name": "TESS_AFFINITY",
    "nginx.ingress.kubernetes.io/session-cookie-max-age": "86400",
}
# Generated credentials of service containers (projects.credentials stores them; the renderer delivers them):
# family -> (password key, URL key) of the Secret svc-{dir}-credentials. User and database names are not secret.
CREDENTIAL_KEYS = {"postgres": ("POSTGRES_PASSWORD", "DATABASE_URL"), "redis": ("REDIS_PASSWORD", "REDIS_URL")}
CREDENTIAL_USER = "app"
CREDENTIAL_DATABASE = "app"


def credential_family(*, image: str, is_service: bool) -> str | None:
    """"postgres", "redis" or None: which generated credentials a service container's image gets."""
    if not is_service:
        return None
    name = image_repository(image).rsplit("/", 1)[-1]
    return next((family for family in CREDENTIAL_KEYS if name.startswith(family)), None)


def project_credential_path(*, environment_name: str, project_id: str, secret_name: str, key: str) -> str:
    """The AWS Secrets Manager name of one generated credential (EKS): written by the secrets service, read by
    the project's ExternalSecret through the ClusterSecretStore."""
    return f"tesslate/{environment_name}/projects/{project_id}/{secret_name}/{key}"


def credentials_secret_name(workload: str) -> str:
    """The Kubernetes Secret of a service container's generated credentials, in the project's namespace."""
    return f"{workload}-credentials"


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


def sha256(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def fingerprint(key: str, *inputs) -> str:
    # repr of frozen dataclasses, tuples, str, int and bool is exact and deterministic.
    return sha256(RENDERER_VERSION, key, *(repr(item) for item in inputs))


def yaml_documents(*texts: str) -> bytes:
    """Join rendered manifests into one multi-document YAML file."""
    return "---\n".join(text if text.endswith("\n") else text + "\n" for text in texts).encode()


def image_reference(registry: str, name: str, tag: str) -> str:
    return f"{registry}/{name}:{tag}" if registry else f"{name}:{tag}"


def image_overrides(env, names) -> list[dict]:
    overrides = []
    for name in names:
        override = {"name": name}
        if env.image_registry:
            override["newName"] = f"{env.image_registry}/{name}"
        override["newTag"] = env.image_tag
        overrides.append(override)
    return overrides


def image_pull_policy(kind: str) -> str:
    """For project pods (and what Studio's backend uses for the pods it starts)."""
    # Minikube runs images loaded into the node (`minikube image load`); pulling them would fail.
    return "Never" if kind == domain.KIND_MINIKUBE else "IfNotPresent"


def platform_pull_policy(kind: str, registry: str) -> str:
    """For the platform's own pods: tags such as `production` are moved by every release, so pull them again
    whenever a pod starts; project pods keep IfNotPresent so that a project opens in seconds."""
    if kind == domain.KIND_MINIKUBE:
        return "Never"
    return "Always" if registry else "IfNotPresent"


def image_repository(image: str) -> str:
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
