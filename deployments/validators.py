"""Validators for the names and sizes Kubernetes, AWS and Tesslate Studio accept.

Each validator raises ``ValidationError`` with a message a platform engineer can act on. Every pattern is matched
against the *whole* value (``re.fullmatch``: a ``$`` anchor would also match before a trailing newline, so
``"alice\\n"`` would pass) and uses ASCII-only classes (``[0-9]``, never ``\\d`` or ``str.isdigit``, which accept
Unicode digits such as ``"١"``). The grammars are Kubernetes' own (``k8s.io/apimachinery/pkg/util/validation``,
``resource.Quantity``), the distribution reference grammar for images, and AWS's documented formats.
"""

import re
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError

from deployments import domain

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
# k8s IsDNS1123Label: at most 63 characters.
DNS1123_LABEL_RE = re.compile(_LABEL, re.ASCII)
# k8s IsDNS1123Subdomain: at most 253 characters (no per-label limit in Kubernetes' own check).
DNS1123_SUBDOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)
# k8s IsDNS1035Label (Service names): starts with a letter; at most 63 characters.
DNS1035_LABEL_RE = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?", re.ASCII)
# k8s qualified name (label key name part, at most 63) and label value (at most 63, may be empty).
LABEL_NAME_RE = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?", re.ASCII)
LABEL_VALUE_RE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?", re.ASCII)
# A subset of resource.Quantity: unsigned, no exponent, binary SI or decimal SI (m, k, M, G, T, P, E) suffixes.
QUANTITY_RE = domain.QUANTITY_RE
EC2_INSTANCE_TYPE_RE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9]+", re.ASCII)
EBS_SNAPSHOT_ID_RE = re.compile(r"snap-[0-9a-f]{8}(?:[0-9a-f]{9})?", re.ASCII)
# k8s IsConfigMapKey (Secret data keys too).
SECRET_KEY_RE = re.compile(r"[-._a-zA-Z0-9]+", re.ASCII)
AWS_ACCOUNT_ID_RE = re.compile(r"[0-9]{12}", re.ASCII)
# AWS partitions' region names: us-east-1, eu-central-2, us-gov-west-1, cn-north-1, us-iso-east-1, …
AWS_REGION_RE = re.compile(r"[a-z]{2}(?:-gov|-iso|-isob|-isoe|-isof)?-[a-z]+-[0-9]{1,2}", re.ASCII)
# EKS CreateCluster `name`: 1–100 characters, ^[0-9A-Za-z][A-Za-z0-9\-_]*$.
EKS_CLUSTER_NAME_RE = re.compile(r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}", re.ASCII)
# The distribution reference grammar (github.com/distribution/reference), lowercase domains only.
IMAGE_DOMAIN_RE = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]+)?", re.ASCII)
IMAGE_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
IMAGE_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
IMAGE_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)
IMAGE_NAME_MAX = 255  # distribution's NameTotalLengthMax
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

_SUFFIX = domain.QUANTITY_SUFFIXES


def _show(value: str) -> str:
    """The value as the message shows it: repr() when it holds control or non-ASCII characters (a trailing
    newline must be visible), the plain text otherwise."""
    return value if value.isascii() and value.isprintable() else repr(value)


def validate_dns1123_label(value: str) -> None:
    """A DNS-1123 label (Kubernetes ``IsDNS1123Label``): at most 63 of ``[a-z0-9-]``, alphanumeric at both ends.
    Namespaces, most object names, the environment name and a project slug are labels."""
    if len(value) > 63:
        raise ValidationError(
            "%(value)s is %(length)s characters long; a DNS-1123 label has at most 63.",
            params={"value": _show(value), "length": len(value)}, code="dns1123_length",
        )
    if not DNS1123_LABEL_RE.fullmatch(value):
        raise ValidationError(
            "%(value)s is not a DNS-1123 label: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit.",
            params={"value": _show(value)}, code="dns1123_label",
        )


def validate_dns1035_label(value: str) -> None:
    """A DNS-1035 label (Kubernetes ``IsDNS1035Label``, required for Service names): like a DNS-1123 label but
    starting with a letter."""
    if len(value) > 63 or not DNS1035_LABEL_RE.fullmatch(value):
        raise ValidationError(
            "%(value)s is not a DNS-1035 label: at most 63 lowercase letters, digits and '-', starting with a "
            "letter and ending with a letter or digit.",
            params={"value": _show(value)}, code="dns1035_label",
        )


def validate_dns1123_subdomain(value: str) -> None:
    """A DNS-1123 subdomain (Kubernetes ``IsDNS1123Subdomain``): at most 253 characters, dot-separated labels."""
    if len(value) > 253 or not DNS1123_SUBDOMAIN_RE.fullmatch(value):
        raise ValidationError(
            "%(value)s is not a DNS-1123 subdomain: lowercase labels of letters, digits and '-', "
            "separated by dots, at most 253 characters.",
            params={"value": _show(value)}, code="dns1123_subdomain",
        )


def validate_domain_name(value: str) -> None:
    """A DNS name the portal can put projects under (``{slug}-{dir}.{domain}`` is an Ingress ``spec.rules[].host``,
    a DNS-1123 subdomain): labels of at most 63 characters, at most 253 in all, no trailing dot (Ingress hosts
    may not end with one), not an IP address. A single label such as ``localhost`` is accepted."""
    labels = value.split(".")
    if len(value) > 253 or not all(DNS1123_LABEL_RE.fullmatch(lbl) and len(lbl) <= 63 for lbl in labels):
        raise ValidationError(
            "%(value)s is not a valid domain name: lowercase labels of letters, digits and '-', separated by dots "
            "(no trailing dot), at most 253 characters.",
            params={"value": _show(value)}, code="domain",
        )
    if re.fullmatch(r"[0-9]+", labels[-1], re.ASCII):
        raise ValidationError("%(value)s looks like an IP address; use a DNS name.", params={"value": value},
                              code="domain_ip")


def parse_quantity(value: str) -> Decimal:
    """The amount of a Kubernetes quantity (``resource.Quantity``), in base units (cores, bytes).

    The portal accepts unsigned quantities without exponent: ``500m``, ``1``, ``0.5``, ``256Mi``, ``2Gi``, ``1k``.
    Raises ``ValidationError`` (code ``quantity``) for anything else."""
    match = QUANTITY_RE.fullmatch(value or "")
    if not match:
        raise ValidationError(
            "%(value)s is not a Kubernetes quantity (examples: 500m, 1, 256Mi, 2Gi).",
            params={"value": _show(value or "")}, code="quantity",
        )
    try:
        return Decimal(match["num"]) * _SUFFIX[match["suffix"] or ""]
    except InvalidOperation as exc:  # pragma: no cover - the regex already guarantees a number
        raise ValidationError("%(value)s is not a number.", params={"value": value}) from exc


def quantity_suffix(value: str) -> str:
    """The suffix of a quantity that ``parse_quantity`` accepts ("" for none)."""
    match = QUANTITY_RE.fullmatch(value or "")
    return (match["suffix"] or "") if match else ""


def validate_quantity(value: str) -> None:
    parse_quantity(value)


def validate_cpu_quantity(value: str) -> None:
    """A CPU amount (``resources.requests.cpu``): more than zero, in cores or millicores; Kubernetes keeps no
    precision below 1m, so ``0.0005`` would be rounded up by the API server."""
    amount = parse_quantity(value)
    if amount <= 0:
        raise ValidationError("CPU must be more than zero (for example 250m or 1).", code="cpu_zero")
    if quantity_suffix(value) not in ("", "m"):
        raise ValidationError(
            "%(value)s is not a CPU quantity: use cores (1, 0.5) or millicores (500m).",
            params={"value": value}, code="cpu_unit",
        )
    if (amount * 1000) != (amount * 1000).to_integral_value():
        raise ValidationError(
            "%(value)s is finer than a millicore; Kubernetes rounds it (use whole millicores such as 250m).",
            params={"value": value}, code="cpu_precision",
        )


def validate_memory_quantity(value: str) -> None:
    """A memory or storage amount in bytes: whole bytes, at least 1Mi, never milli-bytes."""
    amount = parse_quantity(value)
    if quantity_suffix(value) == "m":
        raise ValidationError(
            "%(value)s is in milli-bytes; use Mi or Gi for memory (for example 512Mi).",
            params={"value": value}, code="memory_unit",
        )
    if amount < 1024 * 1024:
        raise ValidationError("%(value)s is less than 1Mi of memory.", params={"value": value}, code="memory_small")
    if amount != amount.to_integral_value():
        raise ValidationError("%(value)s is not a whole number of bytes (for example 1536Mi, not 1.5001Gi).",
                              params={"value": value}, code="memory_fraction")


def validate_storage_quantity(value: str) -> None:
    """A volume size (PVC ``spec.resources.requests.storage``): at least 1Gi, the smallest EBS volume."""
    validate_memory_quantity(value)
    if parse_quantity(value) < Decimal(2) ** 30:
        raise ValidationError("%(value)s is smaller than 1Gi, the smallest EBS volume.", params={"value": value},
                              code="storage_small")


def validate_label_key(key: str) -> None:
    """A label or annotation key (Kubernetes ``IsQualifiedName``): an optional DNS-1123 subdomain prefix and '/',
    then a name of at most 63 characters (``[A-Za-z0-9][-A-Za-z0-9_.]*``, alphanumeric at both ends)."""
    parts = key.split("/")
    if len(parts) == 2:
        prefix, name = parts
        if not prefix:
            raise ValidationError("%(key)s is not a valid label key: the prefix before '/' is empty.",
                                  params={"key": _show(key)}, code="label_key")
        validate_dns1123_subdomain(prefix)
    elif len(parts) == 1:
        name = parts[0]
    else:
        name = ""
    if not name or len(name) > 63 or not LABEL_NAME_RE.fullmatch(name):
        raise ValidationError(
            "%(key)s is not a valid label key: an optional DNS prefix and '/', then at most 63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit.",
            params={"key": _show(key)}, code="label_key",
        )


def validate_label_value(value: str) -> None:
    """A label value (Kubernetes ``IsValidLabelValue``): empty, or at most 63 of ``[-A-Za-z0-9_.]``, alphanumeric
    at both ends."""
    if len(value) > 63 or not LABEL_VALUE_RE.fullmatch(value):
        raise ValidationError(
            "%(value)s is not a valid label value: at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit.",
            params={"value": _show(value)}, code="label_value",
        )


def parse_labels(text: str) -> dict[str, str]:
    """Parse `key=value` pairs, one per line or comma-separated."""
    labels: dict[str, str] = {}
    for raw in re.split(r"[\r\n,]", text or ""):
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
    for raw in re.split(r"[\r\n,]", text or ""):
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
    """EC2 instance types (``family.size``, such as ``t3.large`` or ``m7i-flex.xlarge``), comma- or space-separated."""
    types = [item for item in re.split(r"[ \t\r\n,]+", text or "") if item]
    if not types:
        raise ValidationError("Give at least one EC2 instance type (for example t3.large).", code="instance_types")
    for item in types:
        validate_instance_type(item)
    if len(set(types)) != len(types):
        raise ValidationError("An instance type is listed twice.", code="instance_type_duplicate")
    return types


def validate_instance_type(value: str) -> None:
    """One EC2 instance type: ``family.size`` in lowercase ASCII, such as ``t3.large`` or ``m7i-flex.xlarge``."""
    if not EC2_INSTANCE_TYPE_RE.fullmatch(value):
        raise ValidationError("%(item)s is not an EC2 instance type (for example t3.large).",
                              params={"item": _show(value)}, code="instance_type")


def validate_instance_types(text: str) -> None:
    parse_instance_types(text)


def validate_ebs_snapshot_id(value: str) -> None:
    """An EBS snapshot id: ``snap-`` and 8 or 17 lowercase hex digits."""
    if not EBS_SNAPSHOT_ID_RE.fullmatch(value):
        raise ValidationError("%(value)s is not an EBS snapshot id (snap- and 8 or 17 hex digits).",
                              params={"value": _show(value)}, code="snapshot_id")


def validate_secret_key_name(value: str) -> None:
    """A key inside a Kubernetes Secret's data (Kubernetes ``IsConfigMapKey``): at most 253 of ``[-._a-zA-Z0-9]``,
    not ``.``, ``..`` nor starting with ``..``."""
    if len(value) > 253 or not SECRET_KEY_RE.fullmatch(value) or value == "." or value.startswith(".."):
        raise ValidationError(
            "%(value)s is not a valid Secret key: letters, digits, '-', '_' and '.', at most 253 characters "
            "(not '.', nor starting with '..').",
            params={"value": _show(value)}, code="secret_key",
        )


def validate_aws_account_id(value: str) -> None:
    """An AWS account id: exactly 12 ASCII digits."""
    if not AWS_ACCOUNT_ID_RE.fullmatch(value):
        raise ValidationError("An AWS account id is 12 digits (0-9); %(value)s is not.",
                              params={"value": _show(value)}, code="aws_account_id")


def validate_aws_region(value: str) -> None:
    """An AWS region code such as ``us-east-1``, ``eu-central-2`` or ``us-gov-west-1``."""
    if not AWS_REGION_RE.fullmatch(value):
        raise ValidationError("%(value)s is not an AWS region (for example us-east-1).",
                              params={"value": _show(value)}, code="aws_region")


def validate_eks_cluster_name(value: str) -> None:
    """An EKS cluster name (CreateCluster ``name``): 1–100 letters, digits, '-' and '_', starting with a letter or
    digit."""
    if not EKS_CLUSTER_NAME_RE.fullmatch(value):
        raise ValidationError(
            "%(value)s is not an EKS cluster name: an EKS cluster name starts with a letter or digit and holds at "
            "most 100 letters, digits, '-' and '_'.",
            params={"value": _show(value)}, code="eks_cluster_name")


def image_name_valid(value: str) -> bool:
    """Whether ``value`` is an image name without tag or digest in the distribution reference grammar:
    ``[domain[:port]/]path-component(/path-component)*`` of at most 255 characters. A lone domain such as
    ``123456789012.dkr.ecr.us-east-1.amazonaws.com`` or ``localhost:5000`` (a registry prefix) is accepted too.
    Domains are lowercase here (the grammar would allow capitals, registries do not need them)."""
    if not value or len(value) > IMAGE_NAME_MAX:
        return False
    components = value.split("/")
    first = components[0]
    if ("." in first or ":" in first or first == "localhost") and IMAGE_DOMAIN_RE.fullmatch(first):
        components = components[1:]
    return all(IMAGE_PATH_COMPONENT_RE.fullmatch(component) for component in components)


def validate_image_reference(value: str) -> None:
    """An image repository without tag (registry/path), as Kustomize's `images.newName` takes."""
    if not image_name_valid(value):
        raise ValidationError("%(value)s is not an image registry or repository (lowercase, no tag).",
                              params={"value": _show(value)}, code="image_repository")


def validate_image_tag(value: str) -> None:
    """An image tag: ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`` (distribution reference grammar)."""
    if not IMAGE_TAG_RE.fullmatch(value):
        raise ValidationError("%(value)s is not an image tag (letters, digits, '_', '.', '-'; at most 128).",
                              params={"value": _show(value)}, code="image_tag")


def validate_image(value: str) -> None:
    """A full image reference with optional tag or digest, such as postgres:16-alpine."""
    name, at, digest = value.partition("@")
    if at and not IMAGE_DIGEST_RE.fullmatch(digest):
        raise ValidationError("%(value)s has an invalid digest.", params={"value": _show(value)}, code="image_digest")
    repo, colon, tag = name, "", ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, colon, tag = name.rpartition(":")
    validate_image_reference(repo)
    if colon:
        validate_image_tag(tag)


# --- Docker Compose servers (systemd timers, S3 backup targets) -------------------------------------------------

# systemd.time(7) calendar events: weekdays, dates, times, '*', ranges, lists, repetitions, or a shorthand.
SYSTEMD_CALENDAR_RE = re.compile(r"[A-Za-z0-9*:,./~ -]+", re.ASCII)
SYSTEMD_CALENDAR_SHORTHANDS = ("minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually",
                               "quarterly", "semiannually")
# Amazon S3 general purpose bucket naming rules (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules).
S3_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)
S3_PREFIX_RE = re.compile(r"[A-Za-z0-9!_.*'()/-]*", re.ASCII)


def validate_systemd_calendar(value: str) -> None:
    """An OnCalendar= expression of a systemd timer (systemd.time(7)), e.g. ``*-*-* 03:00:00`` or ``daily``.

    Only the characters and shapes systemd accepts are let through; the value is written into a unit file, so a
    newline or a quote must never reach it.
    """
    text = value.strip()
    if not text or len(text) > 64 or text != value or not SYSTEMD_CALENDAR_RE.fullmatch(text):
        raise ValidationError(
            "%(value)s is not a systemd calendar expression (systemd.time(7)): for example *-*-* 03:00:00, "
            "Mon..Fri 02:30 or daily.", params={"value": value}, code="systemd_calendar",
        )
    if text.isalpha() and text.lower() not in SYSTEMD_CALENDAR_SHORTHANDS and text not in _WEEKDAYS:
        raise ValidationError(
            "%(value)s is not a systemd calendar shorthand; use one of %(names)s or a full expression.",
            params={"value": value, "names": ", ".join(SYSTEMD_CALENDAR_SHORTHANDS)}, code="systemd_calendar",
        )


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Monday", "Tuesday", "Wednesday", "Thursday",
             "Friday", "Saturday", "Sunday")


def validate_s3_bucket_name(value: str) -> None:
    """Amazon S3 bucket naming rules: 3–63 characters, lowercase letters, digits, '.' and '-', no '..', not an
    IP address, no ``xn--`` prefix or ``-s3alias`` suffix."""
    if (not S3_BUCKET_RE.fullmatch(value) or ".." in value or re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", value)
            or value.startswith(("xn--", "sthree-")) or value.endswith(("-s3alias", "--ol-s3"))):
        raise ValidationError(
            "%(value)s is not an S3 bucket name: 3 to 63 lowercase letters, digits, '.' and '-', starting and "
            "ending with a letter or digit.", params={"value": value}, code="s3_bucket",
        )


def validate_s3_prefix(value: str) -> None:
    """A key prefix of S3's safe characters (letters, digits, ``!_.*'()/-``), without a leading '/' or '..'."""
    if len(value) > 200 or not S3_PREFIX_RE.fullmatch(value) or value.startswith("/") or ".." in value:
        raise ValidationError(
            "%(value)s is not a usable S3 key prefix: letters, digits and !_.*'()/- only, no leading '/' and "
            "no '..'.", params={"value": value}, code="s3_prefix",
        )

# Kubernetes accepts more in an EnvVar name (any printable ASCII but '=' since 1.30), but shells and dev servers
# read only C identifiers; refusing the rest catches typos such as `API URL=…`.
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
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
        if not ENV_NAME_RE.fullmatch(name):
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
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValidationError("A start command is one line without control characters.", code="command_line")


def validate_http_path(value: str) -> None:
    """An HTTP request path for a probe (Kubernetes HTTPGetAction.path): starts with '/', no spaces."""
    if not re.fullmatch(r"/[\x21-\x7e]*", value):
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
