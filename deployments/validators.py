"""Validators for the names and sizes Kubernetes and Tesslate Studio accept.

Each validator raises ``ValidationError`` with a message a platform engineer can act on.
"""

import re
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError

DNS1123_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUANTITY_RE = re.compile(r"^(?P<num>[0-9]+(\.[0-9]+)?|\.[0-9]+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
EC2_INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
EBS_SNAPSHOT_ID_RE = re.compile(r"^snap-[0-9a-f]{8}([0-9a-f]{9})?$")
SECRET_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

_SUFFIX = {
    "": Decimal(1), "m": Decimal("0.001"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


def validate_dns1123_label(value: str) -> None:
    if len(value) > 63:
        raise ValidationError(
            "%(value)s is %(length)s characters long; a DNS-1123 label has at most 63.",
            params={"value": value, "length": len(value)}, code="dns1123_length",
        )
    if not DNS1123_LABEL_RE.match(value):
        raise ValidationError(
            "%(value)s is not a DNS-1123 label: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit.",
            params={"value": value}, code="dns1123_label",
        )


def validate_dns1123_subdomain(value: str) -> None:
    if len(value) > 253 or not DNS1123_SUBDOMAIN_RE.match(value):
        raise ValidationError(
            "%(value)s is not a DNS-1123 subdomain: lowercase labels of letters, digits and '-', "
            "separated by dots, at most 253 characters.",
            params={"value": value}, code="dns1123_subdomain",
        )


def validate_domain_name(value: str) -> None:
    """A DNS name the portal can put projects under: at least two labels, or `localhost`-style names."""
    if value.endswith("."):
        value = value[:-1]
    labels = value.split(".")
    if len(value) > 253 or not all(DNS1123_LABEL_RE.match(lbl) and len(lbl) <= 63 for lbl in labels):
        raise ValidationError(
            "%(value)s is not a valid domain name: lowercase labels of letters, digits and '-', separated by dots.",
            params={"value": value}, code="domain",
        )
    if labels[-1].isdigit():
        raise ValidationError("%(value)s looks like an IP address; use a DNS name.", params={"value": value},
                              code="domain_ip")


def parse_quantity(value: str) -> Decimal:
    match = QUANTITY_RE.match(value or "")
    if not match:
        raise ValidationError(
            "%(value)s is not a Kubernetes quantity (examples: 500m, 1, 256Mi, 2Gi).",
            params={"value": value}, code="quantity",
        )
    try:
        return Decimal(match["num"]) * _SUFFIX[match["suffix"] or ""]
    except InvalidOperation as exc:  # pragma: no cover - the regex already guarantees a number
        raise ValidationError("%(value)s is not a number.", params={"value": value}) from exc


def validate_quantity(value: str) -> None:
    parse_quantity(value)


def validate_cpu_quantity(value: str) -> None:
    if parse_quantity(value) <= 0:
        raise ValidationError("CPU must be more than zero (for example 250m or 1).", code="cpu_zero")
    if QUANTITY_RE.match(value)["suffix"] not in (None, "m"):
        raise ValidationError(
            "%(value)s is not a CPU quantity: use cores (1, 0.5) or millicores (500m).",
            params={"value": value}, code="cpu_unit",
        )


def validate_memory_quantity(value: str) -> None:
    amount = parse_quantity(value)
    if QUANTITY_RE.match(value)["suffix"] == "m":
        raise ValidationError(
            "%(value)s is in milli-bytes; use Mi or Gi for memory (for example 512Mi).",
            params={"value": value}, code="memory_unit",
        )
    if amount < 1024 * 1024:
        raise ValidationError("%(value)s is less than 1Mi of memory.", params={"value": value}, code="memory_small")


def validate_storage_quantity(value: str) -> None:
    validate_memory_quantity(value)
    if parse_quantity(value) < Decimal(2) ** 30:
        raise ValidationError("%(value)s is smaller than 1Gi, the smallest EBS volume.", params={"value": value},
                              code="storage_small")


def validate_label_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix:
        validate_dns1123_subdomain(prefix)
    if not name or len(name) > 63 or not LABEL_NAME_RE.match(name):
        raise ValidationError(
            "%(key)s is not a valid label key: an optional DNS prefix and '/', then at most 63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit.",
            params={"key": key}, code="label_key",
        )


def validate_label_value(value: str) -> None:
    if len(value) > 63 or not LABEL_VALUE_RE.match(value):
        raise ValidationError(
            "%(value)s is not a valid label value: at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit.",
            params={"value": value}, code="label_value",
        )


def parse_labels(text: str) -> dict[str, str]:
    """Parse `key=value` pairs, one per line or comma-separated."""
    labels: dict[str, str] = {}
    for raw in re.split(r"[\n,]", text or ""):
        item = raw.strip()
        if not item:
            continue
        if "=" not in item:
            raise ValidationError("%(item)s is not key=value.", params={"item": item}, code="label_format")
        key, value = (part.strip() for part in item.split("=", 1))
        validate_label_key(key)
        validate_label_value(value)
        if key in labels:
            raise ValidationError("Label %(key)s is given twice.", params={"key": key}, code="label_duplicate")
        labels[key] = value
    return labels


def parse_taints(text: str) -> list[dict[str, str]]:
    """Parse taints written `key=value:Effect` (value optional), one per line or comma-separated."""
    taints = []
    for raw in re.split(r"[\n,]", text or ""):
        item = raw.strip()
        if not item:
            continue
        body, sep, effect = item.rpartition(":")
        if not sep or effect not in TAINT_EFFECTS:
            raise ValidationError(
                "%(item)s is not a taint: write key=value:Effect with Effect one of %(effects)s.",
                params={"item": item, "effects": ", ".join(TAINT_EFFECTS)}, code="taint_format",
            )
        key, _, value = body.partition("=")
        validate_label_key(key)
        if value:
            validate_label_value(value)
        taints.append({"key": key, "value": value, "effect": effect})
    return taints


def validate_labels_text(text: str) -> None:
    parse_labels(text)


def validate_taints_text(text: str) -> None:
    parse_taints(text)


def parse_instance_types(text: str) -> list[str]:
    types = [item.strip() for item in re.split(r"[\s,]+", text or "") if item.strip()]
    if not types:
        raise ValidationError("Give at least one EC2 instance type (for example t3.large).", code="instance_types")
    for item in types:
        if not EC2_INSTANCE_TYPE_RE.match(item):
            raise ValidationError("%(item)s is not an EC2 instance type (for example t3.large).",
                                  params={"item": item}, code="instance_type")
    if len(set(types)) != len(types):
        raise ValidationError("An instance type is listed twice.", code="instance_type_duplicate")
    return types


def validate_instance_types(text: str) -> None:
    parse_instance_types(text)


def validate_ebs_snapshot_id(value: str) -> None:
    if not EBS_SNAPSHOT_ID_RE.match(value):
        raise ValidationError("%(value)s is not an EBS snapshot id (snap- and 8 or 17 hex digits).",
                              params={"value": value}, code="snapshot_id")


def validate_secret_key_name(value: str) -> None:
    """A key inside a Kubernetes Secret's data (a ConfigMap key)."""
    if len(value) > 253 or not SECRET_KEY_RE.match(value) or value in (".", ".."):
        raise ValidationError(
            "%(value)s is not a valid Secret key: letters, digits, '-', '_' and '.', at most 253 characters.",
            params={"value": value}, code="secret_key",
        )


def validate_image_reference(value: str) -> None:
    """An image repository without tag (registry/path), as Kustomize's `images.newName` takes."""
    if not re.match(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$", value):
        raise ValidationError("%(value)s is not an image registry or repository (lowercase, no tag).",
                              params={"value": value}, code="image_repository")


def validate_image_tag(value: str) -> None:
    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", value):
        raise ValidationError("%(value)s is not an image tag (letters, digits, '_', '.', '-'; at most 128).",
                              params={"value": value}, code="image_tag")


def validate_image(value: str) -> None:
    """A full image reference with optional tag or digest, such as postgres:16-alpine."""
    name, _, digest = value.partition("@")
    if digest and not re.match(r"^sha256:[0-9a-f]{64}$", digest):
        raise ValidationError("%(value)s has an invalid digest.", params={"value": value}, code="image_digest")
    repo, tag = name, ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = name.rsplit(":", 1)
    validate_image_reference(repo)
    if tag:
        validate_image_tag(tag)


# Kubernetes accepts more in an EnvVar name (any printable ASCII but '=' since 1.30), but shells and dev servers
# read only C identifiers; refusing the rest catches typos such as `API URL=…`.
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Plain environment values are written to git as they are: names that usually hold a credential are refused.
SENSITIVE_ENV_NAME_RE = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE_KEY|API_KEY|ACCESS_KEY|CREDENTIAL)",
                                   re.IGNORECASE)
ENV_VALUE_MAX = 4096


def parse_env_vars(text: str) -> list[tuple[str, str]]:
    """Parse container environment variables written ``NAME=value``, one per line, into ``[(name, value)]`` in
    the order given.

    Blank lines and lines starting with ``#`` are skipped; the value is everything after the first ``=`` with
    surrounding whitespace removed (quotes are kept as typed). Raises ``ValidationError`` for a line without
    ``=``, a name that is not a C identifier, a name given twice, a value longer than 4096 characters, or a name
    that usually holds a credential (these values would reach git in plaintext: use a secret instead).
    """
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ValidationError("%(line)s is not NAME=value.", params={"line": line[:80]}, code="env_format")
        name, value = (part.strip() for part in line.split("=", 1))
        if not ENV_NAME_RE.match(name):
            raise ValidationError(
                "%(name)s is not an environment variable name: letters, digits and '_', not starting with a digit.",
                params={"name": name[:80]}, code="env_name")
        if name in seen:
            raise ValidationError("%(name)s is given twice.", params={"name": name}, code="env_duplicate")
        if SENSITIVE_ENV_NAME_RE.search(name):
            raise ValidationError(
                "%(name)s looks like a credential; plain values are written to git. Keep credentials in secrets.",
                params={"name": name}, code="env_sensitive")
        if len(value) > ENV_VALUE_MAX:
            raise ValidationError("The value of %(name)s is longer than %(max)s characters.",
                                  params={"name": name, "max": ENV_VALUE_MAX}, code="env_value")
        seen.add(name)
        pairs.append((name, value))
    return pairs


def validate_env_vars_text(text: str) -> None:
    parse_env_vars(text)


def validate_command_line(value: str) -> None:
    """One shell command line (no line breaks or control characters), as a container's start command."""
    if any(ord(char) < 32 for char in value):
        raise ValidationError("A start command is one line without control characters.", code="command_line")


def validate_http_path(value: str) -> None:
    """An HTTP request path for a probe (Kubernetes HTTPGetAction.path): starts with '/', no spaces."""
    if not re.match(r"^/[\x21-\x7e]*$", value):
        raise ValidationError("%(value)s is not an HTTP path: it starts with '/' and has no spaces.",
                              params={"value": value[:80]}, code="http_path")


# Cluster add-ons the portal can install from git (Environment.disabled_addons turns each one off).
ADDON_NAMES = ("cert-manager", "ingress-nginx", "external-secrets", "sealed-secrets", "snapshot-controller",
               "aws-ebs-csi-driver", "reflector")


def parse_addon_names(text: str) -> list[str]:
    """Add-on names separated by commas, spaces or lines, as a sorted list without duplicates.

    Raises ``ValidationError`` naming an unknown add-on (the known ones are ``ADDON_NAMES``).
    """
    names = sorted({item for item in re.split(r"[\s,]+", text or "") if item})
    unknown = [name for name in names if name not in ADDON_NAMES]
    if unknown:
        raise ValidationError("Unknown add-on %(names)s; known add-ons: %(known)s.",
                              params={"names": ", ".join(unknown), "known": ", ".join(ADDON_NAMES)}, code="addon")
    return names


def validate_addon_names(text: str) -> None:
    parse_addon_names(text)
