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
with another value in that place has another shape. Values the text patterns cannot capture safely (block
scalars, plain scalars with spaces or indicators, quoted ones with escapes) are kept literally, so they too must
be equal across a class.

``folder_shape`` refuses (``Refused``; the folder is then built for real) when

- the kustomization uses anything but ``apiVersion``, ``kind``, ``resources`` and ``images``, or a resource is not
  a file of the folder (a folder, a remote base, something missing) – only those keep kustomize away from values:
  ``resources`` reads files as they are, ``images`` rewrites ``image`` fields, which are structural;
- a resource file cannot be parsed, uses anchors, aliases, tags or merge keys, or holds a renamable value that
  YAML 1.1 (PyYAML, the gate's reader) and YAML 1.2 (kustomize's reader) type differently (``yes``, ``0755``,
  ``0o17``, ``1_000``, dates) or a float.

Shapes are computed from text (see "shapes from text" below): a resource file is parsed once per pattern, and the
files of the other folders are matched against it with one regular expression each, several times cheaper than
parsing them.

The representative's build gives the class template (``template_from``): its objects with every value of its
renaming replaced by the placeholder; a template is refused when kustomize moved a renamed value into a structural
field or produced a value that is neither renamed nor a structural value of the sources. A member's objects are
the template with the member's values put back (``concretise``, ``template_function``). The gate verifies every
template on every run by building a sample of members for real (gate.py); templates are kept on disk by shape
digest (``TemplateCache``), so later runs and fresh worker processes reuse them.

``fast_documents`` reads YAML with yaml-rs (YAML 1.2 core, Rust, about 5× PyYAML) where that equals what PyYAML
reads; the host check (hosts.py) uses it for the Ingress documents of unchanged source files. Checked objects
always come from PyYAML.
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

SHAPE_VERSION = b"portal-shape-2"
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
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
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


# --- shapes from text -----------------------------------------------------------------------------------------
#
# Parsing every file of every folder would cost more than everything else together (100 MB of YAML at 5,000
# projects). A resource file is parsed once per *pattern*: its text with every renamable scalar turned into a
# capture group, everything else (keys, structural values, block scalars, anything with escapes, spaces or
# indicators) kept literally. A file of another folder that the pattern matches in full is, character for
# character, that text with other scalars in the same places: the same YAML structure, with those scalars as its
# values (groups cannot hold a quote, a newline, a space, a colon, a comment or a flow indicator, so they cannot
# change how the text is split into nodes). Only the values are resolved, with PyYAML's rules (the gate's reader)
# and only where YAML 1.2 (kustomize's reader) agrees: a plain value that would be typed differently is refused.

_SAFE_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/@+-]*")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)")
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NULLS = {"null", "Null", "NULL", "~"}
# One group for every renamable scalar: double-quoted without escapes, single-quoted without quotes, or plain
# from the safe set (renderers quote the same value one way or the other; the value, not the quoting, counts).
_GROUP = "(\"[^\"\\\\\\n]*\"|'[^'\\n]*'|[A-Za-z0-9][A-Za-z0-9._/@+\\-]*)"
_PLAIN_VALUES: dict[str, tuple] = {}
_PATTERNS: dict[str, list["_Pattern"]] = {}
_PATTERNS_PER_FILE = 32
_INT_TAG, _BOOL_TAG, _NULL_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"


@dataclass
class _Pattern:
    regex: re.Pattern
    ident: str  # digest of the literal text and the groups
    structural: set  # (tag, value) of the literal scalars that are values (not keys)


def _plain_value(raw: str) -> tuple:
    """(0, str) or (1, int) for a renamable plain scalar, ("=", value) for a boolean or null; Refused where YAML
    1.1 and 1.2 read the text differently (``yes``, ``0755``, ``0o17``, ``1e3``, dates, …) or for floats."""
    found = _PLAIN_VALUES.get(raw)
    if found is not None:
        if found[0] == "refused":
            raise Refused(f"the plain value {raw!r} reads differently in YAML 1.1 and 1.2")
        return found
    tag = _resolver.resolve(yaml.ScalarNode, raw, (True, False))
    found = ("refused",)
    if tag == _STR_TAG:
        try:
            if yaml_rs is not None and yaml_rs.loads(raw, parse_datetime=False) == raw:
                found = (0, raw)
        except Exception:  # noqa: BLE001 - not readable plain in YAML 1.2: refused
            pass
    elif tag == _INT_TAG and _DECIMAL.fullmatch(raw):
        found = (1, int(raw))
    elif tag == _BOOL_TAG and raw in _BOOLS:
        found = ("=", _BOOLS[raw])
    elif tag == _NULL_TAG and raw in _NULLS:
        found = ("=", None)
    if len(_PLAIN_VALUES) >= _RESOLVES_MAX:
        _PLAIN_VALUES.clear()
    _PLAIN_VALUES[raw] = found
    return _plain_value(raw)


def _literal_value(raw: str, event: Any) -> tuple | None:
    """(tag, value) of a literal (never renamed) scalar for the structural set: strings and integers only."""
    if event.style not in (None, ""):
        return (0, event.value)
    tag = _resolver.resolve(yaml.ScalarNode, event.value, (True, False))
    if tag == _STR_TAG:
        return (0, event.value)
    if tag == _INT_TAG:
        try:
            return (1, yaml.SafeLoader.construct_yaml_int(yaml.SafeLoader(""), yaml.ScalarNode(tag, event.value)))
        except (ValueError, yaml.YAMLError):
            return None
    return None


def _make_pattern(text: str, name: str) -> _Pattern:
    """The pattern of one resource file's text (parsed with PyYAML's events); Refused for anchors, aliases, tags,
    complex keys or text PyYAML cannot parse."""
    pieces: list[str] = []
    structural: set = set()
    position = 0
    # Frames: [is_mapping, expecting_key, structural, key]
    stack: list[list] = []
    try:
        events = list(yaml.parse(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise Refused(f"{name} cannot be parsed") from exc
    for event in events:
        if isinstance(event, yaml.AliasEvent):
            raise Refused(f"{name} uses aliases")
        if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            stack.pop()
            continue
        if not isinstance(event, (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            continue
        if event.anchor is not None or (event.tag is not None and event.tag != "!"):
            raise Refused(f"{name} uses anchors or tags")
        fixed, is_key = False, False
        if stack:
            frame = stack[-1]
            fixed = frame[2]
            if frame[0]:
                if frame[1]:
                    if not isinstance(event, yaml.ScalarEvent):
                        raise Refused(f"{name} has a complex mapping key")
                    is_key = True
                    frame[3] = event.value
                    if event.value == "<<" and not event.style:
                        raise Refused(f"{name} uses a merge key")
                else:
                    key = frame[3]
                    fixed = fixed or key in STRUCTURAL_KEYS or key.startswith(STRUCTURAL_PREFIXES)
                frame[1] = not frame[1]
        if isinstance(event, yaml.MappingStartEvent):
            stack.append([True, True, fixed, ""])
            continue
        if isinstance(event, yaml.SequenceStartEvent):
            stack.append([False, False, fixed, ""])
            continue
        start, end = event.start_mark.index, event.end_mark.index
        raw = text[start:end]
        style = event.style or ""
        captured = False
        if not is_key and not fixed:
            if style == "" and _SAFE_PLAIN.fullmatch(raw) and raw == event.value:
                captured = True
            elif style in ('"', "'") and len(raw) >= 2 and raw[1:-1] == event.value and event.value and not any(
                    char in event.value for char in ('"', "'", "\\", "\n")):
                captured = True
        if captured:
            pieces.append(re.escape(text[position:start]))
            pieces.append(_GROUP)
            position = end
        elif not is_key:
            found = _literal_value(raw, event)
            if found is not None:
                structural.add(found)
    pieces.append(re.escape(text[position:]))
    source = "".join(pieces)
    regex = re.compile(source, re.DOTALL)
    ident = hashlib.blake2b(repr(source).encode(), digest_size=16).hexdigest()
    pattern = _Pattern(regex=regex, ident=ident, structural=structural)
    if regex.fullmatch(text) is None:  # never expected: the pattern is made from this text
        raise Refused(f"{name}: its own pattern does not match")
    return pattern


def _file_values(name: str, data: bytes) -> tuple[_Pattern, tuple[str, ...]]:
    """The pattern a resource file matches (made from it when none known does) and its captured raw values."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(f"{name} is not UTF-8") from exc
    known = _PATTERNS.setdefault(name, [])
    for pattern in known:
        match = pattern.regex.fullmatch(text)
        if match is not None:
            return pattern, match.groups()
    pattern = _make_pattern(text, name)
    if len(known) >= _PATTERNS_PER_FILE:
        known.clear()
    known.append(pattern)
    return pattern, pattern.regex.fullmatch(text).groups()


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
    tokens: list = [("kustomization", os.path.basename(kustomization_file), kustomization_bytes)]
    structural: set = set()
    _strings_of(data, structural)
    values: list = []
    table: dict = {}
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
        pattern, raws = _file_values(entry, file_bytes)
        structural |= pattern.structural
        tokens.append(("file", entry, pattern.ident))
        append = tokens.append
        for raw in raws:
            if raw[0] in "\"'":
                key = (0, raw[1:-1])
                if len(raw) == 2:
                    append(("=", ""))
                    structural.add(key)
                    continue
            else:
                key = _plain_value(raw)
                if key[0] == "=":
                    append(key)
                    continue
            number = table.get(key)
            if number is None:
                number = table[key] = len(values)
                values.append(key[1])
            append(number * 2 + key[0])
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


def _shapes(root: str, items: list[tuple[str, str, Any]], *, lean: bool = False) -> list["Shape | Refused"]:
    """Shapes of ``items``; ``lean`` drops ``table`` and ``structural`` (None), which only a representative needs
    (``full_shape``), so a worker sends back a third of the data."""
    found: list[Shape | Refused] = []
    for folder, kustomization_file, data in items:
        try:
            shape = folder_shape(Path(root), folder, kustomization_file, data)
        except Refused as exc:
            found.append(exc)
            continue
        if lean:
            shape.table = shape.structural = None
        found.append(shape)
    return found


def full_shape(root: Path, folder: str, kustomization_file: str, data: Any, shape: Shape) -> Shape:
    """``shape`` with its table and structural values (recomputed when it came lean from a worker); Refused when
    the folder no longer has that shape."""
    if shape.table is not None:
        return shape
    again = folder_shape(root, folder, kustomization_file, data)
    if again.digest != shape.digest:
        raise Refused(f"{folder} changed while it was validated")
    return again


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
