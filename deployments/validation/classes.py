"""Equivalence classes of kustomization folders: build one folder, derive the objects of the folders like it.

Project folders are rendered from one template. Two folders whose kustomization file is byte-identical and whose
resource files have the same *shape* build to the same objects modulo a renaming of values, provided kustomize
does not interpret the renamed values. The shape of a folder is its parsed resource documents with every string
and integer leaf replaced by a placeholder numbered by first occurrence (equal values share a placeholder, so the
renaming is a bijection between two folders of one shape). Never renamed (*structural*, part of the shape as
they are): mapping keys, the values of ``apiVersion``, ``kind`` and every ``image`` field, the values under
kustomize's own annotations (``config.kubernetes.io/…``, ``internal.config.kubernetes.io/…``,
``kustomize.config.k8s.io/…``), empty strings, booleans and nulls – and any value that also occurs as a
structural value (in the resources or anywhere in the kustomization: ``Ingress`` is a kind and a NetworkPolicy's
policy type), which is then kept wherever it occurs, so renamed and structural values never overlap and a folder
with another value in that place has another shape.

``folder_shape`` refuses (``Refused``; the folder is then built for real) when

- the kustomization uses anything but ``apiVersion``, ``kind``, ``resources`` and ``images``, or a resource is not
  a file of the folder (a folder, a remote base, something missing) – only those keep kustomize away from values:
  ``resources`` reads files as they are, ``images`` rewrites ``image`` fields, which are structural;
- a resource file cannot be parsed, or is written with something the fast parser could read differently from the
  gate's YAML reader (see ``fast_documents``).

The representative's build gives the class template (``template_from``): its objects with every value of its
renaming replaced by the placeholder; a template is refused when kustomize moved a renamed value into a structural
field or produced a value that is neither renamed nor a structural value of the sources. A member's objects are
the template with the member's values put back (``concretise``). The gate verifies every template on every run
by building a sample of members for real (gate.py); templates are kept on disk by shape digest
(``TemplateCache``), so later runs and fresh worker processes reuse them.

The fast parser is yaml-rs (YAML 1.2 core, Rust). It is used only to compute shapes; objects that are checked
come from kustomize's output read by PyYAML like every build. Its results are accepted only where they equal what
PyYAML reads: every string (key or value) must resolve as a string under YAML 1.1's implicit rules (``yes``,
``on``, ``12:30``, dates, ``<<`` do not), no float, no integer written with a leading zero or ``0o`` (octal in
YAML 1.1, decimal in 1.2), no tags, directives or document-end markers.
"""

import hashlib
import json
import logging
import math
import os
import pickle
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

try:
    import yaml_rs
except ImportError:  # pragma: no cover - the portal pins it; without it every folder is built
    yaml_rs = None

logger = logging.getLogger(__name__)

SHAPE_VERSION = b"portal-shape-1"
STRUCTURAL_KEYS = frozenset({"apiVersion", "kind", "image"})
STRUCTURAL_PREFIXES = ("config.kubernetes.io/", "internal.config.kubernetes.io/", "kustomize.config.k8s.io/")
SAFE_KUSTOMIZATION_KEYS = frozenset({"apiVersion", "kind", "resources", "images"})
IMAGE_KEYS = frozenset({"name", "newName", "newTag", "digest"})

_DOCUMENT_START = re.compile(rb"^---[ \t]*\r?$", re.MULTILINE)
# Written forms the fast parser may read differently from PyYAML: "---" with content, "...", directives, tags,
# integers with a leading zero or 0o (YAML 1.1 octal), and floats are checked on the parsed values.
_MARKER_WITH_CONTENT = re.compile(rb"^---[ \t]*[^\s#]", re.MULTILINE)
# A plain integer with a leading zero or 0o (octal or a string in YAML 1.1, decimal in 1.2), after a space, a tab
# or a flow indicator (quoted text matching this is refused too: conservative).
_LEADING_ZERO = re.compile(rb"[ \t\[,{][-+]?0[0-9_o]")
_STR_TAG = "tag:yaml.org,2002:str"
_resolver = yaml.resolver.Resolver()
_RESOLVES_AS_STRING: dict[str, bool] = {}
_RESOLVES_MAX = 500_000


class Refused(Exception):
    """The folder (or its build) cannot stand for others; it is built for real."""


class Placeholder:
    """The n-th renamed value of a class template."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __reduce__(self):
        return (Placeholder, (self.n,))

    def __repr__(self) -> str:
        return f"<{self.n}>"


@dataclass
class Shape:
    """A folder's shape: ``digest`` (hex) names the class; ``values`` are the folder's renamed values by
    placeholder number; ``table`` maps (type, value) to that number; ``structural`` holds the (type, value) pairs
    that are never renamed."""

    digest: str
    values: list
    table: dict = field(repr=False)
    structural: set = field(repr=False)


def is_string_everywhere(text: str) -> bool:
    """Whether a string yaml-rs read is a string for PyYAML too: either YAML 1.1 reads it as a string even when
    written plain, or YAML 1.2 would not read it plain as this string (so it was quoted, for both parsers)."""
    found = _RESOLVES_AS_STRING.get(text)
    if found is None:
        found = _resolver.resolve(yaml.ScalarNode, text, (True, False)) == _STR_TAG
        if not found:
            try:
                found = yaml_rs.loads(text, parse_datetime=False) != text
            except Exception:  # noqa: BLE001 - not writable plain: it was quoted
                found = True
        if len(_RESOLVES_AS_STRING) >= _RESOLVES_MAX:
            _RESOLVES_AS_STRING.clear()
        _RESOLVES_AS_STRING[text] = found
    return found


def fast_documents(data: bytes, path: str) -> list[Any]:
    """The documents of one resource file read with yaml-rs, or Refused where that could differ from PyYAML."""
    if yaml_rs is None:
        raise Refused("the fast YAML parser is not installed")
    if (b"!" in data or b"\n..." in data or data.startswith((b"...", b"%")) or b"\n%" in data
            or (b"---" in data and _MARKER_WITH_CONTENT.search(data)) or _LEADING_ZERO.search(data)):
        raise Refused(f"{path} is written with YAML forms only a real build reads reliably (tags, directives, "
                      "document ends, integers with a leading zero)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(f"{path} is not UTF-8") from exc
    pieces = _DOCUMENT_START.split(data) if b"---" in data else [data]
    documents = []
    for piece in pieces:
        chunk = piece.decode("utf-8") if len(pieces) > 1 else text
        try:
            document = yaml_rs.loads(chunk, parse_datetime=False)
        except Exception as exc:  # noqa: BLE001 - whatever it refuses is built for real
            raise Refused(f"{path} cannot be parsed") from exc
        if document is not None:
            documents.append(document)
    return documents


def _walk(files: list[tuple[str, list[Any]]], tokens: list, structural: set) -> tuple[list, dict]:
    """Append the shape tokens of ``files`` [(name, documents)] to ``tokens``; returns (values, table). Keys and
    markers are str/bytes tokens, a structural value is ("=", value), a renamed one the int 2n (string) or 2n + 1
    (integer) for the n-th renamed value. Structural (tag, value) pairs are added to ``structural``."""
    values: list = []
    table: dict = {}
    append = tokens.append
    memo = _RESOLVES_AS_STRING
    structural_keys = STRUCTURAL_KEYS
    prefixes = STRUCTURAL_PREFIXES

    def string_ok(text: str) -> bool:
        found = memo.get(text)
        return is_string_everywhere(text) if found is None else found

    def walk(node: Any, fixed: bool) -> None:
        kind = type(node)
        if kind is dict:
            append(b"{")
            for key, value in node.items():
                if type(key) is str:
                    if not string_ok(key):
                        raise Refused(f"the key {key!r} reads differently in YAML 1.1")
                    append(key)
                    kind_of = type(value)
                    if fixed or key in structural_keys or key.startswith(prefixes):
                        walk(value, True)
                    elif kind_of is str:  # the common case, inline
                        if not value:
                            append(("=", value))
                            structural.add((0, value))
                            continue
                        if not string_ok(value):
                            raise Refused(f"the value {value!r} reads differently in YAML 1.1")
                        number = table.get((0, value))
                        if number is None:
                            number = table[(0, value)] = len(values)
                            values.append(value)
                        append(number * 2)
                    else:
                        walk(value, False)
                else:
                    append(("key", repr(key)))
                    walk(value, fixed)
            append(b"}")
        elif kind is list:
            append(b"[")
            for item in node:
                walk(item, fixed)
            append(b"]")
        elif kind is str or kind is int:
            tag = 0 if kind is str else 1
            if tag == 0 and not string_ok(node):
                raise Refused(f"the value {node!r} reads differently in YAML 1.1")
            if fixed or (tag == 0 and not node):
                structural.add((tag, node))
                append(("=", node))
                return
            number = table.get((tag, node))
            if number is None:
                number = table[(tag, node)] = len(values)
                values.append(node)
            append(number * 2 + tag)
        elif node is None or kind is bool:
            append(("=", node))
        else:
            raise Refused(f"a {kind.__name__} value is not renamed safely")

    for name, documents in files:
        append(("file", name))
        for document in documents:
            if type(document) is not dict:
                raise Refused(f"{name} holds a document that is not a mapping")
            append(b"---")
            walk(document, False)
    return values, table


def _strings_of(node: Any, into: set) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _strings_of(key, into)
            _strings_of(value, into)
    elif isinstance(node, list):
        for item in node:
            _strings_of(item, into)
    elif isinstance(node, str):
        into.add((0, node))
    elif isinstance(node, int) and not isinstance(node, bool):
        into.add((1, node))


def folder_shape(root: Path, folder: str, kustomization_file: str, data: Any) -> Shape:
    """The shape of the kustomization folder ``folder`` (repository-relative), whose file ``kustomization_file``
    parsed to ``data``. Raises Refused when the folder cannot stand for others (module docstring)."""
    if not isinstance(data, dict) or not set(data) <= SAFE_KUSTOMIZATION_KEYS:
        raise Refused("the kustomization uses more than resources and images")
    if data.get("kind", "Kustomization") != "Kustomization" or not isinstance(data.get("resources"), list):
        raise Refused("not a plain Kustomization with resources")
    images = data.get("images") or []
    if not isinstance(images, list) or not all(
            isinstance(image, dict) and set(image) <= IMAGE_KEYS and all(isinstance(v, str) for v in image.values())
            for image in images):
        raise Refused("an images entry kustomize may read otherwise")
    base = root / folder if folder else root
    try:
        kustomization_bytes = (root / kustomization_file).read_bytes()
    except OSError as exc:
        raise Refused("the kustomization cannot be read") from exc
    files: list[tuple[str, list[Any]]] = []
    for entry in data["resources"]:
        if not isinstance(entry, str) or "/" in entry.strip() or entry.strip() in ("", ".", ".."):
            raise Refused("a resource is not a file of the folder")
        path = base / entry.strip()
        try:
            if not path.is_file():
                raise Refused("a resource is not a file of the folder")
            file_bytes = path.read_bytes()
        except OSError as exc:
            raise Refused("a resource cannot be read") from exc
        files.append((entry, fast_documents(file_bytes, entry)))
    tokens: list = [("kustomization", os.path.basename(kustomization_file), kustomization_bytes)]
    structural: set = set()
    _strings_of(data, structural)
    values, table = _walk(files, tokens, structural)
    kept = structural.intersection(table)
    if kept:
        # Those values are kept wherever they occur: a member of the class must hold the same value under the same
        # number, and the template never renames them (they leave the table), so renamed and structural values
        # never overlap.
        tokens.append(("kept", sorted((table.pop(key), key) for key in kept)))
    # repr, not marshal or pickle: their output depends on object identity (shared references), not only value.
    digest = hashlib.blake2b(SHAPE_VERSION + repr(tokens).encode(), digest_size=20).hexdigest()
    return Shape(digest=digest, values=values, table=table, structural=structural)


# Shapes of many folders are computed in worker processes (parsing is CPU-bound; the portal has 2 cores): plain
# `python -m deployments.validation.shape_worker` children fed with pickles (no fork of a process with threads, no
# re-import of the caller's main module). A worker costs about 0.3 s to start, so small sets stay in process.
SHAPE_WORKERS = 2
POOL_MIN_FOLDERS = 300
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


def folder_shapes(root: Path, items: list[tuple[str, str, Any]], *,
                  workers: int = SHAPE_WORKERS) -> list["Shape | Refused"]:
    """``folder_shape`` of each (folder, kustomization file, parsed kustomization) in ``items``, in order: the
    Shape, or the Refused exception saying why not. Uses ``workers`` processes for POOL_MIN_FOLDERS or more."""
    if workers <= 1 or len(items) < POOL_MIN_FOLDERS:
        return _shapes(str(root), items)
    size = math.ceil(len(items) / workers)
    batches = [items[start:start + size] for start in range(0, len(items), size)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PROJECT_ROOT, os.environ.get("PYTHONPATH")]))}
    processes = []
    try:
        for batch in batches:
            process = subprocess.Popen([sys.executable, "-m", "deployments.validation.shape_worker"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            processes.append(process)
            with process.stdin:
                pickle.dump((str(root), batch), process.stdin, protocol=5)
        results = []
        for process in processes:
            with process.stdout:
                results.append(pickle.load(process.stdout))
            if process.wait() != 0:
                raise OSError(f"shape worker exited with {process.returncode}")
    except (OSError, EOFError, pickle.PickleError) as exc:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        logger.warning("Could not compute folder shapes in worker processes (%s); computing them here", exc)
        return _shapes(str(root), items)
    return [shape for batch in results for shape in batch]


def _shapes(root: str, items: list[tuple[str, str, Any]]) -> list["Shape | Refused"]:
    found: list[Shape | Refused] = []
    for folder, kustomization_file, data in items:
        try:
            found.append(folder_shape(Path(root), folder, kustomization_file, data))
        except Refused as exc:
            found.append(exc)
    return found


def template_from(objects: list[Any], shape: Shape) -> list[Any]:
    """The class template of a representative's built ``objects`` and its ``shape``; Refused when kustomize moved
    a renamed value into a structural field or produced a value the sources do not explain."""
    table, structural_values = shape.table, shape.structural

    def abstract(node: Any, structural: bool) -> Any:
        kind = type(node)
        if kind is dict:
            return {key: abstract(value, structural or (type(key) is str and (
                key in STRUCTURAL_KEYS or key.startswith(STRUCTURAL_PREFIXES)))) for key, value in node.items()}
        if kind is list:
            return [abstract(item, structural) for item in node]
        if kind is str or kind is int:
            key = (0 if kind is str else 1, node)
            if structural or (kind is str and not node):
                if key in table:
                    raise Refused("kustomize put a renamed value into a structural field")
                return node
            number = table.get(key)
            if number is not None:
                return Placeholder(number)
            if key in structural_values:
                return node
            raise Refused("kustomize produced a value the sources do not explain")
        return node

    return [abstract(obj, False) for obj in objects]


def concretise(template: Any, values: list) -> Any:
    """The template with every placeholder replaced by ``values[n]`` (new containers; the template is shared)."""
    kind = type(template)
    if kind is dict:
        return {key: concretise(value, values) for key, value in template.items()}
    if kind is list:
        return [concretise(item, values) for item in template]
    if kind is Placeholder:
        return values[template.n]
    return template


_LITERAL_TYPES = (str, int, float, bool, type(None))


def template_function(template: list[Any]) -> "Callable[[list], list[Any]]":
    """``concretise`` compiled: a function of the values that builds the objects with Python's own literal
    syntax (several times faster for thousands of members). Falls back to ``concretise`` for a template holding
    anything but dicts, lists, placeholders and plain scalars."""
    def source(node: Any) -> str:
        kind = type(node)
        if kind is dict:
            return "{" + ",".join(f"{_literal(key)}:{source(value)}" for key, value in node.items()) + "}"
        if kind is list:
            return "[" + ",".join(source(item) for item in node) + "]"
        if kind is Placeholder:
            return f"v[{int(node.n)}]"
        return _literal(node)

    try:
        code = "lambda v: " + source(template)
        function = eval(compile(code, "<class template>", "eval"), {"__builtins__": {}})  # noqa: S307 - literals only
    except (TypeError, ValueError, SyntaxError, RecursionError, MemoryError):
        return lambda values: concretise(template, values)
    return function


def _literal(value: Any) -> str:
    if type(value) not in _LITERAL_TYPES or (type(value) is float and value != value):
        raise TypeError(f"not a plain literal: {type(value).__name__}")
    if type(value) is float and value in (float("inf"), float("-inf")):
        raise TypeError("an infinite float")
    return repr(value)


def canonical(objects: list[Any]) -> list[str]:
    """Objects in an order-independent comparable form (kustomize orders objects by name, which renaming changes);
    JSON keeps strings, integers, booleans and nulls apart."""
    return sorted(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=repr) for obj in objects)


class TemplateCache:
    """Class templates on disk: ``<directory>/<digest>.template`` (pickle), valid for one kubectl binary (its
    path, size and mtime are stored with the template). Written atomically; unreadable entries are misses."""

    def __init__(self, directory: Path | None, kubectl_identity: str) -> None:
        self.directory = directory
        self.identity = kubectl_identity
        self.reads = 0
        self.writes = 0

    def get(self, digest: str) -> list[Any] | None:
        if self.directory is None:
            return None
        try:
            with open(self.directory / f"{digest}.template", "rb") as handle:
                identity, template = pickle.load(handle)
        except (OSError, pickle.PickleError, EOFError, ValueError, TypeError, AttributeError):
            return None
        if identity != self.identity:
            return None
        self.reads += 1
        return template

    def put(self, digest: str, template: list[Any]) -> None:
        if self.directory is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=f".{digest}.")
            with os.fdopen(fd, "wb") as handle:
                pickle.dump((self.identity, template), handle, protocol=5)
            os.replace(temporary, self.directory / f"{digest}.template")
            self.writes += 1
        except OSError:
            logger.warning("Could not store a validation class template in %s", self.directory, exc_info=True)

    def drop(self, digest: str) -> None:
        if self.directory is not None:
            try:
                (self.directory / f"{digest}.template").unlink()
            except OSError:
                pass


def kubectl_identity(kubectl_path: str) -> str:
    """The kubectl binary as a cache key: resolved path, size and mtime (a new kubectl builds templates anew)."""
    try:
        real = os.path.realpath(kubectl_path)
        stat = os.stat(real)
        return f"{real}:{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        return kubectl_path
