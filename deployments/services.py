"""Every write of environments, node groups and secrets: the admin, the commands and the jobs call these.

Each service validates (``full_clean``), writes, and records which environments changed through
``changes.environments_changed``, which marks them dirty and (with GITOPS_AUTO_RENDER) requests one render —
in one place. Inside ``changes.change_batch`` (one admin request, one command) the requests of many writes
collapse into one run.
"""

import hmac
import secrets as _random
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from deployments import access, changes
from deployments.models import Environment, NodeGroup, Secret
from deployments.secrets import crypto, sealing

# Changing these removes or re-creates every folder of the environment in git (and, through Argo CD / Flux,
# every project's namespace and volume): only the explicit move flow (environment_move) may change them.
GUARDED_FIELDS = ("name", "gitops_tool")

SECRET_VALUE_MAX_BYTES = 64 * 1024
# What the admin edits, and what storing a value sets. The delivery fields (sealed_value, sealed_for,
# synced_version) are written only by sealing and the Secrets Manager sync, so a save from a form loaded
# earlier cannot put back a stale seal or sync record.
EDITABLE_FIELDS = ("environment", "secret_name", "key", "description", "updated_at")
VALUE_FIELDS = ("ciphertext", "fingerprint", "version", "last_rotated_at")


def _save(secret: Secret, value_fields: tuple[str, ...]) -> None:
    if secret._state.adding:
        secret.save()
    else:
        secret.save(update_fields=[*EDITABLE_FIELDS, *value_fields])


def secret_generate_value() -> crypto.SecretValue:
    """A strong random value: 48 bytes of entropy, URL-safe."""
    return crypto.SecretValue(_random.token_urlsafe(48))


@sensitive_variables()
def secret_value_validate(value: str) -> None:
    """Refuse values Kubernetes or the portal cannot carry. Messages never contain the value."""
    if not isinstance(value, str) or value == "":
        raise ValidationError("The value is empty.", code="secret_value_empty")
    if not value.strip():
        raise ValidationError("The value is only whitespace.", code="secret_value_blank")
    size = len(value.encode())
    if size > SECRET_VALUE_MAX_BYTES:
        raise ValidationError(
            "The value is %(size)s bytes, larger than %(max)s KiB, the most a Kubernetes Secret key should hold here.",
            params={"size": size, "max": SECRET_VALUE_MAX_BYTES // 1024}, code="secret_value_too_large",
        )


@sensitive_variables()
def _same_value(stored_ciphertext: str, stored_fingerprint: str, value: str, new_fingerprint: str) -> bool:
    if hmac.compare_digest(stored_fingerprint, new_fingerprint):
        return True
    # The fingerprint is keyed with SECRET_KEY; after that key changed the same value fingerprints differently.
    # Compare the values themselves then, so that re-entering a value never rolls the pods.
    try:
        old_value = crypto.decrypt(stored_ciphertext)
    except crypto.EncryptionKeyError:
        return False  # the old value is unreadable (lost key): storing a new one is how to recover
    return hmac.compare_digest(old_value.encode(), value.encode())


@sensitive_variables("value")
@transaction.atomic
def secret_store_value(*, secret: Secret, value: str) -> Secret:
    """Validate, encrypt and save a value, then seal it where the environment uses Sealed Secrets.

    Only the ciphertext and a fingerprint reach the database. A new value bumps ``version`` (which rolls the
    pods that read it); storing the same value again keeps the version. Other field changes on ``secret``
    (name, key, description) are saved too.
    """
    secret_value_validate(value)
    crypto.keys_check()  # fail on a missing or malformed key before anything is written
    new_fingerprint = crypto.fingerprint(value)
    current = None
    if secret.pk:
        # Lock the row so two saves of the same secret cannot both read version n and both write n + 1.
        current = (Secret.objects.select_for_update().filter(pk=secret.pk)
                   .values("ciphertext", "fingerprint", "version", "last_rotated_at").first())
    if current and current["ciphertext"] and _same_value(current["ciphertext"], current["fingerprint"], value,
                                                          new_fingerprint):
        secret.ciphertext = current["ciphertext"]
        secret.fingerprint = new_fingerprint
        secret.version = current["version"]
        secret.last_rotated_at = current["last_rotated_at"]
    else:
        secret.ciphertext = crypto.encrypt(value)
        secret.fingerprint = new_fingerprint
        secret.version = (current["version"] if current else secret.version or 0) + 1
        secret.last_rotated_at = timezone.now()
    secret.full_clean()
    _save(secret, VALUE_FIELDS)
    sealing.secret_reseal(secret=secret)
    return secret


@transaction.atomic
def secret_save(*, secret: Secret, user=None) -> Secret:
    """Save a secret's name, key or description, keeping its value; reseals it when its name changed.

    (A SealedSecret is bound to the Secret's name, so a renamed secret needs a new seal.)
    """
    previous = Secret.objects.filter(pk=secret.pk).values_list("environment_id", flat=True).first()
    access.require(user, "deployments.add_secret" if secret.pk is None else "deployments.change_secret",
                   {secret.environment_id, previous}, what=str(secret))
    access.act_as(secret, user)
    secret.full_clean()
    _save(secret, ())
    sealing.secret_reseal(secret=secret)
    changes.environments_changed({secret.environment_id, previous} - {None}, user=user,
                                 reason=_verb(previous is None, "secret", secret))
    return secret


@sensitive_variables("value")
def secret_set_value(*, secret: Secret, value: str, user=None) -> Secret:
    """Store a new value (and any name/key/description change) and request the render that ships it."""
    created = secret.pk is None
    previous = None if created else Secret.objects.filter(pk=secret.pk).values_list("environment_id", flat=True).first()
    access.require(user, "deployments.add_secret" if created else "deployments.change_secret",
                   {secret.environment_id, previous}, what=str(secret))
    access.act_as(secret, user)
    secret_store_value(secret=secret, value=value)
    changes.environments_changed({secret.environment_id, previous} - {None}, user=user,
                                 reason=_verb(created, "secret", secret))
    return secret


def secret_delete(*, secret: Secret, user=None) -> None:
    environment_id, label = secret.environment_id, str(secret)
    access.require(user, "deployments.delete_secret", {environment_id}, what=label)
    access.act_as(secret, user)
    secret.delete()
    changes.environments_changed({environment_id}, user=user, reason=f"Deleted secret {label}")


def _verb(created: bool, what: str, obj) -> str:
    return f"{'Added' if created else 'Changed'} {what} {obj}"


# --- environments -------------------------------------------------------------------------------------


def _guarded_changes(environment: Environment) -> dict[str, tuple[str, str]]:
    if environment.pk is None:
        return {}
    stored = Environment.objects.filter(pk=environment.pk).values(*GUARDED_FIELDS).first() or {}
    return {field: (stored[field], getattr(environment, field)) for field in GUARDED_FIELDS
            if field in stored and stored[field] != getattr(environment, field)}


@transaction.atomic
def environment_save(*, environment: Environment, user=None) -> Environment:
    """Create or change an environment (its own fields; inlines go through their own services).

    A change of ``name`` or ``gitops_tool`` is refused here: it would delete every folder of the environment in
    git and, through the GitOps tool's pruning, every project's namespace and volume. It goes through
    ``environment_move`` instead, which shows what moves and needs confirmation. A changed Sealed Secrets
    certificate reseals the values at once (so the preview shows the new ciphertext).
    """
    access.require(user, "deployments.add_environment" if environment.pk is None else "deployments.change_environment",
                   {environment.pk}, what=environment.name)
    access.act_as(environment, user)
    guarded = _guarded_changes(environment)
    if guarded:
        raise ValidationError({field: (
            f"Changing {field.replace('_', ' ')} from {old} to {new} would remove every folder of this environment "
            "from git, and Argo CD / Flux would then delete every project's namespace and volume. Use "
            "\"Move or rename environment\" on the environment's page, which shows what moves and asks you "
            "to confirm.") for field, (old, new) in guarded.items()})
    created = environment.pk is None
    # Seal (or age-encrypt) at once when what the values are encrypted for changed, so a preview already shows
    # the new ciphertext (a render would do it anyway).
    certificate_changed = not created and Environment.objects.filter(pk=environment.pk).exclude(
        sealed_secrets_certificate=environment.sealed_secrets_certificate, age_recipient=environment.age_recipient,
        kind=environment.kind).exists()
    environment.full_clean()
    environment.save()
    if certificate_changed:
        sealing.environment_secrets_reseal(environment=environment)
    changes.environments_changed({environment.pk}, user=user, reason=_verb(created, "environment", environment))
    return environment


@transaction.atomic
def environment_move(*, environment: Environment, user, name: str, gitops_tool: str, confirm: str) -> Environment:
    """Rename an environment and/or switch its GitOps tool: the one flow that may remove its folders.

    ``confirm`` must repeat the environment's current name (the admin's confirmation page shows what will be
    removed and added). One render of every environment follows, allowed to delete beyond the deletion budget,
    so the old ``environments/<old>`` and ``clusters/<old>`` folders go in the same commit that adds the new
    ones. Raises ValidationError for a wrong confirmation or an invalid name.
    """
    access.require(user, "deployments.change_environment", {environment.pk}, what=environment.name)
    access.act_as(environment, user)
    if confirm != environment.name:
        raise ValidationError({"confirm": f"Type the environment's current name ({environment.name}) to confirm."})
    old = f"{environment.name} ({environment.get_gitops_tool_display()})"
    environment.name, environment.gitops_tool = name, gitops_tool
    environment.full_clean()
    environment.save(update_fields=["name", "gitops_tool", "updated_at"])
    changes.environments_changed(None, user=user, reason=f"Moved environment {old} to {environment.name} "
                                 f"({environment.get_gitops_tool_display()})", allow_deletions=True)
    return environment


@transaction.atomic
def environment_delete(*, environment: Environment, user=None) -> None:
    """Delete an environment without projects (projects are protected: hibernate or delete them first).

    The render of every environment that follows prunes its folders (allowed beyond the deletion budget: the
    admin's delete confirmation listed what goes).
    """
    label = environment.name
    access.require(user, "deployments.delete_environment", {environment.pk}, what=label)
    access.act_as(environment, user)
    environment.delete()
    changes.environments_changed(None, user=user, reason=f"Deleted environment {label}", allow_deletions=True)


# --- node groups --------------------------------------------------------------------------------------


@transaction.atomic
def node_group_save(*, node_group: NodeGroup, user=None) -> NodeGroup:
    created = node_group.pk is None
    previous = None if created else NodeGroup.objects.filter(pk=node_group.pk).values_list(
        "environment_id", flat=True).first()
    access.require(user, "deployments.add_nodegroup" if created else "deployments.change_nodegroup",
                   {node_group.environment_id, previous}, what=str(node_group))
    access.act_as(node_group, user)
    node_group.full_clean()
    node_group.save()
    changes.environments_changed({node_group.environment_id, previous} - {None}, user=user,
                                 reason=_verb(created, "node group", node_group))
    return node_group


@transaction.atomic
def node_group_delete(*, node_group: NodeGroup, user=None) -> None:
    environment_id, label = node_group.environment_id, str(node_group)
    access.require(user, "deployments.delete_nodegroup", {environment_id}, what=label)
    access.act_as(node_group, user)
    node_group.delete()
    changes.environments_changed({environment_id}, user=user, reason=f"Deleted node group {label}")


@dataclass(frozen=True)
class ReencryptResult:
    total: int              # values rewritten under the newest key
    from_older_keys: int    # of those, how many were encrypted under an older key before
    keys: int               # keys configured (the newest encrypts, all decrypt)


# Other apps' models that hold values encrypted with PORTAL_ENCRYPTION_KEYS (projects: generated credentials)
# register here from their AppConfig.ready(): (model, select_related paths, label(row) for error messages).
_encrypted_stores: list[tuple[type, tuple[str, ...], object]] = [
    (Secret, ("environment",), lambda secret: f"{secret.environment.name}/{secret}"),
]


def encrypted_store_register(model, *, select_related: tuple[str, ...], label) -> None:
    """Make ``secret_reencrypt_all`` rotate ``model.ciphertext`` too (idempotent)."""
    if all(store[0] is not model for store in _encrypted_stores):
        _encrypted_stores.append((model, select_related, label))


@transaction.atomic
def secret_reencrypt_all() -> ReencryptResult:
    """Re-encrypt every stored value (every registered store: Secrets, generated credentials, …) under the newest
    key, all or nothing.

    Every value is checked first: if any cannot be opened with the configured keys, nothing is changed and
    EncryptionKeyError names the rows (never their values).
    """
    keys = crypto.keys_check()
    rewritten, older, unreadable, total = [], 0, [], 0
    for model, related, label in _encrypted_stores:
        rows = list(model.objects.select_for_update(of=("self",)).exclude(ciphertext="").select_related(*related)
                    .order_by("pk"))
        total += len(rows)
        for row in rows:
            try:
                if not crypto.is_under_newest_key(row.ciphertext):
                    older += 1
                rewritten.append((model, row.pk, crypto.reencrypt(row.ciphertext)))
            except crypto.EncryptionKeyError:
                unreadable.append(label(row))
    if unreadable:
        shown = ", ".join(unreadable[:20]) + (f" and {len(unreadable) - 20} more" if len(unreadable) > 20 else "")
        raise crypto.EncryptionKeyError(
            f"{len(unreadable)} of {total} stored values cannot be opened with PORTAL_ENCRYPTION_KEYS "
            f"(the key they were encrypted with is missing or wrong): {shown}. Nothing was changed."
        )
    for model, pk, ciphertext in rewritten:
        model.objects.filter(pk=pk).update(ciphertext=ciphertext)
    return ReencryptResult(total=len(rewritten), from_older_keys=older, keys=keys)
