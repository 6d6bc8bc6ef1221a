"""The kustomization graph of a GitOps tree, the builds that cover it, and where built objects come from.

Every folder with a kustomization file is a root. Roots include other roots through ``resources``,
``components`` (and the deprecated ``bases``); kustomize builds each included folder as its own kustomization,
so building the *top-level* roots (those no root includes) covers every nested one.

One exception, measured with kubectl 1.32 / kustomize 5.5: kustomize's cost grows faster than linearly with the
number of objects in one build (4,000 ConfigMaps in 200 folders: 16 s; 20,000 in 1,000 folders: 15 minutes),
while a build of 100 small folders (400 objects) takes 0.4 s. A *pure aggregate* – a kustomization that only
lists other kustomization folders under ``resources``, with no transformer of its own – outputs exactly the union
of its folders, so it is built as chunks of folders (a scratch kustomization outside the tree lists them) and
the one check kustomize would add across them, no object defined twice, is made here. A chunk holds up to
CHUNK_FOLDERS folders or about CHUNK_OBJECTS objects (counted from the top-level ``kind:`` lines of the folder's
files), since kustomize's cost per object grows with the build (measured with kubectl 1.32: about 2 ms of CPU per
object up to 300 objects, 3 ms at 550, 4.5 ms at 1,400; kubectl's own start is about 70 ms).
"""

import os
import posixpath
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deployments.validation.trust import trust_active, trusted

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
YAML_SUFFIXES = (".yaml", ".yml")
INCLUDE_KEYS = ("resources", "components", "bases")
PURE_AGGREGATE_KEYS = {"apiVersion", "kind", "resources"}
# A chunk of a pure aggregate: big enough to amortize kubectl's start (~70 ms), small enough to stay linear.
CHUNK_FOLDERS = 100
CHUNK_OBJECTS = 200
BUILD_TIMEOUT_SECONDS = 900
WARM_TIMEOUT_SECONDS = 60  # kubectl_warm: an empty build takes 0.05-0.16 s
ERROR_MAX_CHARS = 2000
# kustomize appends a 10-character content hash to generated ConfigMap/Secret names.
GENERATED_HASH_RE = re.compile(r"-[a-z0-9]{10}$")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def yaml_documents(text: str | bytes) -> list[Any]:
    return [document for document in yaml.load_all(text, Loader=_Loader) if document is not None]


def _is_remote(entry: str) -> bool:
    return "://" in entry or entry.startswith(("git@", "github.com/", "gitlab.com/", "bitbucket.org/")) \
        or "?ref=" in entry


_JOINED: dict[tuple[str, str], str | None] = {}
_JOINED_MAX = 500_000


def _join(directory: str, entry: str) -> str | None:
    """Repository-relative path of ``entry`` written in ``directory``; None when it leaves the repository."""
    key = (directory, entry)
    found = _JOINED.get(key, key)
    if found is not key:
        return found
    if len(_JOINED) >= _JOINED_MAX:
        _JOINED.clear()
    found = _JOINED[key] = _join_uncached(directory, entry)
    return found


def _join_uncached(directory: str, entry: str) -> str | None:
    path = posixpath.normpath(posixpath.join(directory, entry.strip()))
    if path == ".":
        return ""
    if path == ".." or path.startswith(("../", "/")):
        return None
    return path


def ancestors(path: str) -> Iterable[str]:
    """``a/b/c`` → ``a/b/c``, ``a/b``, ``a``, ``""`` (the repository root)."""
    while path:
        yield path
        path = posixpath.dirname(path)
    yield ""


def display_dir(directory: str) -> str:
    return f"{directory}/" if directory else "./"


@dataclass
class Kustomization:
    dir: str
    file: str
    data: dict | None = None
    includes: list[str] = field(default_factory=list)
    pure: bool = False


@dataclass
class Tree:
    """What lies under the root: kustomizations by folder and the YAML files outside every kustomization folder
    (Flux applies such plain folders as they are; Argo CD as a directory source)."""

    root: Path
    kustomizations: dict[str, Kustomization]
    loose_files: list[str]
    _documents: dict[str, list[Any] | None] = field(default_factory=dict)

    def read_documents(self, path: str) -> list[Any] | None:
        """YAML documents of a repository file (cached); None when it cannot be read or parsed."""
        if path not in self._documents:
            try:
                self._documents[path] = yaml_documents((self.root / path).read_bytes())
            except (OSError, yaml.YAMLError):
                self._documents[path] = None
        return self._documents[path]

    def top_level_roots(self) -> list[str]:
        """Roots no other root includes, plus one root of every include cycle (kustomize reports the cycle)."""
        included = {child for k in self.kustomizations.values() for child in k.includes if child != k.dir}
        tops = [d for d in sorted(self.kustomizations) if d not in included]
        reached = self.closure(tops)
        for directory in sorted(self.kustomizations):
            if directory not in reached:
                tops.append(directory)
                reached |= self.closure([directory])
        return tops

    def closure(self, roots: Iterable[str]) -> set[str]:
        """The roots and every kustomization folder they include, transitively."""
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            directory = stack.pop()
            if directory in seen:
                continue
            seen.add(directory)
            stack.extend(self.kustomizations[directory].includes)
        return seen

    def leaves(self, root: str) -> tuple[list[str], list[str]]:
        """The folders whose builds together equal ``root``'s build: pure aggregates are replaced by what they
        list, recursively. Returns (folders, folders listed more than once)."""
        leaves: list[str] = []
        seen: set[str] = set()
        repeated: list[str] = []

        def visit(directory: str, path: tuple[str, ...]) -> None:
            kustomization = self.kustomizations[directory]
            if not kustomization.pure or directory in path:
                if directory in seen:
                    repeated.append(directory)
                else:
                    seen.add(directory)
                    leaves.append(directory)
                return
            for child in kustomization.includes:
                visit(child, (*path, directory))

        visit(root, ())
        return leaves, repeated


# The tree a complete pass read at a verified state of the tree (trust.py): root → (state, Tree).
_SCANNED: dict[str, tuple[str, Tree]] = {}


def tree_remember(root: Path, state: str | None, tree: Tree | None) -> None:
    """Keep ``tree`` (``tree_scan(root)`` read while the tree was in ``state``) for ``tree_scan_trusted``."""
    if state and tree is not None:
        _SCANNED[str(root)] = (state, tree)
    else:
        _SCANNED.pop(str(root), None)


def structure_unchanged() -> bool:
    """Whether the active trust (trust.trusting) covers a change that only rewrote files in place: every changed
    path is a file that the tree held at the verified state and that is still a file, and none is a kustomization
    file (paths in hidden folders, which no walk enters, do not count). Such a change leaves the kustomization graph
    and the set of files as they were."""
    trust = trust_active()
    if trust is None or trust.files is None:
        return False
    for path in trust.paths:
        if path.startswith(".") or "/." in path:
            continue  # in a hidden folder (the portal's manifest): never read as part of the tree
        full = os.path.join(trust.tree, path)
        if posixpath.basename(path) in KUSTOMIZATION_FILES or path not in trust.files or not os.path.isfile(full) \
                or os.path.islink(full):
            return False
    return True


def tree_scan_trusted(root: Path) -> Tree:
    """``tree_scan(root)``, or the tree read at the verified state when the active trust names that state and the
    change since leaves the structure as it was (``structure_unchanged``)."""
    trust = trust_active()
    scanned = _SCANNED.get(str(root))
    if trust is not None and scanned is not None and scanned[0] == trust.since and structure_unchanged():
        kept = scanned[1]
        return Tree(root=Path(root), kustomizations=kept.kustomizations, loose_files=list(kept.loose_files))
    return tree_scan(root)


def tree_scan(root: Path, *, files: set[str] | None = None) -> Tree:
    """Find the kustomization roots and loose YAML files under ``root`` (hidden folders such as .git skipped).
    ``files``, when given, receives every file's repository-relative path."""
    found: dict[str, str] = {}
    loose: list[str] = []
    inside: set[str] = set()
    for rel, dirnames, filenames in walk_listed(root):
        if files is not None:
            files.update(posixpath.join(rel, name) for name in filenames)
        names = set(filenames)
        kustomization_file = next((name for name in KUSTOMIZATION_FILES if name in names), None)
        if kustomization_file:
            found[rel] = posixpath.join(rel, kustomization_file)
        if kustomization_file or rel in inside:
            inside.update(posixpath.join(rel, name) for name in dirnames)
        else:
            loose += [posixpath.join(rel, name) for name in filenames
                      if name.endswith(YAML_SUFFIXES) and not name.startswith(".")]
    tree = Tree(root=root, kustomizations={d: Kustomization(dir=d, file=f) for d, f in found.items()},
                loose_files=loose)
    for kustomization in tree.kustomizations.values():
        _read_kustomization(tree, kustomization)
    return tree


# Folder listings by absolute path: ((mtime_ns, inode) of the folder, [(subfolder, is_symlink)], [file]), sorted.
# A folder's mtime changes whenever an entry is added, removed or renamed in it, so a one-project change lists
# one or two folders again instead of the 80,000 files of a 10,000-project tree. A listing younger than
# LISTING_SETTLE_NS is not kept (a change within the file system's timestamp granularity could go unseen).
_LISTING_CACHE: dict[str, tuple[tuple[int, int], list[tuple[str, bool]], list[str]]] = {}
_LISTING_CACHE_MAX = 500_000
LISTING_SETTLE_NS = 2_000_000_000
listing_stats = {"listed": 0, "reused": 0, "parsed": 0}  # folders listed/reused, kustomizations parsed


def _listing(full: str) -> tuple[list[tuple[str, bool]], list[str]]:
    cached = _LISTING_CACHE.get(full)
    if cached is not None and trusted(full):  # unchanged since a verified state of the tree (trust.trusting)
        listing_stats["reused"] += 1
        return cached[1], cached[2]
    try:
        state = os.stat(full)
    except OSError:
        _LISTING_CACHE.pop(full, None)
        raise
    key = (state.st_mtime_ns, state.st_ino)
    if cached is not None and cached[0] == key:
        listing_stats["reused"] += 1
        return cached[1], cached[2]
    _LISTING_CACHE.pop(full, None)  # stale: never left behind for a later trusted use
    folders: list[tuple[str, bool]] = []
    files: list[str] = []
    with os.scandir(full) as entries:
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                folders.append((entry.name, entry.is_symlink()))
            else:
                files.append(entry.name)
    folders.sort()
    files.sort()
    listing_stats["listed"] += 1
    if time.time_ns() - state.st_mtime_ns > LISTING_SETTLE_NS:
        if len(_LISTING_CACHE) >= _LISTING_CACHE_MAX:
            _LISTING_CACHE.clear()
        _LISTING_CACHE[full] = (key, folders, files)
    return folders, files


def walk_listed(root: Path, start: str = "") -> Iterable[tuple[str, list[str], list[str]]]:
    """Like ``os.walk`` from ``root/start`` (top-down, sorted, hidden folders skipped, symlinked folders listed but
    not entered): (repository-relative folder, subfolders, files), with listings reused while a folder's mtime is
    unchanged. A folder that vanishes while walking is skipped."""
    base = str(root)
    stack = [start]
    while stack:
        rel = stack.pop()
        try:
            folders, files = _listing(os.path.join(base, rel) if rel else base)
        except OSError:
            continue
        visible = [(name, link) for name, link in folders if not name.startswith(".")]
        yield rel, [name for name, _ in visible], files
        stack.extend(reversed([posixpath.join(rel, name) if rel else name for name, link in visible if not link]))


# Parsed kustomization files by absolute path, kept while the file's (mtime, size, inode) stay the same. A worker
# validates after every run; re-parsing 5,000 unchanged project kustomizations each time would cost about a second.
_KUSTOMIZATION_CACHE: dict[str, tuple[tuple[int, int, int], list[Any] | None]] = {}
_KUSTOMIZATION_CACHE_MAX = 200_000


def _kustomization_documents(tree: Tree, path: str) -> list[Any] | None:
    full = str(tree.root / path)
    cached = _KUSTOMIZATION_CACHE.get(full)
    if cached is not None and trusted(full):  # unchanged since a verified state of the tree (trust.trusting)
        return cached[1]
    try:
        stat = os.stat(full)
    except OSError:
        _KUSTOMIZATION_CACHE.pop(full, None)
        return tree.read_documents(path)
    key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    if cached is not None and cached[0] == key:
        return cached[1]
    documents = tree.read_documents(path)
    listing_stats["parsed"] += 1
    if len(_KUSTOMIZATION_CACHE) >= _KUSTOMIZATION_CACHE_MAX:
        _KUSTOMIZATION_CACHE.clear()
    _KUSTOMIZATION_CACHE[full] = (key, documents)
    return documents


def _read_kustomization(tree: Tree, kustomization: Kustomization) -> None:
    # Read-only below: the cached documents are shared between validations.
    documents = _kustomization_documents(tree, kustomization.file)
    data = documents[0] if documents and len(documents) == 1 and isinstance(documents[0], dict) else None
    kustomization.data = data
    if data is None:
        return  # the build reports what is wrong with it
    pure = set(data) <= PURE_AGGREGATE_KEYS and data.get("kind", "Kustomization") == "Kustomization"
    for key in INCLUDE_KEYS:
        entries = data.get(key) or []
        if not isinstance(entries, list):
            pure = False
            continue
        for entry in entries:
            target = _join(kustomization.dir, entry) if isinstance(entry, str) and not _is_remote(entry) else None
            if target is not None and target in tree.kustomizations:
                kustomization.includes.append(target)
            else:
                pure = False  # a file, a remote base or something missing: only kustomize itself can build that
    kustomization.pure = pure


def affected(directories: Iterable[str], changed: set[str], changed_ancestors: set[str]) -> bool:
    """Whether a changed path lies under one of ``directories`` (or a changed folder contains one of them)."""
    if "" in changed:
        return any(True for _ in directories)
    for directory in directories:
        if directory in changed_ancestors:
            return True
        while directory:  # the folder and its parents (ancestors() without a generator: 10,000 folders a run)
            if directory in changed:
                return True
            directory = directory.rpartition("/")[0]
    return False


def folder_weight(root: Path, folder: str) -> int:
    """About how many objects a folder's own files hold: one top-level ``kind:`` line per YAML document."""
    count = 0
    try:
        with os.scandir(root / folder) as entries:
            for entry in entries:
                if entry.name.endswith(YAML_SUFFIXES) and entry.name not in KUSTOMIZATION_FILES and entry.is_file():
                    with open(entry.path, "rb") as handle:
                        data = handle.read()
                    count += data.count(b"\nkind:") + data.startswith(b"kind:")
    except OSError:
        pass
    return max(count, 1)


def chunks(root: Path, folders: list[str]) -> list[list[str]]:
    """Split the folders of a pure aggregate into build chunks (see the module docstring)."""
    result: list[list[str]] = []
    current: list[str] = []
    weight = 0
    for folder in folders:
        folder_objects = folder_weight(root, folder)
        if current and (len(current) >= CHUNK_FOLDERS or weight + folder_objects > CHUNK_OBJECTS):
            result.append(current)
            current, weight = [], 0
        current.append(folder)
        weight += folder_objects
    if current:
        result.append(current)
    return result


# --- builds ---------------------------------------------------------------------------------------------------


@dataclass
class BuildUnit:
    """One ``kubectl kustomize`` run: a root itself, or a chunk of the folders of a pure aggregate root."""

    root: str
    folders: list[str]
    decomposed: bool

    @property
    def label(self) -> str:
        if not self.decomposed:
            return display_dir(self.root)
        if len(self.folders) == 1:
            return f"{display_dir(self.root)} ({display_dir(self.folders[0])})"
        return f"{display_dir(self.root)} ({len(self.folders)} folders from {display_dir(self.folders[0])})"


@dataclass
class BuildResult:
    unit: BuildUnit
    objects: list[Any] | None
    error: str = ""


def _clean_error(stderr: str, replacements: list[tuple[str, str]]) -> str:
    text = stderr.strip()
    match = re.search(r'err="(.*)"\s*$', text, re.DOTALL)  # klog's wrapper around kustomize's message
    if match:
        text = match.group(1).replace('\\"', '"').replace("\\n", "\n")
    text = re.sub(r"^(error|Error):\s*", "", text)
    for old, new in sorted(replacements, key=lambda pair: -len(pair[0])):
        text = text.replace(old, new)
    return text if len(text) <= ERROR_MAX_CHARS else text[: ERROR_MAX_CHARS - 1] + "…"


def kubectl_path(kubectl: str) -> str:
    """The executable ``kubectl`` names (a name on PATH or a path: settings.KUBECTL). Raises FileNotFoundError
    when there is none."""
    found = shutil.which(kubectl)
    if found is None:
        raise FileNotFoundError(f"kubectl not found: {kubectl!r} (settings.KUBECTL)")
    return found


def _kubectl_error(completed: subprocess.CompletedProcess, replacements: list[tuple[str, str]]) -> str:
    """What a failed kubectl run said (stderr, else stdout, else its exit status), cleaned by _clean_error."""
    return _clean_error(completed.stderr or completed.stdout or f"kubectl exited with {completed.returncode}",
                        replacements)


def unit_build(unit: BuildUnit, *, root: Path, kubectl: str, scratch: Path, number: int) -> BuildResult:
    """Run kubectl kustomize for one unit and parse its output. Paths in error messages become
    repository-relative (no machine paths in logs)."""
    real_root = root.resolve()
    replacements = [(f"{real_root}/", ""), (str(real_root), "."), (f"{root}/", ""), (str(root), ".")]
    if len(unit.folders) == 1:
        target = real_root / unit.folders[0] if unit.folders[0] else real_root
    else:
        # kustomize refuses absolute paths in resources; relative ones may leave the scratch folder.
        target = scratch / f"chunk-{number}"
        target.mkdir(parents=True, exist_ok=True)
        entries = []
        for folder in unit.folders:
            entry = os.path.relpath(real_root / folder, target)
            entries.append(entry)
            replacements.append((f"'{entry}'", f"'{folder}'"))
        (target / "kustomization.yaml").write_text(
            "resources:\n" + "".join(f"- {entry}\n" for entry in entries), encoding="utf-8")
        replacements += [(f"{target}/", ""), (str(target), display_dir(unit.root))]
    try:
        completed = subprocess.run([kubectl, "kustomize", str(target)], capture_output=True, text=True,
                                   timeout=BUILD_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return BuildResult(unit, None, f"kubectl kustomize did not finish within {BUILD_TIMEOUT_SECONDS} s")
    if completed.returncode != 0:
        return BuildResult(unit, None, _kubectl_error(completed, replacements))
    try:
        return BuildResult(unit, yaml_documents(completed.stdout))
    except yaml.YAMLError as exc:
        return BuildResult(unit, None, f"kustomize output is not YAML: {_clip_line(str(exc))}")


def kubectl_warm(kubectl: str) -> float:
    """Run ``kubectl kustomize`` once on an empty kustomization in a scratch folder, so kubectl's binary (57 MB for
    kubectl 1.32) is in the page cache before a job's first build. Measured here: the empty build took 0.05 s with
    the binary cached and 0.12-0.16 s after it was evicted; a fresh worker's first one-folder build took 0.29 s on
    a machine where kubectl had not run yet, 0.08-0.13 s otherwise. Returns the seconds it took.

    Raises FileNotFoundError when ``kubectl`` cannot be found, RuntimeError (kubectl's error text, clipped) when it
    fails or takes longer than WARM_TIMEOUT_SECONDS: either way a validation with a kustomization to build would
    fail (the worker reports it when it starts, and does not wait longer for it than that)."""
    found = kubectl_path(kubectl)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="portal-kubectl-warm-") as scratch:
        Path(scratch, "kustomization.yaml").write_text("resources: []\n", encoding="utf-8")
        try:
            completed = subprocess.run([found, "kustomize", scratch], capture_output=True, text=True,
                                       timeout=WARM_TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"kubectl kustomize of an empty kustomization did not finish within "
                               f"{WARM_TIMEOUT_SECONDS} s") from exc
    if completed.returncode != 0:
        raise RuntimeError(f"kubectl kustomize failed: {_kubectl_error(completed, [(scratch, '.')])}")
    return time.monotonic() - started


def _clip_line(text: str) -> str:
    return " ".join(text.split())[:300]


# --- where objects come from ----------------------------------------------------------------------------------


def object_key(obj: dict) -> tuple[str, str, str, str]:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return (str(obj.get("apiVersion", "")), str(obj.get("kind", "")), str(metadata.get("namespace") or ""),
            str(metadata.get("name") or ""))


@dataclass
class _Transform:
    namespace: str
    prefix: str
    suffix: str


class SourceIndex:
    """Source documents of some folders by (apiVersion, kind, namespace, name) as the build will name them
    (namespace/namePrefix/nameSuffix of the kustomizations on the way applied). Built on first use only, since
    most runs find nothing to map."""

    def __init__(self, tree: Tree, folders: list[str]) -> None:
        self.tree = tree
        self.folders = folders
        self._exact: dict[tuple[str, str, str, str], str] | None = None
        self._by_name: dict[tuple[str, str, str], str] = {}
        self._by_kind_name: dict[tuple[str, str], str] = {}
        self.unreadable: list[str] = []
        # Source files with the transforms on their way, found by walking the kustomizations; a file is parsed
        # only when an object of a kind its text names is looked up (an Ingress of every project is located for
        # the host check: parsing every file of 100 projects for it would cost more than the build).
        self._files: list[tuple[str, tuple[_Transform, ...]]] = []
        self._kinds_done: set[str] = set()

    def locate(self, obj: dict) -> str | None:
        if self._exact is None:
            self._exact = {}
            for folder in self.folders:
                self._walk(folder, (), set())
        api_version, kind, namespace, name = object_key(obj)
        if kind not in self._kinds_done:
            self._kinds_done.add(kind)
            self._index_kind(kind)
        for candidate in (name, GENERATED_HASH_RE.sub("", name)):
            found = self._exact.get((api_version, kind, namespace, candidate)) \
                or self._by_name.get((api_version, kind, candidate)) or self._by_kind_name.get((kind, candidate))
            if found:
                return found
        return None

    def _add(self, key: tuple[str, str, str, str], source: str) -> None:
        self._exact.setdefault(key, source)
        self._by_name.setdefault((key[0], key[1], key[3]), source)
        self._by_kind_name.setdefault((key[1], key[3]), source)

    def _walk(self, directory: str, outer: tuple[_Transform, ...], path: set[str]) -> None:
        kustomization = self.tree.kustomizations.get(directory)
        if kustomization is None or kustomization.data is None or directory in path:
            return
        data = kustomization.data
        chain = (_Transform(str(data.get("namespace") or ""), str(data.get("namePrefix") or ""),
                            str(data.get("nameSuffix") or "")), *outer)  # innermost first, as kustomize applies
        for key in INCLUDE_KEYS:
            entries = data.get(key) if isinstance(data.get(key), list) else []
            for entry in entries:
                target = _join(directory, entry) if isinstance(entry, str) and not _is_remote(entry) else None
                if target is None:
                    continue
                if target in self.tree.kustomizations:
                    self._walk(target, chain, path | {directory})
                elif (self.tree.root / target).is_file():
                    self._files.append((target, chain))
        for key, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
            generators = data.get(key) if isinstance(data.get(key), list) else []
            for generator in generators:
                if isinstance(generator, dict) and generator.get("name"):
                    namespace = generator.get("namespace") or ""
                    self._add(("v1", kind, *_apply(chain, str(namespace), str(generator["name"]))), kustomization.file)

    def _index_kind(self, kind: str) -> None:
        """Index the objects of ``kind`` from the source files whose text may hold one (see kind_may_occur), in
        the order kustomize reads them."""
        for path, chain in self._files:
            try:
                data = (self.tree.root / path).read_bytes()
            except OSError:
                data = None
            if data is None or kind_may_occur(data, kind):
                self._index_file(path, chain, kind)

    def _index_file(self, path: str, chain: tuple[_Transform, ...], kind: str) -> None:
        documents = self.tree.read_documents(path)
        if documents is None:
            if path not in self.unreadable:
                self.unreadable.append(path)
            return
        for document in documents:
            items = document.get("items") if isinstance(document, dict) and document.get("kind") == "List" \
                else [document]
            for item in items if isinstance(items, list) else ():
                if isinstance(item, dict) and item.get("kind") == kind:
                    api_version, _, namespace, name = object_key(item)
                    self._add((api_version, kind, *_apply(chain, namespace, name)), path)


def kind_may_occur(data: bytes, kind: str) -> bool:
    """Whether YAML text ``data`` may hold an object of ``kind``: a ``kind:`` key followed by that name, plain or
    quoted. False only when no such key is written (a kind written with YAML escapes is not recognised; such a file
    is still built and schema-checked, only not named as the source of a problem)."""
    pattern = rb"""kind["']?\s*:\s*["']?""" + re.escape(kind.encode()) + rb"(?![A-Za-z0-9])"
    return re.search(pattern, data) is not None


def _apply(chain: tuple[_Transform, ...], namespace: str, name: str) -> tuple[str, str]:
    for transform in chain:
        name = f"{transform.prefix}{name}{transform.suffix}"
        if transform.namespace:
            namespace = transform.namespace  # the outermost kustomization's namespace wins
    return namespace, name
