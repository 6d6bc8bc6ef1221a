"""AWS Secrets Manager sync for EKS environments, against a real moto_server (tests/aws.py)."""

import logging
import traceback

import pytest

from clients.aws import aws_client
from deployments.models import Secret
from deployments.secrets import secrets_manager
from deployments.secrets.secrets_manager import SecretsManagerSyncError, SyncResult, environment_secrets_sync
from deployments.services import secret_store_value
from tests.factories import eks_environment_factory, environment_factory, secret_factory

pytest_plugins = ["tests.aws"]
pytestmark = pytest.mark.django_db


@pytest.fixture
def production(aws):
    environment = eks_environment_factory(name="prod-eu", aws_region="eu-west-1")
    secrets = [
        secret_factory(environment, value="litellm-master-key-1", secret_name="tesslate-app-secrets",
                       key="LITELLM_MASTER_KEY"),
        secret_factory(environment, value="postgresql://u:p@db/tesslate", secret_name="tesslate-app-secrets",
                       key="DATABASE_URL"),
        secret_factory(environment, value="pg-password-1", secret_name="postgres-secret", key="POSTGRES_PASSWORD"),
    ]
    return environment, secrets


def _client(region="eu-west-1"):
    return aws_client("secretsmanager", region=region)


def _path(environment, secret):
    return f"tesslate/{environment.name}/{secret.secret_name}/{secret.key}"


def _versions(client, name) -> list[dict]:
    return client.list_secret_version_ids(SecretId=name)["Versions"]


def test_aws_client_uses_boto3_variables(aws):
    client = aws_client("secretsmanager")
    assert client.meta.endpoint_url == aws
    assert client.meta.region_name == "us-east-1"
    assert aws_client("secretsmanager", region="eu-west-1").meta.region_name == "eu-west-1"


def test_first_sync_creates_one_tagged_aws_secret_per_key(production, caplog):
    environment, secrets = production
    caplog.set_level(logging.DEBUG)

    assert environment_secrets_sync(environment=environment) == SyncResult(created=3, updated=0, unchanged=0)

    client = _client()
    values = {"LITELLM_MASTER_KEY": "litellm-master-key-1", "DATABASE_URL": "postgresql://u:p@db/tesslate",
              "POSTGRES_PASSWORD": "pg-password-1"}
    for secret in secrets:
        name = _path(environment, secret)
        assert client.get_secret_value(SecretId=name)["SecretString"] == values[secret.key]
        tags = {tag["Key"]: tag["Value"] for tag in client.describe_secret(SecretId=name)["Tags"]}
        assert tags["tesslate.io/environment"] == "prod-eu"
        assert tags["app.kubernetes.io/managed-by"] == "tesslate-gitops-portal"
        secret.refresh_from_db()
        assert secret.synced_version == secret.version == 1
    # The secrets live in the environment's region, not the default one.
    assert _client("us-east-1").list_secrets()["SecretList"] == []
    # botocore logs request bodies at DEBUG; none of the values may reach the log.
    for value in values.values():
        assert value not in caplog.text


def test_second_sync_changes_nothing_in_aws(production):
    environment, secrets = production
    environment_secrets_sync(environment=environment)
    client = _client()
    before = {secret.key: _versions(client, _path(environment, secret)) for secret in secrets}
    assert all(len(versions) == 1 for versions in before.values())

    assert environment_secrets_sync(environment=environment) == SyncResult(created=0, updated=0, unchanged=3)

    after = {secret.key: _versions(client, _path(environment, secret)) for secret in secrets}
    assert [[v["VersionId"] for v in after[k]] for k in sorted(after)] == \
        [[v["VersionId"] for v in before[k]] for k in sorted(before)]


def test_rotation_puts_a_new_current_version(production):
    environment, secrets = production
    environment_secrets_sync(environment=environment)
    rotated = secrets[0]
    secret_store_value(secret=rotated, value="litellm-master-key-2")
    assert rotated.version == 2

    assert environment_secrets_sync(environment=environment) == SyncResult(created=0, updated=1, unchanged=2)

    client = _client()
    name = _path(environment, rotated)
    assert client.get_secret_value(SecretId=name)["SecretString"] == "litellm-master-key-2"
    versions = _versions(client, name)
    assert len(versions) == 2
    assert sum("AWSCURRENT" in v["VersionStages"] for v in versions) == 1
    rotated.refresh_from_db()
    assert rotated.synced_version == 2
    # Storing the same value again is no rotation: no new version in the database, none in AWS.
    secret_store_value(secret=rotated, value="litellm-master-key-2")
    assert environment_secrets_sync(environment=environment) == SyncResult(created=0, updated=0, unchanged=3)
    assert len(_versions(client, name)) == 2


def test_a_repeated_write_after_a_lost_record_adds_no_version(production):
    """A run that died after AWS took the value but before synced_version was saved: the retry is a no-op."""
    environment, secrets = production
    environment_secrets_sync(environment=environment)
    secret_store_value(secret=secrets[1], value="postgresql://u:p2@db/tesslate")
    environment_secrets_sync(environment=environment)
    Secret.objects.filter(pk=secrets[1].pk).update(synced_version=1)  # as if the record was lost

    assert environment_secrets_sync(environment=environment).updated == 1
    assert len(_versions(_client(), _path(environment, secrets[1]))) == 2


def test_aws_secrets_removed_outside_the_portal_come_back(production):
    environment, secrets = production
    environment_secrets_sync(environment=environment)
    client = _client()
    client.delete_secret(SecretId=_path(environment, secrets[0]), ForceDeleteWithoutRecovery=True)
    client.delete_secret(SecretId=_path(environment, secrets[2]), RecoveryWindowInDays=7)

    result = environment_secrets_sync(environment=environment)

    assert (result.created, result.updated, result.unchanged) == (1, 1, 1)
    assert client.get_secret_value(SecretId=_path(environment, secrets[0]))["SecretString"] == "litellm-master-key-1"
    assert client.get_secret_value(SecretId=_path(environment, secrets[2]))["SecretString"] == "pg-password-1"
    assert "DeletedDate" not in client.describe_secret(SecretId=_path(environment, secrets[2]))


def test_a_renamed_secret_is_written_under_its_new_name(production):
    environment, secrets = production
    environment_secrets_sync(environment=environment)
    moved = secrets[2]
    moved.secret_name = "database-credentials"
    secret_store_value(secret=moved, value="pg-password-1")  # same value: same version
    assert moved.version == 1

    assert environment_secrets_sync(environment=environment).created == 1
    assert _client().get_secret_value(SecretId="tesslate/prod-eu/database-credentials/POSTGRES_PASSWORD")[
        "SecretString"] == "pg-password-1"


def test_an_aws_error_names_the_secret_and_never_the_value(production):
    environment, secrets = production
    target = secrets[0]
    name = _path(environment, target)
    # Someone else's version already uses the token the portal derives for this write, with another value:
    # AWS refuses the portal's put (ResourceExistsException).
    _client().create_secret(Name=name, SecretString="someone-elses-value",
                            ClientRequestToken=secrets_manager._request_token(name, target))

    with pytest.raises(SecretsManagerSyncError) as caught:
        environment_secrets_sync(environment=environment)

    message = str(caught.value)
    assert name in message and "ResourceExistsException" in message
    report = "".join(traceback.format_exception(caught.value))
    assert "litellm-master-key-1" not in report and "litellm-master-key-1" not in repr(caught.value)
    target.refresh_from_db()
    assert target.synced_version == 0  # not recorded as synced


def test_only_eks_environments_sync(aws):
    environment = environment_factory()
    secret_factory(environment, value="x-value")
    with pytest.raises(SecretsManagerSyncError, match="not an EKS environment"):
        environment_secrets_sync(environment=environment)
