"""AWS Secrets Manager for EKS environments: where the ExternalSecrets in git read their values from.

Each key of each Kubernetes Secret becomes one AWS secret ``tesslate/<environment>/<secret name>/<KEY>`` holding
the plain value (SecretString). A value is written only when its version changed since the last sync, and every
write carries a ClientRequestToken derived from (name, version, fingerprint): if a run dies after AWS accepted a
write but before the portal recorded it, the next run repeats the same request and AWS treats it as a no-op
instead of stacking a new version.

IAM the portal needs on ``arn:aws:secretsmanager:<region>:<account>:secret:tesslate/*``: secretsmanager:CreateSecret,
PutSecretValue, TagResource, RestoreSecret; and secretsmanager:ListSecrets (not resource-scoped).
"""

import uuid
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError
from django.views.decorators.debug import sensitive_variables

from clients.aws import aws_client
from deployments.models import Environment, Secret
from deployments.secrets import crypto

PATH_PREFIX = "tesslate"
ENVIRONMENT_TAG = "tesslate.io/environment"
MANAGED_BY_TAG = "app.kubernetes.io/managed-by"
MANAGED_BY = "tesslate-gitops-portal"
# Fixed namespace for the request tokens (uuid5 of the write's identity).
_TOKEN_NAMESPACE = uuid.UUID("8f0b6a52-3c1e-4d7b-9a55-2f4f1c6e9d01")


@dataclass(frozen=True)
class SyncResult:
    created: int    # AWS secrets created
    updated: int    # new values written to existing AWS secrets
    unchanged: int  # already at the current version


class SecretsManagerSyncError(Exception):
    """A write to AWS Secrets Manager failed. The message names the AWS secret, never the value."""


def secrets_manager_name(*, environment_name: str, secret_name: str, key: str) -> str:
    """The AWS secret that holds one key; the ExternalSecret's remoteRef.key points at the same name."""
    return f"{PATH_PREFIX}/{environment_name}/{secret_name}/{key}"


def _tags(environment: Environment) -> list[dict[str, str]]:
    return [{"Key": ENVIRONMENT_TAG, "Value": environment.name}, {"Key": MANAGED_BY_TAG, "Value": MANAGED_BY}]


def _request_token(name: str, secret: Secret) -> str:
    return str(uuid.uuid5(_TOKEN_NAMESPACE, f"{name}\n{secret.version}\n{secret.fingerprint}"))


def _error(action: str, name: str, exc: Exception) -> SecretsManagerSyncError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        detail = f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return SecretsManagerSyncError(f"AWS Secrets Manager: {action} {name} failed ({detail}).")


def existing_secrets(client, prefix: str) -> dict[str, dict]:
    """AWS secrets under ``prefix``: name -> {"tags": {key: value}, "deleted": scheduled for deletion}."""
    found: dict[str, dict] = {}
    try:
        paginator = client.get_paginator("list_secrets")
        pages = paginator.paginate(Filters=[{"Key": "name", "Values": [prefix]}], IncludePlannedDeletion=True)
        for page in pages:
            for entry in page.get("SecretList", []):
                # The name filter is a case-insensitive prefix match; keep only exact members of our folder.
                if entry["Name"].startswith(prefix):
                    found[entry["Name"]] = {
                        "tags": {tag["Key"]: tag["Value"] for tag in entry.get("Tags", [])},
                        "deleted": bool(entry.get("DeletedDate")),
                    }
    except (ClientError, BotoCoreError) as exc:
        raise _error("listing", f"{prefix}*", exc) from None
    return found


@sensitive_variables()  # hides the value in this frame and in the botocore frames below it (request bodies)
def write_secret(client, *, environment: Environment, secret, name: str, current: dict | None) -> str:
    """Write the current value of ``secret`` (a Secret, or any row with ciphertext, version, fingerprint,
    secret_name and key, such as a project's generated credential) to AWS secret ``name``; "created" or
    "updated". ``current`` is its entry from ``existing_secrets`` (None: not there yet)."""
    try:
        value = crypto.decrypt(secret.ciphertext)
    except crypto.EncryptionKeyError:
        raise crypto.SecretUnreadable(secret) from None
    token = _request_token(name, secret)
    try:
        if current is None:
            try:
                client.create_secret(
                    Name=name, SecretString=value, ClientRequestToken=token, Tags=_tags(environment),
                    Description=f"{secret.secret_name}/{secret.key} of Tesslate Studio environment "
                                f"{environment.name}. Written by the GitOps portal; change it there.",
                )
                return "created"
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceExistsException":
                    raise
                # Created by a concurrent run since we listed: write the version into it instead.
        elif current["deleted"]:
            # Someone scheduled it for deletion; the cluster still reads it, so bring it back.
            client.restore_secret(SecretId=name)
        client.put_secret_value(SecretId=name, SecretString=value, ClientRequestToken=token)
    except (ClientError, BotoCoreError) as exc:
        raise _error("writing", name, exc) from None
    _tag_if_needed(client, environment=environment, name=name, current=current)
    return "updated"


def _tag_if_needed(client, *, environment: Environment, name: str, current: dict | None) -> None:
    """Secrets created outside the portal (or by a race) get the portal's tags too."""
    wanted = _tags(environment)
    if current is not None and all(current["tags"].get(tag["Key"]) == tag["Value"] for tag in wanted):
        return
    try:
        client.tag_resource(SecretId=name, Tags=wanted)
    except (ClientError, BotoCoreError) as exc:
        raise _error("tagging", name, exc) from None


def environment_secrets_sync(*, environment: Environment) -> SyncResult:
    """Write every secret of an EKS environment to AWS Secrets Manager; idempotent.

    Creates missing AWS secrets, puts a new value only where ``Secret.synced_version`` differs from
    ``version`` (or the AWS secret is gone), and records ``synced_version`` after each successful write.
    Raises SecretsManagerSyncError (without the value) on the first failure; what was written before stays
    recorded, so the next run continues from there.
    """
    if not environment.uses_external_secrets:
        raise SecretsManagerSyncError(
            f"Environment {environment.name} is not an EKS environment: its secrets are delivered as "
            "SealedSecrets, not through AWS Secrets Manager."
        )
    client = aws_client("secretsmanager", region=environment.aws_region or None)
    try:
        existing = existing_secrets(client, f"{PATH_PREFIX}/{environment.name}/")
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        secrets = (Secret.objects.filter(environment_id=environment.pk).exclude(ciphertext="")
                   .order_by("secret_name", "key"))
        for secret in secrets:
            name = secrets_manager_name(environment_name=environment.name, secret_name=secret.secret_name,
                                        key=secret.key)
            current = existing.get(name)
            if current is not None and not current["deleted"] and secret.synced_version == secret.version:
                _tag_if_needed(client, environment=environment, name=name, current=current)
                counts["unchanged"] += 1
                continue
            counts[write_secret(client, environment=environment, secret=secret, name=name, current=current)] += 1
            # Only if no newer value was stored meanwhile; otherwise the next run writes that one.
            Secret.objects.filter(pk=secret.pk, version=secret.version).update(synced_version=secret.version)
    finally:
        client.close()
    return SyncResult(**counts)
