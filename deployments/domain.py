"""Domain rules of Tesslate Studio deployments, defined once: the models and the renderer both use these.

Pure Python (no Django): values of the model choices the renderer branches on, and the rules that derive names
and capabilities from them. Sources: ``../shared/DOMAIN.md`` (Studio's source) and the operator guide.
"""

from __future__ import annotations

import re
from decimal import Decimal

# Environment.kind
KIND_MINIKUBE = "minikube"
KIND_EKS = "eks"
KIND_COMPOSE = "compose"
KUBERNETES_KINDS = (KIND_MINIKUBE, KIND_EKS)

# Environment.tls_mode
TLS_NONE = "none"
TLS_CERT_MANAGER_DNS01 = "cert-manager-dns01"
TLS_LETSENCRYPT_HTTP01 = "letsencrypt-http01"

# Environment.storage_provisioner
STORAGE_MINIKUBE_HOSTPATH = "minikube-hostpath"
STORAGE_EBS_GP3 = "ebs-gp3"
MINIKUBE_PROVISIONER = "k8s.io/minikube-hostpath"
EBS_PROVISIONER = "ebs.csi.aws.com"

# Environment.acme_challenge (Compose servers: how Traefik proves the domain to Let's Encrypt)
ACME_HTTP01 = "http-01"
ACME_DNS01 = "dns-01"

# Environment.datastore_mode: the platform's PostgreSQL and Redis in the cluster, or external (RDS / ElastiCache)
DATASTORE_IN_CLUSTER = "in-cluster"
DATASTORE_EXTERNAL = "external"

# Environment.gitops_tool
GITOPS_ARGOCD = "argocd"
GITOPS_FLUX = "flux"

# NodeGroup.capacity_type / hosts
CAPACITY_ON_DEMAND = "ON_DEMAND"
CAPACITY_SPOT = "SPOT"
HOSTS_PLATFORM = "platform"
HOSTS_USER_PROJECTS = "user-projects"
HOSTS_BOTH = "both"

# Container.role: database and other services run as svc-{dir} with their own volume; the rest as dev-{dir}.
ROLE_FRONTEND = "frontend"
ROLE_BACKEND = "backend"
ROLE_DATABASE = "database"
ROLE_SERVICE = "service"
SERVICE_ROLES = frozenset({ROLE_DATABASE, ROLE_SERVICE})

# Project.state: only active projects have a folder in git (DOMAIN.md: hibernation deletes the namespace).
STATE_ACTIVE = "active"
STATE_HIBERNATING = "hibernating"
STATE_HIBERNATED = "hibernated"
STATE_DELETED = "deleted"


def is_kubernetes(kind: str) -> bool:
    return kind in KUBERNETES_KINDS


def supports_snapshots(kind: str, storage_provisioner: str) -> bool:
    """EBS VolumeSnapshots exist only on EKS with EBS storage (the guide: Minikube has no VolumeSnapshots)."""
    return kind == KIND_EKS and storage_provisioner == STORAGE_EBS_GP3


def hibernation_stops(kind: str, storage_provisioner: str) -> bool:
    """Kubernetes clusters without EBS VolumeSnapshots (Minikube) hibernate a project by stopping it: zero
    replicas, namespace and volumes kept, never pruned (DOMAIN.md: "Minikube has no VolumeSnapshots")."""
    return is_kubernetes(kind) and not supports_snapshots(kind, storage_provisioner)


def project_is_rendered(state: str, kind: str, storage_provisioner: str) -> bool:
    """Whether a project in ``state`` has a folder in git: active projects; hibernating projects of clusters with
    VolumeSnapshots (the hibernation commits its VolumeSnapshots before anything is removed); hibernated projects
    of clusters without them (stopped, never pruned)."""
    if state == STATE_ACTIVE:
        return True
    if state == STATE_HIBERNATING:
        return supports_snapshots(kind, storage_provisioner)
    return state == STATE_HIBERNATED and hibernation_stops(kind, storage_provisioner)


PROJECT_VOLUME = "project-storage"
SNAPSHOT_TYPE_HIBERNATION = "hibernation"


def hibernation_snapshot_name(project_id: str, stamp: str, volume_name: str) -> str:
    """The VolumeSnapshot of one volume in a hibernation (DOMAIN.md: ``snap-{first 8 of project id}-{YYYYmmdd-
    HHMMSS}``). Every PVC of the project is snapshotted in one namespace, so the service volumes append their PVC
    name: ``snap-1a2b3c4d-20260101-120000`` (project-storage), ``snap-1a2b3c4d-20260101-120000-svc-db-data``."""
    base = f"snap-{str(project_id)[:8]}-{stamp}"
    return base if volume_name == PROJECT_VOLUME else f"{base}-{volume_name}"


def restore_object_names(snapshot_name: str, namespace: str) -> tuple[str, str]:
    """(VolumeSnapshotContent, VolumeSnapshot) names restoring ``snapshot_name`` into ``namespace``: Studio's
    ``restored-{snapshot}-{last 8 of the namespace}`` for the cluster-scoped content (DOMAIN.md "Restore"), and
    ``restored-{snapshot}`` for the VolumeSnapshot bound to it (never the hibernation's own name, which may still
    exist while a namespace is being deleted)."""
    return f"restored-{snapshot_name}-{namespace[-8:]}", f"restored-{snapshot_name}"


def uses_external_secrets(kind: str) -> bool:
    """EKS reads secrets from AWS Secrets Manager (External Secrets); other clusters get SealedSecrets."""
    return kind == KIND_EKS


def provisioner(storage_provisioner: str) -> str:
    """The CSI / hostpath provisioner of the environment's StorageClass."""
    return EBS_PROVISIONER if storage_provisioner == STORAGE_EBS_GP3 else MINIKUBE_PROVISIONER


def scheme(tls_mode: str) -> str:
    return "http" if tls_mode == TLS_NONE else "https"


def is_service_role(role: str) -> bool:
    return role in SERVICE_ROLES


def project_namespace(project_id: object) -> str:
    """DOMAIN.md: every user project lives in namespace ``proj-{project uuid}``."""
    return f"proj-{project_id}"


def workload_name(role: str, directory: str) -> str:
    """DOMAIN.md: ``dev-{dir}`` for dev containers, ``svc-{dir}`` for service containers."""
    return f"{'svc' if is_service_role(role) else 'dev'}-{directory}"


def host_label(slug: str, directory: str) -> str:
    """DOMAIN.md: a project host is ``{project-slug}-{dir}.{APP_DOMAIN}``, one label deep for the wildcard cert."""
    return f"{slug}-{directory}"


def project_host(slug: str, directory: str, app_domain: str) -> str:
    return f"{host_label(slug, directory)}.{app_domain}"


def url_without_credentials(url: str) -> str:
    """``https://user:token@host/repo.git`` → ``https://host/repo.git``. Manifests name the repository Argo CD or
    Flux clone, and must never carry a credential (those reach the GitOps tool as its own repository Secret).
    scp-style ``git@host:path`` URLs keep their user name (it is not a credential)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    return f"{scheme}://{authority}{slash}{path}"


# Kubernetes resource.Quantity as the portal accepts it: unsigned, no exponent (500m, 1, 0.5, 256Mi, 2Gi, 1k).
QUANTITY_RE = re.compile(r"(?P<num>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?",
                         re.ASCII)
QUANTITY_SUFFIXES = {
    "": Decimal(1), "m": Decimal("0.001"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


def quantity_amount(value: str) -> Decimal:
    """The amount of a quantity in base units (cores, bytes); ValueError when it is not one (validators.py turns
    that into a field error)."""
    match = QUANTITY_RE.fullmatch(value or "")
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    return Decimal(match["num"]) * QUANTITY_SUFFIXES[match["suffix"] or ""]
