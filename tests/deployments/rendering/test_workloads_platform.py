"""Platform datastores and backend (DOMAIN.md "Platform"): in-cluster PostgreSQL and Redis or external URLs, the
backend's readiness path and preStop drain, and the main Ingress settings Studio needs with several backends."""

import pytest

from deployments.models import Environment
from deployments.rendering import render_tree, secret_checksum_annotation
from deployments.rendering.common import delivered_secrets, secret_versions_hash
from deployments.selectors import environments_snapshot
from projects.demo import demo_load
from tests.deployments.rendering.test_rendering import SOURCE_URL, build_all, container, find, kinds
from tests.factories import assert_field_error, environment_factory, secret_factory

pytestmark = pytest.mark.django_db


@pytest.fixture
def built(settings, tmp_path):
    settings.GITOPS_SOURCE_URL = SOURCE_URL
    demo_load()
    return build_all(render_tree(environments_snapshot()), tmp_path)


def test_in_cluster_datastores_run_as_statefulsets_with_credentials_from_secrets(built):
    objects = built["environments/minikube/platform"]
    postgres = find(objects, "StatefulSet", "postgres", "tesslate")
    redis = find(objects, "StatefulSet", "redis", "tesslate")
    for service, port in (("postgres", 5432), ("redis", 6379)):
        spec = find(objects, "Service", service, "tesslate")["spec"]
        assert spec["ports"][0]["port"] == port
        assert spec["selector"].items() <= find(objects, "StatefulSet", service)["spec"]["template"]["metadata"][
            "labels"].items()

    pod = postgres["spec"]["template"]
    db = container(pod["spec"], "postgres")
    assert db["envFrom"] == [{"secretRef": {"name": "postgres-secret"}}]
    assert {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"} in db["env"]
    assert "pg_isready" in db["readinessProbe"]["exec"]["command"][-1] and "livenessProbe" in db
    (claim,) = postgres["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "tesslate-block-storage"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert db["volumeMounts"] == [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]

    cache = container(redis["spec"]["template"]["spec"], "redis")
    assert cache["command"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    assert cache["env"] == [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "redis-secret", "key": "REDIS_PASSWORD"}}}]
    assert "ping" in cache["readinessProbe"]["exec"]["command"][-1]

    # A rotated password rolls the datastore: the pod template carries the versions of its Secret.
    minikube = next(env for env in environments_snapshot().environments if env.name == "minikube")
    versions = secret_versions_hash(delivered_secrets(minikube)["postgres-secret"])
    assert pod["metadata"]["annotations"][secret_checksum_annotation("postgres-secret")] == versions

    # The platform reads DATABASE_URL / REDIS_URL from tesslate-app-secrets, not the datastores' own Secrets.
    backend = container(find(objects, "Deployment", "tesslate-backend")["spec"]["template"]["spec"], "backend")
    assert {"secretRef": {"name": "postgres-secret"}} not in backend["envFrom"]
    assert {"secretRef": {"name": "tesslate-app-secrets"}} in backend["envFrom"]


def test_external_datastores_render_no_statefulset(built):
    objects = built["environments/aws-production/platform"]
    assert not [o for o in objects if o["kind"] == "StatefulSet"]
    assert ("Service", "postgres") not in kinds(objects)
    secret = find(objects, "ExternalSecret", "tesslate-app-secrets")
    keys = {item["secretKey"] for item in secret["spec"]["data"]}
    assert {"DATABASE_URL", "REDIS_URL"} <= keys


def test_backend_readiness_path_and_drain(built):
    for env, path in (("minikube", "/health"), ("aws-production", "/ready")):
        pod = find(built[f"environments/{env}/platform"], "Deployment", "tesslate-backend")["spec"]["template"]
        backend = container(pod["spec"], "backend")
        assert backend["readinessProbe"]["httpGet"] == {"path": path, "port": 8000}, env
        assert backend["livenessProbe"]["httpGet"]["path"] == "/health"
        assert backend["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "10"]}}
        assert pod["spec"]["terminationGracePeriodSeconds"] > 10


def test_main_ingress_is_sticky_with_several_backends(built):
    annotations = find(built["environments/aws-production/platform"], "Ingress", "tesslate-ingress")["metadata"][
        "annotations"]
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert annotations["nginx.ingress.kubernetes.io/session-cookie-name"] == "TESS_AFFINITY"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "100m"
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    single = find(built["environments/minikube/platform"], "Ingress", "tesslate-ingress")["metadata"]["annotations"]
    assert "nginx.ingress.kubernetes.io/affinity" not in single, "one backend replica needs no affinity"
    assert single["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


def test_switching_to_external_removes_the_datastores(settings, tmp_path):
    settings.GITOPS_SOURCE_URL = SOURCE_URL
    environment = environment_factory(name="lab", datastore_mode=Environment.DatastoreMode.EXTERNAL,
                                      backend_replicas=3)
    secret_factory(environment, key="DATABASE_URL", secret_name="tesslate-app-secrets")
    tree = render_tree(environments_snapshot(environment_ids=[environment.id]))
    assert "environments/lab/platform/datastores.yaml" not in tree
    objects = build_all(tree, tmp_path)["environments/lab/platform"]
    assert find(objects, "Deployment", "tesslate-backend")["spec"]["replicas"] == 3
    assert find(objects, "Ingress", "tesslate-ingress")["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/affinity"] == "cookie"


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("backend_readiness_path", "ready", "is not an HTTP path"),
    ("datastore_mode", "sqlite", "is not a valid choice"),
    ("ingress_controller_namespace", "Ingress_Nginx", "DNS"),
])
def test_bad_platform_settings_are_refused_on_the_field(field, value, fragment):
    assert_field_error(Environment(name="lab", app_domain="lab.example.com", **{field: value}), field, fragment)
