"""Canonical forms of the values Kubernetes and its controllers normalise, so a synced object never differs from git.

A field written in another form than the one the cluster keeps makes Argo CD report a difference after every sync
(and Flux's drift detection re-apply it):

- **Quantities** (``resource.Quantity``: ``resources.requests/limits``, PVC ``spec.resources.requests.storage``,
  ``emptyDir.sizeLimit``): the API server stores the canonical form of built-in objects. ``1000m`` is kept as
  ``1``, ``0.5`` as ``500m``, ``1024Mi`` as ``1Gi``, ``1.5Gi`` as ``1536Mi``, ``2000`` as ``2k``.
- **Durations** (Go ``time.Duration`` / ``metav1.Duration``: Flux ``spec.interval``, ``spec.timeout``,
  ``spec.retryInterval``; External Secrets ``spec.refreshInterval``; cert-manager ``spec.duration``,
  ``spec.renewBefore``): whatever goes through the controllers' typed structs comes out as Go's
  ``Duration.String()`` (``flux export`` writes ``10m0s``; a conversion webhook round-trip stores it that way), so
  ``1h`` is written ``1h0m0s``, ``90s`` ``1m30s``, ``0.5s`` ``500ms``.

``canonical_quantity`` and ``canonical_duration`` are pure; ``non_canonical_values`` lists the values of one object
that are not in canonical form (path, written value, canonical value).
"""

from decimal import ROUND_CEILING, Decimal, InvalidOperation

_BINARY = (("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10))
_DECIMAL = (("E", 18), ("P", 15), ("T", 12), ("G", 9), ("M", 6), ("k", 3), ("", 0), ("m", -3), ("u", -6),
            ("n", -9))
_DECIMAL_SUFFIXES = {suffix: exponent for suffix, exponent in _DECIMAL}
_BINARY_SUFFIXES = {suffix: bits for suffix, bits in _BINARY}
_NANO = Decimal("1e-9")

# Go's time units, in nanoseconds.
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}

# Duration fields of the custom resources the portal writes, by (API group, kind).
DURATION_FIELDS: dict[tuple[str, str], tuple[tuple[str, ...], ...]] = {
    ("kustomize.toolkit.fluxcd.io", "Kustomization"): (("spec", "interval"), ("spec", "retryInterval"),
                                                       ("spec", "timeout")),
    ("source.toolkit.fluxcd.io", "GitRepository"): (("spec", "interval"), ("spec", "timeout")),
    ("helm.toolkit.fluxcd.io", "HelmRelease"): (("spec", "interval"), ("spec", "timeout")),
    ("external-secrets.io", "ExternalSecret"): (("spec", "refreshInterval"),),
    ("cert-manager.io", "Certificate"): (("spec", "duration"), ("spec", "renewBefore")),
}


class NotCanonicalizable(ValueError):
    """The text is not a quantity / duration in the grammar."""


def _parse_quantity(text: str) -> tuple[Decimal, str]:
    """(amount in base units, format: "binary", "decimal" or "exponent")."""
    if not isinstance(text, str) or not text or not text.isascii():
        raise NotCanonicalizable(f"{text!r} is not a quantity")
    number, form, factor = text, "decimal", Decimal(1)
    for suffix, bits in _BINARY:
        if text.endswith(suffix):
            number, form, factor = text[: -len(suffix)], "binary", Decimal(2) ** bits
            break
    else:
        exponent_at = max(text.rfind("e"), text.rfind("E"))
        if exponent_at > 0 and text[exponent_at + 1:].lstrip("+-").isdigit():
            number, form, factor = text[:exponent_at], "exponent", Decimal(10) ** int(text[exponent_at + 1:])
        elif text[-1] in _DECIMAL_SUFFIXES and text[-1] != "":
            number, factor = text[:-1], Decimal(10) ** _DECIMAL_SUFFIXES[text[-1]]
    if not number or any(char not in "0123456789.+-" for char in number):
        raise NotCanonicalizable(f"{text!r} is not a quantity")
    try:
        amount = Decimal(number) * factor
    except InvalidOperation:
        raise NotCanonicalizable(f"{text!r} is not a quantity") from None
    return amount, form


def _integral(value: Decimal) -> bool:
    return value == value.to_integral_value()


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def canonical_quantity(text: str) -> str:
    """The form the API server stores a quantity in (``resource.Quantity.String()``).

    Amounts are rounded up to nano units. Binary-SI input (Ki…Ei) that is a whole number of at least 1024 keeps the
    largest binary suffix that leaves an integer (``1536Mi``, ``1Gi``); anything else is written in decimal SI with
    the largest suffix (n, u, m, "", k, M, G, T, P, E) that leaves an integer (``500m``, ``1``, ``2k``), or with an
    exponent that is a multiple of 3 when it was written with one (``1e3``). Raises ``NotCanonicalizable``."""
    amount, form = _parse_quantity(text)
    amount = (amount / _NANO).to_integral_value(rounding=ROUND_CEILING) * _NANO
    if amount == 0:
        return "0"
    sign = "-" if amount < 0 else ""
    magnitude = abs(amount)
    if form == "binary" and _integral(magnitude) and magnitude >= 1024:
        for suffix, bits in _BINARY:
            mantissa = magnitude / (Decimal(2) ** bits)
            if _integral(mantissa):
                return f"{sign}{_plain(mantissa)}{suffix}"
        return f"{sign}{_plain(magnitude)}"
    for suffix, exponent in _DECIMAL:
        mantissa = magnitude / (Decimal(10) ** exponent)
        if _integral(mantissa):
            if form == "exponent":
                return f"{sign}{_plain(mantissa)}" + (f"e{exponent}" if exponent else "")
            return f"{sign}{_plain(mantissa)}{suffix}"
    raise NotCanonicalizable(f"{text!r} is finer than a nano unit")  # pragma: no cover - rounded above


def parse_duration(text: str) -> int:
    """A Go duration (``time.ParseDuration``: ``1h30m``, ``1.5s``, ``500ms``) in nanoseconds."""
    if not isinstance(text, str) or not text:
        raise NotCanonicalizable(f"{text!r} is not a duration")
    rest, sign = text, 1
    if rest[0] in "+-":
        sign, rest = (-1 if rest[0] == "-" else 1), rest[1:]
    if rest == "0":
        return 0
    total = Decimal(0)
    if not rest:
        raise NotCanonicalizable(f"{text!r} is not a duration")
    while rest:
        end = 0
        while end < len(rest) and (rest[end] in "0123456789."):
            end += 1
        number, rest = rest[:end], rest[end:]
        unit_end = 0
        while unit_end < len(rest) and rest[unit_end] not in "0123456789.":
            unit_end += 1
        unit, rest = rest[:unit_end], rest[unit_end:]
        if not number or number == "." or unit not in _UNITS or not number.isascii():
            raise NotCanonicalizable(f"{text!r} is not a duration")
        try:
            total += Decimal(number) * _UNITS[unit]
        except InvalidOperation:
            raise NotCanonicalizable(f"{text!r} is not a duration") from None
    return sign * int(total)


def _fraction(value: int, scale: int) -> str:
    whole, part = divmod(value, scale)
    if not part:
        return str(whole)
    digits = str(part).rjust(len(str(scale)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def canonical_duration(text: str) -> str:
    """Go's ``time.Duration.String()`` of a duration: ``1h0m0s``, ``10m0s``, ``1m30s``, ``1.5s``, ``500ms``, ``0s``.
    Raises ``NotCanonicalizable``."""
    nanoseconds = parse_duration(text)
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    n = abs(nanoseconds)
    if n < 1_000:
        return f"{sign}{n}ns"
    if n < 1_000_000:
        return f"{sign}{_fraction(n, 1_000)}µs"
    if n < 1_000_000_000:
        return f"{sign}{_fraction(n, 1_000_000)}ms"
    hours, n = divmod(n, 3_600_000_000_000)
    minutes, n = divmod(n, 60_000_000_000)
    seconds = _fraction(n, 1_000_000_000)
    text = f"{hours}h" if hours else ""
    text += f"{minutes}m" if hours or minutes else ""
    return f"{sign}{text}{seconds}s"


def _quantities(node, path: tuple[str, ...]):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("requests", "limits") and path and path[-1] == "resources" and isinstance(value, dict):
                for name, quantity in value.items():
                    yield (*path, key, str(name)), quantity
            elif key == "sizeLimit":
                yield (*path, key), value
            else:
                yield from _quantities(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _quantities(item, (*path, str(index)))


def non_canonical_values(obj: dict) -> list[tuple[str, str, str]]:
    """(field path, written value, canonical value) for every quantity (``resources.requests/limits``,
    ``sizeLimit``) and known duration field (``DURATION_FIELDS``) of one object that is not written in the form
    the cluster keeps. Values that do not parse are left to the schema checks."""
    found = []
    for path, value in _quantities(obj, ()):
        try:
            canonical = canonical_quantity(str(value) if isinstance(value, int) else value)
        except NotCanonicalizable:
            continue
        if str(value) != canonical:
            found.append((".".join(path), str(value), canonical))
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    for path in DURATION_FIELDS.get((group, str(obj.get("kind", ""))), ()):
        value = obj
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, str):
            continue
        try:
            canonical = canonical_duration(value)
        except NotCanonicalizable:
            continue
        if value != canonical:
            found.append((".".join(path), value, canonical))
    return found
