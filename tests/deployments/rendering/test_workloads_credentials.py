"""Service containers with generated credentials (projects/credentials.py): stored encrypted, delivered sealed for
the project's namespace (non-EKS) or through AWS Secrets Manager (EKS), injected into the project's dev containers,
and rotated with a pod roll — never in git in plaintext."""

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from clients.aws import aws_client
from deployments.rendering import render_tree, secret_checksum_annotation
from deployments.secrets import crypto
from deployments.secrets.delivery import environment_secrets_deliver
from deployments.selectors import environments_snapshot
from projects.credentials import container_credentials_ensure
from projects.models import Container, ServiceCredential
from tests.deployments.rendering.test_rendering import SOURCE_URL, build_all, container, find
from tests.deployments.secrets.test_sealing import _certificate, unseal
from tests.factories import container_factory, eks_environment_factory, environment_factory, project_factory

pytest_plugins = ["tests.aws"]
pytestmark = pytest.mark.django_db


def _values(db: Container) -> dict[str, str]:
    return {c.key: crypto.decrypt(c.ciphertext) for c in ServiceCredential.objects.filter(container=db)}


@pytest.fixture
def shop():
    project = project_factory(environment_factory(name="lab"), containers=("web",), slug="shop")
    db = container_factory(project, directory="db", role=Container.Role.DATABASE, image="postgres:16-alpine",
                           port=5432)
    cache = container_factory(project, directory="cache", role=Container.Role.SERVICE, image="redis:7-alpine",
                              port=6379)
    mongo = container_factory(project, directory="docs", role=Container.Role.SERVICE, image="mongo:7", port=27017)
    return project, db, cache, mongo


def test_credentials_are_generated_once_and_follow_the_service(shop):
    project, db, cache, mongo = shop
    assert container_credentials_ensure(container=db) == 2
    values = _values(db)
    password = values["POSTGRES_PASSWORD"]
    assert len(password) == 32 and values["DATABASE_URL"] == f"postgresql://app:{password}@svc-db:5432/app"
    assert container_credentials_ensure(container=db) == 0, "idempotent"
    assert set(ServiceCredential.objects.filter(container=db).values_list("version", flat=True)) == {1}

    db.port = 5433
    db.save()
    assert container_credentials_ensure(container=db) == 1  # the URL only: the password stays
    assert _values(db) == {"POSTGRES_PASSWORD": password,
                           "DATABASE_URL": f"postgresql://app:{password}@svc-db:5433/app"}

    assert container_credentials_ensure(container=db, rotate=True) == 2
    assert _values(db)["POSTGRES_PASSWORD"] != password
    assert set(ServiceCredential.objects.filter(container=db).values_list("version", flat=True)) == {2, 3}

    container_credentials_ensure(container=cache)
    redis = _values(cache)
    assert redis["REDIS_URL"] == f"redis://:{redis['REDIS_PASSWORD']}@svc-cache:6379/0"
    assert container_credentials_ensure(container=mongo) == 0 and not mongo.credentials.exists()
    cache.image = "memcached:1.6"
    cache.save()
    container_credentials_ensure(container=cache)
    assert not cache.credentials.exists(), "an image without generated credentials keeps none"


def test_sealed_delivery_injection_and_rotation(shop, settings, tmp_path):
    settings.GITOPS_SOURCE_URL = SOURCE_URL
    project, db, cache, _ = shop
    key, pem = _controller()
    environment = project.environment
    environment.sealed_secrets_certificate = pem
    environment.save()
    list(environment_secrets_deliver(environment=environment))  # what a render run does first
    stored = _values(db)

    tree = render_tree(environments_snapshot(environment_ids=[environment.id]))
    objects = build_all(tree, tmp_path)[f"environments/lab/projects/{project.namespace}"]
    sealed = find(objects, "SealedSecret", "svc-db-credentials")
    assert sorted(sealed["spec"]["encryptedData"]) == ["DATABASE_URL", "POSTGRES_PASSWORD"]
    # Strict scope: it opens only as svc-db-credentials in this project's namespace.
    opened = unseal(key, sealed["spec"]["encryptedData"]["POSTGRES_PASSWORD"], namespace=project.namespace,
                    name="svc-db-credentials")
    assert opened.decode() == stored["POSTGRES_PASSWORD"]
    for value in {**stored, **_values(cache)}.values():
        assert not [path for path, content in tree.items() if value.encode() in content], "plaintext in git"

    database = container(find(objects, "Deployment", "svc-db")["spec"]["template"]["spec"], "service")
    assert {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "svc-db-credentials", "key": "POSTGRES_PASSWORD"}}} in database["env"]
    assert {"name": "POSTGRES_USER", "value": "app"} in database["env"]
    web_pod = find(objects, "Deployment", "dev-web")["spec"]["template"]
    env = {entry["name"]: entry for entry in container(web_pod["spec"], "dev-server")["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "svc-db-credentials", "key": "DATABASE_URL"}
    assert env["PGHOST"]["value"] == "svc-db" and env["PGPORT"]["value"] == "5432"
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "POSTGRES_PASSWORD"
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "svc-cache-credentials", "key": "REDIS_URL"}
    assert "MONGO_URL" not in env and not [o for o in objects if o["metadata"]["name"] == "svc-docs-credentials"]

    # Rotation: a new password rolls the database and every pod that reads it; nothing else changes.
    annotation = secret_checksum_annotation("svc-db-credentials")
    before = web_pod["metadata"]["annotations"][annotation]
    container_credentials_ensure(container=db, rotate=True)
    list(environment_secrets_deliver(environment=environment))
    rotated = render_tree(environments_snapshot(environment_ids=[environment.id]))
    changed = sorted(path.rsplit("/", 1)[-1] for path in tree if tree[path] != rotated[path])
    assert changed == ["dev-web.yaml", "svc-db.yaml"]
    objects = build_all(rotated, tmp_path)[f"environments/lab/projects/{project.namespace}"]
    after = find(objects, "Deployment", "dev-web")["spec"]["template"]["metadata"]["annotations"][annotation]
    assert after != before
    assert find(objects, "Deployment", "svc-db")["spec"]["template"]["metadata"]["annotations"][annotation] == after


def test_eks_delivers_credentials_through_aws_secrets_manager(aws, settings, tmp_path):
    settings.GITOPS_SOURCE_URL = SOURCE_URL
    environment = eks_environment_factory(name="prod-eu", aws_region="eu-west-1")
    project = project_factory(environment, containers=("web",), slug="crm")
    db = container_factory(project, directory="db", role=Container.Role.DATABASE, image="postgres:16", port=5432)
    settings.SECRETS_MANAGER_SYNC = True
    list(environment_secrets_deliver(environment=environment))  # what a render does: generates, then writes
    stored = _values(db)
    client = aws_client("secretsmanager", region="eu-west-1")
    path = f"tesslate/prod-eu/projects/{project.id}/svc-db-credentials/POSTGRES_PASSWORD"
    assert client.get_secret_value(SecretId=path)["SecretString"] == stored["POSTGRES_PASSWORD"]
    assert set(ServiceCredential.objects.values_list("synced_version", flat=True)) == {1}

    built = build_all(render_tree(environments_snapshot(environment_ids=[environment.id])), tmp_path)
    external = find(built[f"environments/prod-eu/projects/{project.namespace}"], "ExternalSecret",
                    "svc-db-credentials")
    assert external["spec"]["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "tesslate-projects"}
    assert {d["secretKey"]: d["remoteRef"]["key"] for d in external["spec"]["data"]}["POSTGRES_PASSWORD"] == path
    store = find(built["environments/prod-eu/platform"], "ClusterSecretStore", "tesslate-projects")
    assert store["spec"]["conditions"] == [{"namespaceRegexes": ["^proj-"]}]
    assert store["spec"]["provider"]["aws"]["auth"]["jwt"]["serviceAccountRef"] == {
        "name": "tesslate-external-secrets", "namespace": "tesslate"}


def _controller():
    """A controller key pair: the private key (to unseal) and its certificate (to seal)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, _certificate(key)
