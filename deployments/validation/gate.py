"""The validation gate: check the tree written into the GitOps working copy before it is committed.

1. every kustomization root builds with the real ``kubectl kustomize`` (top-level roots only, 2 builds at a time);
2. every built object of a built-in kind validates against kubernetes-validate's strict schemas;
3. every custom resource validates against its CRD's served version (CRDs from ``crd_dir``, plus CRDs the tree
   itself ships); a kind nobody defines is a problem;
4. no two Ingresses of one environment claim the same host (``ingress-host-duplicate``, hosts.py);
5. with ``read_base`` (the file at the repository's HEAD), no change an API server refuses after creation
   (change_safety.py: immutable fields, shrinking volumes, …);
6. Docker Compose environment folders get their own checks (compose.py: Compose schema, project networks,
   Traefik configuration, secret references, shell scripts);
7. each problem names the source file the object came from.
Folders of a pure aggregate that are equivalent (classes.py: same kustomization, same shape of resources) are
built once; the others' objects are derived from that build and checked like built ones. Every run builds a
sample of each class for real and compares; a difference is logged as an error and every folder of the class is
built. Class templates and the parsed CRDs are kept on disk in the validation cache (``validation_cache_dir``).
YAML files outside every kustomization folder (plain folders that Flux or Argo CD apply as they are) are checked
the same way, without a build.
"""

import concurrent.futures
import logging
import math
import os
import posixpath
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from deployments.validation.change_safety import ObjectId, change_safety_check
from deployments.validation.classes import (
    Refused,
    Shape,
    TemplateCache,
    canonical,
    concretise,
    folder_shapes,
    full_shape,
    kubectl_identity,
    template_from,
    template_function,
)
from deployments.validation.compose import compose_tree_validate
from deployments.validation.hosts import HostClaims, environment_of
from deployments.validation.kustomize import (
    BuildResult,
    BuildUnit,
    SourceIndex,
    Tree,
    affected,
    ancestors,
    chunks,
    display_dir,
    kubectl_path,
    object_key,
    tree_scan_trusted,
    unit_build,
)
from deployments.validation.problems import TreeValidationError, ValidationProblem
from deployments.validation.schemas import (
    CRDCatalog,
    ObjectChecker,
    crd_catalog_load,
    crds_from_documents,
    kubernetes_schemas,
    object_label,
    split_api_version,
)
from deployments.validation.store import caches_load, caches_save, misses
from deployments.validation.trust import trusting

logger = logging.getLogger(__name__)

MAX_PARALLEL_BUILDS = 2  # the portal's machines have 2 cores; kustomize is CPU-bound
# Members of an equivalence class built for real on every run to verify its template: this share, at least 2.
CLASS_SAMPLE_SHARE = 0.01
CLASS_SAMPLE_MIN = 2
# Store the per-process caches on disk after a validation that read at least this many folders/files anew.
CACHE_SAVE_MISSES = 200


def tree_validate(*, root: Path, paths: Iterable[str] | None = None, kubectl: str | None = None,
                  crd_dir: str | Path | None = None, kubernetes_version: str | None = None,
                  progress: Callable[[str], None] | None = None,
                  read_base: Callable[[str], bytes | None] | None = None,
                  replacements: Collection[ObjectId] = (),
                  cache_dir: str | Path | None = None,
                  unchanged_since: str | None = None) -> list[ValidationProblem]:
    """Problems of the tree under ``root`` (none: it may be committed).

    ``paths`` (repository-relative changed files or folders) limits the work to the roots they affect: a root is
    affected when a changed path lies under it or under a folder it includes, directly or through other roots.
    Of an aggregate that only lists other kustomization folders, just the listed folders the change affects are
    built. ``None`` checks everything.

    ``read_base(path) -> bytes | None`` returns a file as committed at the repository's HEAD (None: not there);
    with it, the changed files are compared with HEAD by the change-safety check (change_safety.py), and
    ``replacements`` lists the (API group, kind, namespace, name) of objects whose replacement was explicitly
    confirmed. Without it (a first render, a preview) that check is skipped.

    ``cache_dir`` holds class templates and parsed CRDs (None: ``validation_cache_dir(root)``).

    ``unchanged_since`` (with ``paths``) is the state token of the tree (deployments.git.mirror.mirror_state)
    before ``paths`` were written: when the process's caches were verified at that state
    (trust.tree_verified, the worker's warm-up), cached listings, kustomizations and Ingress hosts of every other
    path are used without checking each file's state (trust.trusting).
    """
    changed = _normalize(paths, Path(root)) if paths is not None else None
    with trusting(Path(root), changed or set(), unchanged_since if changed is not None else None) as trust:
        return _tree_validate(root=root, changed=changed, kubectl=kubectl, crd_dir=crd_dir,
                              kubernetes_version=kubernetes_version, progress=progress, read_base=read_base,
                              replacements=replacements, cache_dir=cache_dir, trusted=trust.active)


def _tree_validate(*, root: Path, changed: set[str] | None, kubectl: str | None, crd_dir: str | Path | None,
                   kubernetes_version: str | None, progress: Callable[[str], None] | None,
                   read_base: Callable[[str], bytes | None] | None, replacements: Collection[ObjectId],
                   cache_dir: str | Path | None, trusted: bool = False) -> list[ValidationProblem]:
    started = time.monotonic()
    paths = changed

    def report(message: str) -> None:
        logger.debug("%s", message)
        if progress is not None:
            progress(message)

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"the tree to validate does not exist: {root}")  # never pass an empty check
    kubectl = kubectl or getattr(settings, "KUBECTL", "kubectl")
    crd_dir = getattr(settings, "CRD_SCHEMA_DIR", "") if crd_dir is None else crd_dir
    kubernetes = kubernetes_schemas(kubernetes_version or getattr(settings, "KUBERNETES_VERSION", "1.32"))
    cache = validation_cache_dir(root, cache_dir)
    caches_load(cache)  # a fresh process: start from the stored caches (each entry is checked before use)
    missed = misses()
    catalog = crd_catalog_load(crd_dir, cache)
    if catalog is None:
        where = f"{crd_dir} is missing or holds no CRDs" if crd_dir else "no CRD schema folder is configured"
        report(f"Custom resources are not checked: {where} (CRD_SCHEMA_DIR).")
    checker = ObjectChecker(kubernetes, catalog)
    templates = TemplateCache(cache, kubectl_identity(shutil.which(kubectl) or kubectl))
    gate = _Gate(root=root, checker=checker, templates=templates, report=report)

    scan_started = time.monotonic()
    tree = tree_scan_trusted(root)
    report(f"Read the tree's kustomizations in {time.monotonic() - scan_started:.1f} s.")
    all_tops = tops = tree.top_level_roots()
    loose = tree.loose_files
    if paths is not None:
        changed_ancestors = {parent for path in changed for parent in ancestors(path)}
        tops = [top for top in tops if affected(tree.closure([top]), changed, changed_ancestors)]
        loose = [path for path in loose if affected([path], changed, changed_ancestors)]
        report(f"Validating what {len(changed)} changed path(s) affect: {len(tops)} of "
               f"{len(all_tops)} top-level kustomization root(s), {len(loose)} plain YAML file(s).")
    else:
        report(f"Validating the whole tree: {len(tops)} top-level of {len(tree.kustomizations)} kustomization "
               f"root(s), {len(loose)} plain YAML file(s).")

    units = gate.plan(tree, tops, changed=changed if paths is not None else None)
    if units:
        kubectl_path(kubectl)  # FileNotFoundError when it is missing: never a pass without builds
        gate.build_all(tree, units, kubectl=kubectl, report=report)
        gate.derive_classes(tree, kubectl=kubectl, report=report)
    for path in loose:
        gate.check_loose_file(tree, path)
    gate.check_deferred()
    if paths is not None:
        # Only some folders were built: the environment's other Ingresses come from their source files.
        for environment in sorted(gate.hosts.environments()):
            gate.hosts.add_sources(root, environment, skip_dirs=gate.built_dirs)
    gate.problems += gate.hosts.problems()
    if read_base is not None:
        changed_files = _changed_files(root, tree, changed if paths is not None else None)
        report(f"Checking {len(changed_files)} changed file(s) against HEAD for changes the API server refuses.")
        gate.problems += change_safety_check(
            changed=changed_files, read_new=lambda path: _read(root, path), read_base=read_base,
            list_new=lambda folder: _yaml_files(root, folder), replacements=replacements)
    # --- Docker Compose environments (not Kubernetes objects; checked by deployments/validation/compose.py) ---
    gate.problems += compose_tree_validate(
        root=root, changed=changed if paths is not None else None,
        schema_path=getattr(settings, "COMPOSE_SCHEMA_PATH", ""),
        shellcheck=getattr(settings, "SHELLCHECK", "shellcheck"), report=report)

    if misses() - missed >= CACHE_SAVE_MISSES:
        caches_save(cache)  # much was read anew: keep it for the next fresh process
    problems = sorted(set(gate.problems), key=lambda p: (p.file, p.rule, p.message))
    skipped = f", {checker.skipped} custom resource(s) not checked" if checker.skipped else ""
    derived = (f" and {gate.derived} folder(s) derived from {len(gate.jobs)} equivalence class(es)"
               if gate.derived else "")
    report(f"Validated {checker.checked} object(s) from {gate.builds} build(s){derived} in "
           f"{time.monotonic() - started:.1f} s{skipped}: {len(problems)} problem(s)."
           + ("" if paths is None else " Cached states of unchanged files: " + (
               "trusted (unchanged since the worker's warm-up checked them)." if trusted else "checked one by one.")))
    return problems


def tree_validate_or_raise(*, root: Path, paths: Iterable[str] | None = None, kubectl: str | None = None,
                           crd_dir: str | Path | None = None, kubernetes_version: str | None = None,
                           progress: Callable[[str], None] | None = None,
                           read_base: Callable[[str], bytes | None] | None = None,
                           replacements: Collection[ObjectId] = (),
                           cache_dir: str | Path | None = None, unchanged_since: str | None = None) -> None:
    """``tree_validate`` for the commit path: raises ``TreeValidationError`` when anything is wrong."""
    problems = tree_validate(root=root, paths=paths, kubectl=kubectl, crd_dir=crd_dir,
                             kubernetes_version=kubernetes_version, progress=progress, read_base=read_base,
                             replacements=replacements, cache_dir=cache_dir, unchanged_since=unchanged_since)
    if problems:
        raise TreeValidationError(problems)


def validation_cache_dir(root: Path, given: str | Path | None = None) -> Path:
    """Where the gate keeps what it may reuse across runs and processes (class templates, parsed CRDs; every entry
    is keyed by what it depends on): ``given``, else settings.VALIDATION_CACHE_DIR, else ``<mirror>/cache`` beside
    the validation mirror's tree (``<GITOPS_REPO_DIR>.validate/cache``), else a folder in the system's
    temporary directory."""
    if given is not None:
        return Path(given)
    configured = getattr(settings, "VALIDATION_CACHE_DIR", "")
    if configured:
        return Path(configured)
    root = Path(root)
    if root.name == "tree" and root.parent.name.endswith(".validate"):  # the validation mirror (git/mirror.py)
        return root.parent / "cache"
    return Path(tempfile.gettempdir()) / f"portal-validation-cache-{os.getuid()}"


def _read(root: Path, path: str) -> bytes | None:
    try:
        return (root / path).read_bytes()
    except (OSError, ValueError):
        return None


def _yaml_files(root: Path, folder: str) -> list[str]:
    """Repository-relative YAML files under ``folder`` ("" for the whole tree), hidden folders skipped."""
    found = []
    for current, dirnames, filenames in os.walk(root / folder if folder else root):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        rel = Path(current).relative_to(root).as_posix()
        found += [posixpath.join("" if rel == "." else rel, name) for name in sorted(filenames)
                  if name.endswith((".yaml", ".yml"))]
    return found


def _changed_files(root: Path, tree: Tree, changed: set[str] | None) -> list[str]:
    """The changed paths as files: a folder stands for the files under it (deleted files stay as given)."""
    if changed is None:
        return _yaml_files(root, "")
    files = set()
    for path in changed:
        if (root / path).is_dir():
            files.update(_yaml_files(root, path))
        else:
            files.add(path)
    return sorted(files)


def _normalize(paths: Iterable[str], root: Path) -> set[str]:
    normalized = set()
    for raw in paths:
        path = Path(raw)
        if path.is_absolute():
            try:
                path = path.relative_to(root)
            except ValueError:
                try:
                    path = path.resolve().relative_to(root.resolve())
                except ValueError:
                    continue  # outside the tree
        text = posixpath.normpath(path.as_posix()).strip("/")
        text = "" if text == "." else text
        if text != ".." and not text.startswith("../"):
            normalized.add(text)
    return normalized


class _Gate:
    """State of one validation: problems found, objects kept for the cross-build and tree-CRD checks."""

    def __init__(self, *, root: Path, checker: ObjectChecker, templates: TemplateCache | None = None,
                 report: Callable[[str], None] = lambda message: None) -> None:
        self.root = root
        self.report = report
        self.checker = checker
        self.templates = templates or TemplateCache(None, "")
        self.problems: list[ValidationProblem] = []
        self.builds = 0
        self.derived = 0  # folders whose objects came from a class template instead of a build
        self.refused = 0  # folders of pure aggregates that cannot stand for others (classes.Refused)
        self.mismatches = 0  # classes whose sample builds differed from the template
        self.jobs: list[_ClassJob] = []
        self._wanted: set[str] = set()  # folders built alone for a class: their objects are kept for comparison
        self._built: dict[str, list | None] = {}
        self._indexes: dict[int, SourceIndex] = {}
        # Per decomposed root: object id → label of the build that produced it (kustomize's duplicate-id check).
        self._ids: dict[str, dict[tuple[str, str, str, str], str]] = {}
        self._tree_crds: list = []
        self._deferred: list[tuple[dict, str]] = []
        self.hosts = HostClaims()
        # Kustomization folders whose objects came from a successful build (their Ingresses are claimed already).
        self.built_dirs: set[str] = set()

    def plan(self, tree: Tree, tops: list[str], *, changed: set[str] | None = None) -> list[BuildUnit]:
        """Build units for ``tops``. With ``changed``, a pure aggregate contributes only the folders the change
        affects: its other folders were checked when they changed, and rebuilding 5,000 unchanged projects for a
        one-project change would take a minute. (A folder the aggregate lists but lacks makes it impure, so a
        listing change is still caught by a whole build.)"""
        changed_ancestors = {parent for path in changed or () for parent in ancestors(path)}
        units: list[BuildUnit] = []
        for top in tops:
            kustomization = tree.kustomizations[top]
            if not kustomization.pure:
                units.append(BuildUnit(root=top, folders=[top], decomposed=False))
                continue
            folders, repeated = tree.leaves(top)
            if changed is not None:
                folders = [folder for folder in folders
                           if affected(tree.closure([folder]), changed, changed_ancestors)]
            for folder in repeated:
                self.problems.append(ValidationProblem(
                    kustomization.file, "kustomize-build",
                    f"kustomize build of {display_dir(top)} would fail: {display_dir(folder)} is included more than "
                    f"once, so its objects would be added twice."))
            self._ids[top] = {}
            folders, jobs = self._classify(tree, top, folders)
            for job in jobs:
                self.jobs.append(job)
                alone = ([job.rep[0]] if job.rep else []) + [folder for folder, _ in job.samples]
                self._wanted.update(alone)
                units += [BuildUnit(root=top, folders=[folder], decomposed=True) for folder in alone]
            units += [BuildUnit(root=top, folders=chunk, decomposed=True) for chunk in chunks(tree.root, folders)]
        return units

    def _classify(self, tree: Tree, top: str, folders: list[str]) -> tuple[list[str], list["_ClassJob"]]:
        """Split ``folders`` into those built as usual and equivalence classes worth deriving (classes.py): a
        class is derived when it has more members than its sample (with a stored template) or than its
        representative and sample (without)."""
        if len(folders) <= CLASS_SAMPLE_MIN:
            return folders, []  # no class could have more members than its sample: nothing to derive
        plain: list[str] = []
        groups: dict[str, list[tuple[str, Shape]]] = {}
        started = time.monotonic()
        shapes = folder_shapes(tree.root, [(folder, tree.kustomizations[folder].file, tree.kustomizations[folder].data)
                                           for folder in folders])
        for folder, shape in zip(folders, shapes, strict=True):
            if isinstance(shape, Refused):
                logger.debug("%s is built for real: %s", folder, shape)
                self.refused += 1
                plain.append(folder)
                continue
            groups.setdefault(shape.digest, []).append((folder, shape))
        jobs = []
        for digest, members in groups.items():
            sample_size = max(CLASS_SAMPLE_MIN, math.ceil(len(members) * CLASS_SAMPLE_SHARE))
            template = self.templates.get(digest) if len(members) > sample_size else None
            if template is not None:
                jobs.append(_ClassJob(top, digest, members, None, random.sample(members, sample_size), template))
            elif len(members) > 1 + sample_size:
                rep, rest = members[0], members[1:]
                jobs.append(_ClassJob(top, digest, members, rep, random.sample(rest, sample_size), None))
            else:
                plain += [folder for folder, _ in members]
        if jobs:
            self.report(f"Sorted {len(folders)} folder(s) of {display_dir(top)} into equivalence classes in "
                        f"{time.monotonic() - started:.1f} s: {sum(len(job.members) for job in jobs)} in "
                        f"{len(jobs)} class(es) to derive, {len(plain)} to build.")
        return plain, jobs

    def derive_classes(self, tree: Tree, *, kubectl: str, report: Callable[[str], None]) -> None:
        """Objects of every class member not built: the template (stored, or made from the representative's
        build) with the member's values, checked like built objects, once the sample builds equal the template's
        objects for those members. Otherwise every member not built yet is built for real."""
        fallback: dict[str, list[str]] = {}
        started, checked = time.monotonic(), self.checker.checked
        for job in self.jobs:
            alone = {folder for folder, _ in job.samples} | ({job.rep[0]} if job.rep else set())
            others = [(folder, shape) for folder, shape in job.members if folder not in alone]
            template = job.template
            if template is None:
                built = self._built.get(job.rep[0])
                if built is None:  # the representative's build failed (reported): its class is built for real
                    fallback.setdefault(job.top, []).extend(folder for folder, _ in others)
                    continue
                try:
                    kustomization = tree.kustomizations[job.rep[0]]
                    template = template_from(built, full_shape(tree.root, job.rep[0], kustomization.file,
                                                               kustomization.data, job.rep[1]))
                except Refused as exc:
                    logger.debug("No template from %s: %s", job.rep[0], exc)
                    fallback.setdefault(job.top, []).extend(folder for folder, _ in others)
                    continue
            differing = [folder for folder, shape in job.samples
                         if self._built.get(folder) is None
                         or canonical(concretise(template, shape.values)) != canonical(self._built[folder])]
            if differing:
                self.mismatches += 1
                message = (f"Equivalence check failed: the real build of {display_dir(differing[0])} differs from "
                           f"the objects derived for it ({len(differing)} of {len(job.samples)} sampled folder(s) "
                           f"differ); building all {len(job.members)} folders of its class for real.")
                logger.error("%s", message)
                report(message)
                self.templates.drop(job.digest)
                fallback.setdefault(job.top, []).extend(folder for folder, _ in others)
                continue
            if job.template is None:
                self.templates.put(job.digest, template)
            build = template_function(template)
            for folder, shape in others:
                self.derived += 1
                self._take(tree, BuildResult(BuildUnit(root=job.top, folders=[folder], decomposed=True),
                                             build(shape.values)))
        if self.derived:
            report(f"Derived and checked {self.checker.checked - checked} object(s) of {self.derived} folder(s) in "
                   f"{time.monotonic() - started:.1f} s.")
        units = [BuildUnit(root=top, folders=chunk, decomposed=True)
                 for top, folders in fallback.items() for chunk in chunks(tree.root, folders)]
        if units:
            self.build_all(tree, units, kubectl=kubectl, report=report)

    def build_all(self, tree: Tree, units: list[BuildUnit], *, kubectl: str, report: Callable[[str], None]) -> None:
        total, done, next_report = len(units), 0, 0.1
        report(f"Building {total} kustomize unit(s), {MAX_PARALLEL_BUILDS} at a time.")
        with tempfile.TemporaryDirectory(prefix="portal-validate-") as scratch, \
                concurrent.futures.ThreadPoolExecutor(max_workers=MAX_PARALLEL_BUILDS) as pool:
            counter = iter(range(1, 1_000_000_000))

            def submit(unit: BuildUnit) -> concurrent.futures.Future:
                return pool.submit(unit_build, unit, root=tree.root, kubectl=kubectl, scratch=Path(scratch),
                                   number=next(counter))

            pending = {submit(unit) for unit in units}
            while pending:
                finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    result: BuildResult = future.result()
                    self.builds += 1
                    if result.objects is None and len(result.unit.folders) > 1:
                        # One folder broke the chunk: build its folders one by one to name it and check the rest.
                        more = [BuildUnit(root=result.unit.root, folders=[folder], decomposed=True)
                                for folder in result.unit.folders]
                        total += len(more)
                        pending |= {submit(unit) for unit in more}
                        continue
                    done += 1
                    self._take(tree, result)
                    if total >= 10 and done / total >= next_report and done < total:
                        report(f"Built {done} of {total} kustomize unit(s); {self.checker.checked} object(s) checked.")
                        next_report = done / total + 0.1

    def _take(self, tree: Tree, result: BuildResult) -> None:
        unit = result.unit
        if len(unit.folders) == 1 and unit.folders[0] in self._wanted:
            self._built[unit.folders[0]] = result.objects
        root_file = tree.kustomizations[unit.root].file
        if result.objects is None:
            where = f" in {display_dir(unit.folders[0])}" if unit.decomposed else ""
            self.problems.append(ValidationProblem(
                root_file, "kustomize-build", f"kustomize build of {display_dir(unit.root)} failed{where}: "
                                              f"{result.error}"))
            return
        index = SourceIndex(tree, unit.folders)
        environment = environment_of(unit.root)
        ids = self._ids.get(unit.root) if unit.decomposed else None
        for obj in result.objects:
            if ids is not None and isinstance(obj, dict):
                key = object_key(obj)
                first = ids.setdefault(key, unit.label)
                if first != unit.label:
                    source = index.locate(obj) or root_file
                    self.problems.append(ValidationProblem(
                        source, "kustomize-build",
                        f"kustomize build of {display_dir(unit.root)} would fail: {object_label(obj)} is defined "
                        f"more than once (in the builds of {first} and {unit.label})."))
            self._check(obj, lambda o, index=index: index.locate(o) or root_file, environment=environment)
        self.built_dirs |= tree.closure(unit.folders)

    def _check(self, obj: Any, locate: Callable[[dict], str], *, environment: str | None = None) -> None:
        if isinstance(obj, dict) and obj.get("kind") == "Ingress":
            if environment is not None:
                # The unit lies inside one environment's folder: its source file is looked up only for a problem.
                self.hosts.add_object(obj, lambda obj=obj: locate(obj), environment=environment)
            else:
                self.hosts.add_object(obj, locate(obj))
        if isinstance(obj, dict) and obj.get("kind") == "CustomResourceDefinition" \
                and split_api_version(str(obj.get("apiVersion", "")))[0] == "apiextensions.k8s.io":
            self._tree_crds += crds_from_documents([obj], "the tree")
        for rule, message in self.checker.check(obj):
            if rule == "unknown-kind" and self.checker.crds is not None:
                # The tree may ship the CRD itself; decide once every build is in.
                self._deferred.append((obj, locate(obj)))
                continue
            self.problems.append(ValidationProblem(locate(obj), rule, message))

    def check_loose_file(self, tree: Tree, path: str) -> None:
        documents = tree.read_documents(path)
        if documents is None:
            self.problems.append(ValidationProblem(path, "yaml", _yaml_error(tree.root / path)))
            return
        for document in documents:
            # Plain folders may hold non-Kubernetes YAML (values, notes); only objects are checked.
            if isinstance(document, dict) and "apiVersion" in document and "kind" in document:
                self._check(document, lambda _obj: path)

    def check_deferred(self) -> None:
        if not self._deferred:
            return
        catalog: CRDCatalog = self.checker.crds.with_extra(self._tree_crds)
        checker = ObjectChecker(self.checker.kubernetes, catalog)
        for obj, source in self._deferred:
            for rule, message in checker.check(obj):
                self.problems.append(ValidationProblem(source, rule, message))
        self.checker.checked += checker.checked


class _ClassJob:
    """One equivalence class of a pure aggregate's folders: ``members`` [(folder, shape)], the representative
    built for its template (None when ``template`` came from the store) and the members sampled for real."""

    def __init__(self, top: str, digest: str, members: list[tuple[str, Shape]], rep: tuple[str, Shape] | None,
                 samples: list[tuple[str, Shape]], template: list | None) -> None:
        self.top = top
        self.digest = digest
        self.members = members
        self.rep = rep
        self.samples = samples
        self.template = template


def _yaml_error(path: Path) -> str:
    """Where the YAML breaks, without echoing the file's text (it may hold values that must not reach logs)."""
    try:
        list(yaml.safe_load_all(path.read_bytes()))
    except OSError as exc:
        return f"cannot read the file: {exc.strerror}"
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"not valid YAML{where}: {exc.problem or exc.context or 'parse error'}"
    except yaml.YAMLError as exc:
        return f"not valid YAML: {type(exc).__name__}"
    return "not valid YAML"
