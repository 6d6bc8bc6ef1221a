"""Schema checks of single built objects.

Built-in kinds are checked against kubernetes-validate's offline, *strict* JSON schemas (unknown fields are errors)
for the configured Kubernetes version; custom resources against the ``openAPIV3Schema`` of their CRD's served
version, translated to JSON Schema 2020-12 the way the API server reads it (``nullable``, ``x-kubernetes-*``).

Speed matters (a tree holds tens of thousands of objects), so everything expensive happens once per process:
the 4 MB definitions file is loaded and crawled once per Kubernetes version, CRD files once per directory state,
and one jsonschema validator is kept per (group, version, kind). ``kubernetes_validate.validate()`` itself reloads
the definitions on every call (~40 ms each), which is why its schemas are used here without its ``validate()``.

Each validator is a pair: a compiled one (jsonschema-rs, Rust) answers "valid?" for every object, and only an
object it rejects goes through the pure-Python jsonschema validator, which writes the problems (so messages do not
depend on the compiled library, and whatever the compiled one rejects wrongly the Python one clears). Format
keywords are annotations in both (2020-12 without a format checker). Without jsonschema-rs installed, the Python
validator does both.
"""

import functools
import hashlib
import json
import logging
import os
import pickle
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

try:
    import jsonschema_rs
except ImportError:  # pragma: no cover - the portal pins it; the Python validator still works alone
    jsonschema_rs = None
from kubernetes_validate import utils as kv_utils
from packaging.version import Version
from referencing import Registry, Resource

logger = logging.getLogger(__name__)

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
CRD_FILE_SUFFIXES = (".yaml", ".yml", ".json")
MESSAGE_MAX_CHARS = 300
# Kinds whose field values are never echoed into problems (they reach logs and admin pages).
REDACTED_KINDS = {("", "Secret"), ("bitnami.com", "SealedSecret")}

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` → (``apps``, ``v1``); ``v1`` → (``""``, ``v1``)."""
    group, _, version = api_version.rpartition("/")
    return group, version


def object_label(obj: dict) -> str:
    """``apps/v1 Deployment tesslate/tesslate-backend`` – how problems name an object."""
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = metadata.get("name") or "(no name)"
    namespace = metadata.get("namespace")
    return f"{obj.get('apiVersion')} {obj.get('kind')} {f'{namespace}/' if namespace else ''}{name}"


def json_path(parts: Iterable[Any]) -> str:
    """``['spec', 'containers', 0, 'image']`` → ``spec.containers[0].image`` (odd keys in ``["…"]``)."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$-]*", str(part)):
            text += f".{part}" if text else str(part)
        else:
            text += f"[{json.dumps(str(part))}]"
    return text or "(object)"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _clip(text: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _without_nulls(value: Any) -> Any:
    """A copy without null-valued keys: the API server treats ``field: null`` like an absent field (it prunes it
    for custom resources), and kubernetes-validate's IntOrString ``oneOf`` would reject null as matching twice."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


# --- error descriptions ---------------------------------------------------------------------------------------


def _got(instance: Any, redact: bool) -> str:
    if redact or isinstance(instance, (dict, list)):
        return f"got {_json_type(instance)}"
    return f"got {_json_type(instance)} {_clip(json.dumps(instance), 60)}"


def _describe(error: jsonschema.ValidationError, redact: bool) -> Iterator[tuple[str, str]]:
    """(JSON path, what is wrong) for one jsonschema error, pointing at the offending field itself."""
    path = list(error.absolute_path)
    instance, schema, keyword = error.instance, error.schema, error.validator
    if keyword == "additionalProperties" and error.validator_value is False and isinstance(instance, dict):
        known = set(schema.get("properties") or {})
        patterns = [re.compile(pattern) for pattern in schema.get("patternProperties") or {}]
        extras = [key for key in instance if key not in known and not any(p.search(key) for p in patterns)]
        for key in extras:
            yield json_path([*path, key]), "unknown field (not in the schema)"
        if extras:
            return
    if keyword == "required" and isinstance(instance, dict):
        missing = [key for key in error.validator_value if key not in instance]
        for key in missing:
            yield json_path([*path, key]), "required field is missing"
        if missing:
            return
    if keyword == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        expected = [name for name in expected if name != "null"] or expected
        yield json_path(path), f"expected {' or '.join(expected)}, {_got(instance, redact)}"
        return
    if keyword in ("oneOf", "anyOf") and error.context:
        # IntOrString and friends: say which types fit rather than "is not valid under any of the given schemas".
        if all(sub.validator == "type" and not sub.relative_path for sub in error.context):
            expected = []
            for sub in error.context:
                values = sub.validator_value if isinstance(sub.validator_value, list) else [sub.validator_value]
                expected += [name for name in values if name != "null" and name not in expected]
            yield json_path(path), f"expected {' or '.join(expected)}, {_got(instance, redact)}"
            return
        yield from _describe(jsonschema.exceptions.best_match(error.context), redact)
        return
    if keyword == "enum":
        allowed = ", ".join(json.dumps(value) for value in error.validator_value if value is not None)
        yield json_path(path), _clip(f"must be one of {allowed}; {_got(instance, redact)}")
        return
    if keyword == "pattern":
        yield json_path(path), _clip(f"must match {error.validator_value!r}; {_got(instance, redact)}")
        return
    if redact:
        yield json_path(path), _clip(f"fails {keyword}: {json.dumps(error.validator_value, default=str)}")
        return
    yield json_path(path), _clip(error.message)


class SchemaValidator:
    """A compiled ``is_valid`` (jsonschema-rs, when it accepts the schema) in front of jsonschema's validator, which
    alone produces error messages (``iter_errors``)."""

    def __init__(self, schema: dict, registry: Registry, compiled_registry: Any = None) -> None:
        self.python = jsonschema.Draft202012Validator(schema, registry=registry)
        self.compiled = None
        if jsonschema_rs is not None:
            try:
                self.compiled = jsonschema_rs.Draft202012Validator(
                    schema, validate_formats=False, registry=compiled_registry)
            except Exception:  # noqa: BLE001 - a schema it cannot compile is checked by the Python validator alone
                logger.debug("jsonschema-rs could not compile a schema; using jsonschema alone", exc_info=True)

    def is_valid(self, obj: Any) -> bool:
        if self.compiled is not None:
            try:
                if self.compiled.is_valid(obj):
                    return True
            except Exception:  # noqa: BLE001 - e.g. a value it cannot convert: let the Python validator decide
                pass
        return self.python.is_valid(obj)

    def iter_errors(self, obj: Any) -> Iterator[jsonschema.ValidationError]:
        return self.python.iter_errors(obj)


def _problems(validator: SchemaValidator, obj: dict, *, redact: bool) -> list[tuple[str, str]]:
    # Valid objects (nearly all) are checked once, as they are; the null-pruned copy is made only for failures.
    if validator.is_valid(obj):
        return []
    pruned = _without_nulls(obj)
    found: list[tuple[str, str]] = []
    for error in sorted(validator.iter_errors(pruned), key=lambda e: [str(p) for p in e.absolute_path]):
        for item in _describe(error, redact):
            if item not in found:
                found.append(item)
    return found


# --- built-in kinds -------------------------------------------------------------------------------------------


def _schema_version(desired: str) -> str:
    """The newest schema set of kubernetes-validate not newer than ``desired`` (as kubernetes-validate chooses)."""
    wanted = Version(kv_utils.major_minor(desired.strip().lstrip("v")))
    available = sorted(set(kv_utils.all_versions()), key=Version)
    eligible = [version for version in available if Version(kv_utils.major_minor(version)) <= wanted]
    if not eligible or wanted > Version(kv_utils.major_minor(available[-1])):
        raise ValueError(f"kubernetes-validate has no schemas for Kubernetes {desired} "
                         f"(it has {available[0]} to {available[-1]}).")
    return eligible[-1]


class KubernetesSchemas:
    """kubernetes-validate's strict schemas of one Kubernetes version, with one validator per (group, version,
    kind). The definitions are one JSON Schema resource; each kind validates through a ``$ref`` into it."""

    def __init__(self, desired_version: str) -> None:
        self.schema_version = _schema_version(desired_version)
        self.version = kv_utils.major_minor(self.schema_version)
        definitions = kv_utils.schema_contents(
            f"kubernetes-json-schema/v{self.schema_version}-local-strict/_definitions.json", self.schema_version)
        self.base_uri = definitions["$id"]
        self.registry = Registry().with_resource(self.base_uri, Resource.from_contents(definitions)).crawl()
        self.compiled_registry = None
        if jsonschema_rs is not None:
            try:
                self.compiled_registry = jsonschema_rs.Registry([(self.base_uri, definitions)])
            except Exception:  # noqa: BLE001 - the Python validator checks everything then
                logger.debug("jsonschema-rs could not load the Kubernetes definitions", exc_info=True)
        self.kinds: dict[tuple[str, str, str], str] = {}
        for name, schema in definitions["$defs"].items():
            for gvk in schema.get("x-kubernetes-group-version-kind") or ():
                key = (gvk["group"], gvk["version"], gvk["kind"])
                # Shared definitions (DeleteOptions, WatchEvent) list many GVKs; a kind's own definition wins.
                if key not in self.kinds or name.rsplit(".", 1)[-1] == gvk["kind"]:
                    self.kinds[key] = name
        self.groups = {group for group, _, _ in self.kinds}
        self._definitions = definitions["$defs"]
        self._inlined: dict[str, dict | None] = {}
        self._validators: dict[tuple[str, str, str], SchemaValidator] = {}
        self._lock = threading.Lock()

    def ref(self, definition: str) -> dict:
        """The schema of a definition with its ``$ref`` chains inlined (see ``_inline``)."""
        with self._lock:
            return self._definition(definition) or {"$ref": f"{self.base_uri}#/$defs/{definition}"}

    def validator(self, group: str, version: str, kind: str) -> SchemaValidator | None:
        key = (group, version, kind)
        found = self._validators.get(key)
        if found is None and key in self.kinds:
            schema = self.ref(self.kinds[key])
            with self._lock:
                found = self._validators.get(key) or self._validators.setdefault(
                    key, SchemaValidator(schema, self.registry, self.compiled_registry))
        return found

    # Resolving a $ref costs a registry lookup on every object (a third of the validation time), so references
    # are replaced by the (shared, not copied) target schema once; only recursive ones stay references.
    def _definition(self, name: str) -> dict | None:
        if name in self._inlined:
            return self._inlined[name]  # None while it is being inlined: a cycle, keep the $ref
        self._inlined[name] = None
        result = self._inline(self._definitions[name])
        self._inlined[name] = result
        return result

    def _inline(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self._inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = self._definition(ref[len("#/$defs/"):])
            if target is None:
                target = {"$ref": f"{self.base_uri}{ref}"}
            siblings = {key: self._inline(value) for key, value in node.items() if key not in ("$ref", "description")}
            return {**siblings, "allOf": [target]} if siblings else target
        return {key: self._inline(value) for key, value in node.items()}

    def versions_of(self, group: str, kind: str) -> list[str]:
        return sorted(v for g, v, k in self.kinds if g == group and k == kind)


@functools.lru_cache(maxsize=4)
def kubernetes_schemas(version: str) -> KubernetesSchemas:
    return KubernetesSchemas(version)


# --- custom resources -----------------------------------------------------------------------------------------


def _openapi_to_jsonschema(node: Any, *, structural: bool) -> Any:
    """Translate one OpenAPI v3 (structural) schema node to JSON Schema 2020-12, the way the API server reads it.

    ``structural`` is False under ``allOf``/``anyOf``/``oneOf``/``not``: there the schema only adds value checks
    and must not add its own unknown-field rule (the fields are declared by the structural node beside it).
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties") and isinstance(value, dict):
            out[key] = {name: _openapi_to_jsonschema(sub, structural=structural) for name, sub in value.items()}
        elif key == "additionalProperties":
            out[key] = _openapi_to_jsonschema(value, structural=structural) if isinstance(value, dict) else value
        elif key == "items" and isinstance(value, dict):
            out[key] = _openapi_to_jsonschema(value, structural=structural)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [_openapi_to_jsonschema(sub, structural=False) for sub in value]
        elif key == "not":
            out[key] = _openapi_to_jsonschema(value, structural=False)
        elif key == "pattern":
            try:  # CRD patterns are Go RE2; keep those Python reads the same way, skip the rest rather than crash
                re.compile(value)
                out[key] = value
            except (re.error, TypeError):
                pass
        elif key.startswith("x-kubernetes-") or key in (
                "type", "nullable", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                "description", "example", "externalDocs", "default", "format", "title"):
            continue  # handled below, or documentation only; CEL rules (x-kubernetes-validations) are not run
        else:
            out[key] = value
    nullable = node.get("nullable") is True
    if node.get("x-kubernetes-int-or-string") is True:
        types = ["integer", "string"]
    elif isinstance(node.get("type"), str):
        types = [node["type"]]
    else:
        types = []
    if types:
        out["type"] = [*types, "null"] if nullable else (types if len(types) > 1 else types[0])
    if nullable and isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    # OpenAPI 3.0 (draft 4) flags a bound exclusive with a boolean; 2020-12 gives the bound itself.
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if bound in node:
            out[flag if node.get(flag) is True else bound] = node[bound]
    if node.get("x-kubernetes-embedded-resource") is True:
        properties = out.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties.setdefault("metadata", {"type": "object"})
    # Strict, as the API server prunes (and with strict field validation rejects) fields a schema does not
    # declare, unless x-kubernetes-preserve-unknown-fields keeps them.
    if (structural and node.get("x-kubernetes-preserve-unknown-fields") is not True
            and "additionalProperties" not in node and (node.get("type") == "object" or "properties" in node)):
        out["additionalProperties"] = False
    return out


def crd_root_schema(schema: dict, kubernetes: KubernetesSchemas) -> dict:
    """A CRD version's openAPIV3Schema as a JSON Schema for whole objects.

    ``metadata`` is always the real ObjectMeta (CRDs declare it as a bare ``type: object``), plus any extra
    constraints the CRD puts on it (such as a name length)."""
    out = _openapi_to_jsonschema(schema, structural=True)
    properties = out.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string"}
    properties["kind"] = {"type": "string"}
    metadata_checks = [kubernetes.ref(OBJECT_META)]
    declared = (schema.get("properties") or {}).get("metadata")
    if isinstance(declared, dict) and declared.get("properties"):
        metadata_checks.append(_openapi_to_jsonschema(declared, structural=False))
    properties["metadata"] = {"allOf": metadata_checks}
    return out


@dataclass
class CustomResourceDefinition:
    name: str
    group: str
    kind: str
    scope: str
    source: str
    served: dict[str, bool] = field(default_factory=dict)
    schemas: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_object(cls, obj: dict, source: str) -> "CustomResourceDefinition | None":
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        names = spec.get("names") if isinstance(spec.get("names"), dict) else {}
        if not spec.get("group") or not names.get("kind"):
            return None
        crd = cls(name=(obj.get("metadata") or {}).get("name", ""), group=spec["group"], kind=names["kind"],
                  scope=spec.get("scope", "Namespaced"), source=source)
        for version in spec.get("versions") or ():
            if isinstance(version, dict) and version.get("name"):
                crd.served[version["name"]] = bool(version.get("served", True))
                schema = (version.get("schema") or {}).get("openAPIV3Schema")
                if isinstance(schema, dict):
                    crd.schemas[version["name"]] = schema
        return crd

    @property
    def served_versions(self) -> list[str]:
        return [f"{self.group}/{name}" for name, served in self.served.items() if served]


class CRDCatalog:
    """CRDs indexed by (group, kind), with one compiled validator per served version."""

    def __init__(self, crds: Iterable[CustomResourceDefinition], *, origin: str) -> None:
        self.origin = origin
        self.kinds: dict[tuple[str, str], CustomResourceDefinition] = {}
        for crd in crds:
            self.kinds.setdefault((crd.group, crd.kind), crd)
        self._validators: dict[tuple[str, str, str, str], SchemaValidator] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.kinds)

    def with_extra(self, crds: Iterable[CustomResourceDefinition]) -> "CRDCatalog":
        """A catalog that also knows ``crds`` (the directory's definitions win on a conflict)."""
        merged = CRDCatalog(self.kinds.values(), origin=self.origin)
        merged._validators = self._validators
        for crd in crds:
            merged.kinds.setdefault((crd.group, crd.kind), crd)
        return merged

    def validator(self, crd: CustomResourceDefinition, version: str,
                  kubernetes: KubernetesSchemas) -> SchemaValidator:
        key = (kubernetes.schema_version, crd.group, crd.kind, version)
        found = self._validators.get(key)
        if found is None:
            with self._lock:
                found = self._validators.get(key)
                if found is None:
                    schema = crd_root_schema(crd.schemas.get(version) or {"type": "object"}, kubernetes)
                    found = SchemaValidator(schema, kubernetes.registry, kubernetes.compiled_registry)
                    self._validators[key] = found
        return found


def _directory_state(directory: Path) -> tuple[tuple[str, int, int], ...]:
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in CRD_FILE_SUFFIXES)
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)


def crds_from_documents(documents: Iterable[Any], source: str) -> list[CustomResourceDefinition]:
    found = []
    for document in documents:
        items = document.get("items") if isinstance(document, dict) and document.get("kind") == "List" else [document]
        for item in items or ():
            if isinstance(item, dict) and item.get("kind") == "CustomResourceDefinition":
                crd = CustomResourceDefinition.from_object(item, source)
                if crd is not None:
                    found.append(crd)
    return found


CRD_CACHE_VERSION = "crds-1"


@functools.lru_cache(maxsize=4)
def _crd_catalog_cached(directory: str, state: tuple, cache_dir: str = "") -> CRDCatalog:
    crds = _crds_stored(cache_dir, directory, state) if cache_dir else None
    if crds is None:
        crds = []
        for name, _, _ in state:
            with open(Path(directory) / name, "rb") as handle:
                crds += crds_from_documents(yaml.load_all(handle, Loader=_Loader), name)
        if cache_dir:
            _crds_store(cache_dir, directory, state, crds)
    return CRDCatalog(crds, origin=directory)


def _crds_path(cache_dir: str, directory: str, state: tuple) -> Path:
    key = hashlib.blake2b(repr((CRD_CACHE_VERSION, directory, state)).encode(), digest_size=16).hexdigest()
    return Path(cache_dir) / f"crds-{key}.pickle"


def _crds_stored(cache_dir: str, directory: str, state: tuple) -> list[CustomResourceDefinition] | None:
    try:
        with open(_crds_path(cache_dir, directory, state), "rb") as handle:
            crds = pickle.load(handle)
    except (OSError, pickle.PickleError, EOFError, ValueError, TypeError, AttributeError):
        return None
    return crds if isinstance(crds, list) else None


def _crds_store(cache_dir: str, directory: str, state: tuple, crds: list[CustomResourceDefinition]) -> None:
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=cache_dir, prefix=".crds-")
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(crds, handle, protocol=5)
        os.replace(temporary, _crds_path(cache_dir, directory, state))
    except OSError:
        logger.warning("Could not store the parsed CRDs in %s", cache_dir, exc_info=True)


def crd_catalog_load(crd_dir: str | Path | None, cache_dir: str | Path | None = None) -> CRDCatalog | None:
    """The CRDs of ``crd_dir`` (cached in the process until a file there changes), or None when there are none to
    use. With ``cache_dir``, the parsed CRDs are also kept there (``crds-<key>.pickle``, the key made of the
    folder and every CRD file's name, mtime and size), so a fresh process skips parsing them (~3 s)."""
    if not crd_dir:
        return None
    directory = Path(crd_dir)
    if not directory.is_dir():
        return None
    catalog = _crd_catalog_cached(str(directory.resolve()), _directory_state(directory),
                                  str(cache_dir) if cache_dir else "")
    return catalog if len(catalog) else None


# --- checking one object --------------------------------------------------------------------------------------


class ObjectChecker:
    """Checks built objects one by one; returns (rule, message) pairs. ``crds=None`` skips custom resources."""

    def __init__(self, kubernetes: KubernetesSchemas, crds: CRDCatalog | None) -> None:
        self.kubernetes = kubernetes
        self.crds = crds
        self.checked = 0
        self.skipped = 0

    def check(self, obj: Any) -> list[tuple[str, str]]:
        if not isinstance(obj, dict) or not isinstance(obj.get("apiVersion"), str) or not obj.get("kind"):
            return [("kubernetes-schema", f"{_clip(str(obj), 80)}: not a Kubernetes object (apiVersion and kind)")]
        group, version = split_api_version(obj["apiVersion"])
        kind = str(obj["kind"])
        redact = (group, kind) in REDACTED_KINDS
        builtin = self.kubernetes.validator(group, version, kind)
        if builtin is not None:
            self.checked += 1
            found = _problems(builtin, obj, redact=redact)
            if not found:
                return []
            label = object_label(obj)
            return [("kubernetes-schema", f"{label}: {path}: {text}") for path, text in found]
        label = object_label(obj)
        if group in self.kubernetes.groups:
            known = self.kubernetes.versions_of(group, kind)
            hint = f" (it has {', '.join(f'{group}/{v}' if group else v for v in known)})" if known else ""
            return [("unknown-kind", f"{label}: not a kind of Kubernetes {self.kubernetes.version}{hint}")]
        if self.crds is None:
            self.skipped += 1
            return []
        crd = self.crds.kinds.get((group, kind))
        if crd is None:
            known = f"neither a built-in kind of Kubernetes {self.kubernetes.version} nor defined by a known CRD"
            return [("unknown-kind", f"{label}: {known}")]
        if not crd.served.get(version):
            state = "is deprecated and not served" if version in crd.served else "is not defined"
            served = ", ".join(crd.served_versions) or "none"
            message = f"version not served: {obj['apiVersion']} {state} by CRD {crd.name} ({crd.source})"
            return [("crd-version", f"{label}: {message}; served: {served}")]
        self.checked += 1
        validator = self.crds.validator(crd, version, self.kubernetes)
        return [("crd-schema", f"{label}: {path}: {text}") for path, text in _problems(validator, obj, redact=redact)]

