"""The platform: the shared base (platform/base/) and each environment's overlay (environments/<env>/platform/)."""

import hashlib
import json

from deployments import domain
from deployments.rendering.common import (
    BACKEND_AFFINITY_ANNOTATIONS,
    BASE_CONFIG,
    CLUSTER_DNS_PEER,
    CONFIG_CHECKSUM_ANNOTATION,
    DATASTORE_SECRETS,
    DEVSERVER_IMAGE,
    DNS01_ISSUER,
    DNS_PORTS,
    EBS_DRIVER,
    EXTERNAL_SECRETS_SERVICE_ACCOUNT,
    HTTP01_ISSUER,
    IMAGE_NAMES,
    INTERNET_PEER,
    LETSENCRYPT_SERVER,
    PLATFORM_BASE_DIR,
    PLATFORM_NAME_LABEL,
    PLATFORM_NAMESPACE,
    POSTGRES_IMAGE,
    POSTGRES_SECRET,
    POSTGRES_VOLUME_SIZE,
    PROJECTS_SECRET_STORE_NAME,
    REDIS_IMAGE,
    REDIS_SECRET,
    REDIS_VOLUME_SIZE,
    REFLECTOR_ANNOTATIONS,
    SECRET_STORE_NAME,
    SECRET_VERSIONS_ANNOTATION,
    WILDCARD_TLS_SECRET,
    delivered_secrets,
    image_overrides,
    image_pull_policy,
    image_reference,
    platform_pull_policy,
    secret_checksum_annotation,
    secret_versions_hash,
    yaml_documents,
)
from deployments.rendering.snapshot import EnvironmentSnapshot
from deployments.rendering.templating import render_template

DNS01 = domain.TLS_CERT_MANAGER_DNS01
# Ports the platform opens outside the cluster: HTTP(S), the Kubernetes API server (6443 kubeadm, 8443 Minikube),
# PostgreSQL and Redis (external datastores).
PLATFORM_EGRESS_PORTS = (80, 443, 5432, 6379, 6443, 8443)

# --- the shared platform base -----------------------------------------------------------------------------------

def render_platform_base() -> dict[str, bytes]:
    context = {
        "namespace": PLATFORM_NAMESPACE,
        "name_label": dict([PLATFORM_NAME_LABEL]),
        "images": [{"name": name, "newTag": "latest"} for name in IMAGE_NAMES],
        "config": BASE_CONFIG,
    }

    def service(name: str, app: str, port: int) -> str:
        service_context = {"name": name, "app": app, "port": port, "port_name": "http"}
        return render_template("platform/service.yaml.j2", service_context)

    files = {
        "kustomization.yaml": render_template("platform/kustomization.yaml.j2", context).encode(),
        "namespace.yaml": render_template("platform/namespace.yaml.j2", context).encode(),
        "rbac.yaml": render_template("platform/rbac.yaml.j2", context).encode(),
        "configmap.yaml": render_template("platform/configmap.yaml.j2", context).encode(),
        "backend.yaml": yaml_documents(render_template("platform/backend-deployment.yaml.j2", context),
                                       service("tesslate-backend-service", "tesslate-backend", 8000)),
        "frontend.yaml": yaml_documents(render_template("platform/frontend-deployment.yaml.j2", context),
                                        service("tesslate-frontend-service", "tesslate-frontend", 80)),
        "worker.yaml": render_template("platform/worker-deployment.yaml.j2", context).encode(),
        "snapshot-cleanup.yaml": render_template("platform/snapshot-cleanup-cronjob.yaml.j2", context).encode(),
        "namespace-reaper.yaml": render_template("platform/namespace-reaper-cronjob.yaml.j2", context).encode(),
        "ingress.yaml": render_template("platform/ingress.yaml.j2", context).encode(),
    }
    return {PLATFORM_BASE_DIR + name: content for name, content in sorted(files.items())}


# --- an environment's platform overlay --------------------------------------------------------------------------

def environment_config(env: EnvironmentSnapshot) -> dict[str, str]:
    """The environment's values of the tesslate-config ConfigMap (merged over BASE_CONFIG by the overlay)."""
    tls = env.tls_mode != domain.TLS_NONE
    return {
        "APP_BASE_URL": f"{'https' if tls else 'http'}://{env.app_domain}",
        "APP_DOMAIN": env.app_domain,
        "COOKIE_SECURE": "true" if tls else "false",
        "K8S_DEVSERVER_IMAGE": image_reference(env.image_registry, DEVSERVER_IMAGE, env.image_tag),
        "K8S_HIBERNATION_IDLE_MINUTES": str(env.hibernation_idle_minutes),
        "K8S_IMAGE_PULL_POLICY": image_pull_policy(env.kind),
        "K8S_INGRESS_CLASS": env.ingress_class,
        "K8S_MAX_SNAPSHOTS_PER_PROJECT": str(env.max_snapshots_per_project),
        "K8S_SNAPSHOT_CLASS": env.volume_snapshot_class,
        "K8S_SNAPSHOT_RETENTION_DAYS": str(env.snapshot_retention_days),
        "K8S_STORAGE_CLASS": env.storage_class_name,
        "K8S_USE_VOLUME_SNAPSHOTS": "true" if env.supports_snapshots else "false",
        "K8S_WILDCARD_TLS_SECRET": WILDCARD_TLS_SECRET if env.tls_mode == DNS01 else "",
    }


def _cluster_issuer_name(env: EnvironmentSnapshot) -> str:
    return DNS01_ISSUER if env.tls_mode == DNS01 else HTTP01_ISSUER


def _tls(env: EnvironmentSnapshot) -> tuple[str | None, dict, list | None]:
    """(tls.yaml or None, annotations for the main Ingress, its `tls` list or None)."""
    if env.tls_mode == domain.TLS_NONE:
        return None, {}, None
    issuer = _cluster_issuer_name(env)
    documents = [render_template("overlay/cluster-issuer.yaml.j2", {
        "name": issuer, "server": LETSENCRYPT_SERVER, "email": env.acme_email, "dns01": env.tls_mode == DNS01,
        "cloudflare_secret": env.cloudflare_api_token_secret, "ingress_class": env.ingress_class,
    })]
    if env.tls_mode == DNS01:
        documents.append(render_template("overlay/certificate.yaml.j2", {
            "name": WILDCARD_TLS_SECRET, "namespace": PLATFORM_NAMESPACE, "secret_name": WILDCARD_TLS_SECRET,
            "dns_names": [f"*.{env.app_domain}", env.app_domain], "issuer": issuer,
            "secret_annotations": REFLECTOR_ANNOTATIONS,
        }))
        annotations, tls = {}, [{"hosts": [env.app_domain], "secretName": WILDCARD_TLS_SECRET}]
    else:
        # ingress-shim issues the main Ingress's own certificate through HTTP-01.
        annotations, tls = {"cert-manager.io/cluster-issuer": issuer}, [
            {"hosts": [env.app_domain], "secretName": "tesslate-tls"}]
    return yaml_documents(*documents).decode(), annotations, tls


def _secrets(env: EnvironmentSnapshot, secrets: dict[str, list], versions: dict[str, str]) -> str | None:
    """secrets.yaml: External Secrets objects on EKS (always: the projects' credentials need the
    ClusterSecretStore), SealedSecrets elsewhere; never a value."""
    if not secrets and not env.uses_external_secrets:
        return None
    names = sorted(secrets)
    if not env.uses_external_secrets:
        return yaml_documents(*(render_template("overlay/sealed-secret.yaml.j2", {
            "name": name, "namespace": PLATFORM_NAMESPACE,
            "versions_annotation": SECRET_VERSIONS_ANNOTATION, "versions": versions[name],
            "encrypted_data": {s.key: s.sealed_value for s in secrets[name]},
        }) for name in names)).decode()
    role_arn = env.secrets_manager_role_arn or (
        f"arn:aws:iam::{env.aws_account_id}:role/tesslate-external-secrets-{env.name}")
    documents = [render_template("overlay/external-secrets-store.yaml.j2", {
        "namespace": PLATFORM_NAMESPACE, "service_account": EXTERNAL_SECRETS_SERVICE_ACCOUNT,
        "role_arn": role_arn, "store": SECRET_STORE_NAME, "region": env.aws_region,
        "projects_store": PROJECTS_SECRET_STORE_NAME,
    })]
    for name in names:
        documents.append(render_template("overlay/external-secret.yaml.j2", {
            "name": name, "namespace": PLATFORM_NAMESPACE, "store": SECRET_STORE_NAME, "store_kind": "SecretStore",
            "versions_annotation": SECRET_VERSIONS_ANNOTATION, "versions": versions[name],
            # The path the secrets service writes each key to in AWS Secrets Manager.
            "data": [{"secretKey": s.key, "remoteRef": {"key": f"tesslate/{env.name}/{name}/{s.key}"}}
                     for s in secrets[name]],
        }))
    return yaml_documents(*documents).decode()


def _datastores(env: EnvironmentSnapshot, versions: dict[str, str]) -> str:
    """datastores.yaml: StatefulSets and Services `postgres` and `redis` for an in-cluster datastore_mode."""

    def annotations(secret: str) -> dict:
        return {secret_checksum_annotation(secret): versions[secret]} if secret in versions else {}

    def probe(command: str, period: int, failures: int) -> dict:
        return {"exec": {"command": ["sh", "-c", command]}, "periodSeconds": period, "timeoutSeconds": 5,
                "failureThreshold": failures}

    pg_ready = 'pg_isready -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"'
    redis_ping = 'redis-cli -a "$REDIS_PASSWORD" --no-auth-warning ping | grep -q PONG'
    return render_template("overlay/datastores.yaml.j2", {
        "namespace": PLATFORM_NAMESPACE, "storage_class": env.storage_class_name,
        "postgres": {
            "image": POSTGRES_IMAGE, "secret": POSTGRES_SECRET, "size": POSTGRES_VOLUME_SIZE,
            "annotations": annotations(POSTGRES_SECRET),
            "readiness": probe(pg_ready, 5, 3), "liveness": probe(pg_ready, 10, 6),
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "250m", "memory": "512Mi"}},
        },
        "redis": {
            "image": REDIS_IMAGE, "secret": REDIS_SECRET, "size": REDIS_VOLUME_SIZE,
            "annotations": annotations(REDIS_SECRET),
            "command": ["redis-server", "--appendonly", "yes", "--requirepass", "$(REDIS_PASSWORD)"],
            "readiness": probe(redis_ping, 5, 3), "liveness": probe(redis_ping, 10, 6),
            "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        },
    })


def _workload_patches(env: EnvironmentSnapshot, config: dict[str, str], secret_names: list[str],
                      versions: dict[str, str]) -> dict[str, str]:
    """patches/<name>.yaml for the ConfigMap, the Deployments and the CronJobs (strategic merge)."""
    pull_policy = platform_pull_policy(env.kind, env.image_registry)
    env_from = [{"configMapRef": {"name": "tesslate-config"}}]
    env_from += [{"secretRef": {"name": name}} for name in secret_names]
    # A changed ConfigMap or Secret version changes the pod template, so the Deployment rolls.
    config_checksum = hashlib.sha256(json.dumps({**BASE_CONFIG, **config}, sort_keys=True).encode()).hexdigest()
    pod_annotations = {CONFIG_CHECKSUM_ANNOTATION: config_checksum}
    pod_annotations.update({secret_checksum_annotation(name): versions[name] for name in secret_names})
    pod_annotations = dict(sorted(pod_annotations.items()))
    backend_resources = {
        "limits": {"cpu": env.backend_cpu_limit, "memory": env.backend_memory_limit},
        "requests": {"cpu": env.backend_cpu_request, "memory": env.backend_memory_request},
    }
    patches = {"configmap": render_template("overlay/configmap-patch.yaml.j2", {
        "namespace": PLATFORM_NAMESPACE, "config": config})}
    for name, container, replicas, resources, env_from_, annotations in (
            ("tesslate-backend", "backend", env.backend_replicas, backend_resources, env_from, pod_annotations),
            ("tesslate-frontend", "frontend", None, None, None, None),
            ("tesslate-worker", "worker", None, None, env_from, pod_annotations)):
        patches[name] = render_template("overlay/deployment-patch.yaml.j2", {
            "name": name, "namespace": PLATFORM_NAMESPACE, "container": container, "replicas": replicas,
            "resources": resources, "env_from": env_from_, "annotations": annotations, "pull_policy": pull_policy,
            "readiness_path": env.backend_readiness_path if name == "tesslate-backend" else None,
        })
    for name, container, suspend in (
            ("namespace-reaper", "reaper", None),
            # Minikube has no VolumeSnapshots, so there is nothing to clean up.
            ("snapshot-cleanup", "cleanup", env.kind == domain.KIND_MINIKUBE or None)):
        patches[name] = render_template("overlay/cronjob-patch.yaml.j2", {
            "name": name, "namespace": PLATFORM_NAMESPACE, "container": container, "suspend": suspend,
            "env_from": env_from, "pull_policy": pull_policy,
        })
    return patches


def render_platform_overlay(env: EnvironmentSnapshot) -> dict[str, bytes]:
    prefix = f"environments/{env.name}/platform/"
    config = environment_config(env)
    secrets = delivered_secrets(env)
    versions = {name: secret_versions_hash(keys) for name, keys in secrets.items()}

    files: dict[str, str] = {}
    resources = ["../../../platform/base", "storage-class.yaml"]
    files["storage-class.yaml"] = render_template("overlay/storage-class.yaml.j2", {
        "name": env.storage_class_name,
        "ebs": env.storage_provisioner == domain.STORAGE_EBS_GP3,
        "encrypted": "true" if env.storage_encrypted else "false",
    })
    if env.supports_snapshots:
        resources.append("volume-snapshot-class.yaml")
        files["volume-snapshot-class.yaml"] = render_template("overlay/volume-snapshot-class.yaml.j2", {
            "name": env.volume_snapshot_class, "driver": EBS_DRIVER})
    resources.append("network-policies.yaml")
    files["network-policies.yaml"] = render_template("overlay/network-policies.yaml.j2", {
        "namespace": PLATFORM_NAMESPACE, "ingress_namespace": env.ingress_controller_namespace,
        "dns_peer": CLUSTER_DNS_PEER, "dns_ports": DNS_PORTS, "internet_peer": INTERNET_PEER,
        "internet_ports": [{"protocol": "TCP", "port": port} for port in PLATFORM_EGRESS_PORTS],
    })
    tls_file, ingress_annotations, ingress_tls = _tls(env)
    if tls_file:
        resources.append("tls.yaml")
        files["tls.yaml"] = tls_file
    secrets_file = _secrets(env, secrets, versions)
    if secrets_file:
        resources.append("secrets.yaml")
        files["secrets.yaml"] = secrets_file
    if env.datastore_mode == domain.DATASTORE_IN_CLUSTER:
        resources.append("datastores.yaml")
        files["datastores.yaml"] = _datastores(env, versions)

    patches = []
    # The datastores' own credentials stay with the datastores; the platform reads DATABASE_URL and REDIS_URL.
    workload_secrets = [name for name in sorted(secrets) if name not in DATASTORE_SECRETS]
    for name, text in _workload_patches(env, config, workload_secrets, versions).items():
        files[f"patches/{name}.yaml"] = text
        patches.append({"path": f"patches/{name}.yaml"})
    # The main Ingress: a JSON patch, because its rules list has no merge key to patch the host into.
    operations = [
        {"op": "replace", "path": "/spec/ingressClassName", "value": env.ingress_class},
        {"op": "add", "path": "/spec/rules/0/host", "value": env.app_domain},
    ]
    if env.backend_replicas > 1:
        ingress_annotations = {**ingress_annotations, **BACKEND_AFFINITY_ANNOTATIONS}
    for key, value in sorted(ingress_annotations.items()):
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
        "images": image_overrides(env, IMAGE_NAMES),
        "patches": patches,
    })
    return {prefix + name: text.encode() for name, text in sorted(files.items())}
