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


# --- Docker Compose servers (systemd timers, S3 backup targets) -------------------------------------------------

# systemd.time(7) calendar events: weekdays, dates, times, '*', ranges, lists, repetitions, or a shorthand.
SYSTEMD_CALENDAR_RE = re.compile(r"^[A-Za-z0-9*:,./~ -]+$")
SYSTEMD_CALENDAR_SHORTHANDS = ("minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually",
                               "quarterly", "semiannually")
# Amazon S3 general purpose bucket naming rules (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules).
S3_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
S3_PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]*$")


def validate_systemd_calendar(value: str) -> None:
    """An OnCalendar= expression of a systemd timer (systemd.time(7)), e.g. ``*-*-* 03:00:00`` or ``daily``.

    Only the characters and shapes systemd accepts are let through; the value is written into a unit file, so a
    newline or a quote must never reach it.
    """
    text = value.strip()
    if not text or len(text) > 64 or text != value or not SYSTEMD_CALENDAR_RE.match(text):
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
    if (not S3_BUCKET_RE.match(value) or ".." in value or re.match(r"^\d+\.\d+\.\d+\.\d+$", value)
            or value.startswith(("xn--", "sthree-")) or value.endswith(("-s3alias", "--ol-s3"))):
        raise ValidationError(
            "%(value)s is not an S3 bucket name: 3 to 63 lowercase letters, digits, '.' and '-', starting and "
            "ending with a letter or digit.", params={"value": value}, code="s3_bucket",
        )


def validate_s3_prefix(value: str) -> None:
    """A key prefix of S3's safe characters (letters, digits, ``!_.*'()/-``), without a leading '/' or '..'."""
    if len(value) > 200 or not S3_PREFIX_RE.match(value) or value.startswith("/") or ".." in value:
        raise ValidationError(
            "%(value)s is not a usable S3 key prefix: letters, digits and !_.*'()/- only, no leading '/' and "
            "no '..'.", params={"value": value}, code="s3_prefix",
        )
