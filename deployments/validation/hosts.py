"""Gate rule ``ingress-host-duplicate``: no two Ingresses of one environment claim the same host.

An Ingress controller routes a host to one backend; two Ingresses with the same ``spec.rules[].host`` (or the same
``spec.tls[].hosts`` entry) make the routing depend on which one the controller read first. The model layer refuses
such hosts (``projects.models.environment_host_conflicts``); this rule checks the tree itself, so a change made
outside the portal's forms, or two saves that raced, cannot reach the cluster.

An environment is the folder ``environments/<env>/``; its Ingresses are the built objects of the validation plus,
when only some folders were built, the Ingress documents of the environment's other files (read from the
sources, cached by file stat, so a one-project change does not re-parse thousands of unchanged projects).
"""

import os
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from deployments.validation.classes import Refused, fast_documents, is_string_everywhere
from deployments.validation.kustomize import kind_may_occur, structure_unchanged, walk_listed
from deployments.validation.problems import ValidationProblem
from deployments.validation.trust import trust_active, trusted

RULE = "ingress-host-duplicate"
_YAML_SUFFIXES = (".yaml", ".yml")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Source file (absolute path) → (stat key, [(namespace, name, hosts)]); kept while the file is unchanged.
_SOURCE_CACHE: dict[str, tuple[tuple[int, int, int], list[tuple[str, str, tuple[str, ...]]]]] = {}
_SOURCE_CACHE_MAX = 200_000
source_stats = {"read": 0}  # source files read (not answered from the cache)


def environment_of(path: str) -> str | None:
    """``environments/<env>/…`` → ``<env>``; None for paths outside every environment folder."""
    parts = path.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "environments" else None


def ingress_hosts(obj: dict) -> tuple[str, ...]:
    """The hosts an Ingress claims: ``spec.rules[].host`` and ``spec.tls[].hosts[]`` (sorted, without repeats)."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    hosts = set()
    for rule in spec.get("rules") or ():
        if isinstance(rule, dict) and isinstance(rule.get("host"), str) and rule["host"]:
            hosts.add(rule["host"])
    for tls in spec.get("tls") or ():
        if isinstance(tls, dict):
            hosts.update(host for host in tls.get("hosts") or () if isinstance(host, str) and host)
    return tuple(sorted(hosts))


def is_ingress(obj) -> bool:
    return (isinstance(obj, dict) and obj.get("kind") == "Ingress"
            and str(obj.get("apiVersion", "")).startswith(("networking.k8s.io/", "extensions/")))


@dataclass
class HostClaims:
    """Ingress host claims per environment, from built objects and from source files."""

    # (environment, host) → {(namespace, name): source file}
    claims: dict[tuple[str, str], dict[tuple[str, str], str]] = field(default_factory=dict)

    def add(self, environment: str, namespace: str, name: str, hosts: Iterable[str], source: str) -> None:
        for host in hosts:
            owners = self.claims.setdefault((environment, host), {})
            if not namespace and any(key[1] == name for key in owners):
                continue  # a source document without namespace: the built object already stands for it
            if namespace and ("", name) in owners:
                owners[(namespace, name)] = owners.pop(("", name))
                continue
            owners.setdefault((namespace, name), source)

    def add_object(self, obj: dict, source: "str | Callable[[], str]", *, environment: str | None = None) -> None:
        """Claim the hosts of a built Ingress. ``source`` is the file it came from, or a callable returning it
        (resolved only when a problem names it); ``environment`` defaults to the one ``source`` lies in."""
        if environment is None and isinstance(source, str):
            environment = environment_of(source)
        if environment is None or not is_ingress(obj):
            return
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        self.add(environment, str(metadata.get("namespace") or ""), str(metadata.get("name") or ""),
                 ingress_hosts(obj), source)

    def environments(self) -> set[str]:
        return {environment for environment, _ in self.claims}

    def add_sources(self, root: Path, environment: str, *, skip_dirs: Collection[str] = (),
                    files: list[tuple[str, str, str]] | None = None) -> None:
        """Add the Ingress documents of every YAML file under ``environments/<environment>/``, except files directly
        in ``skip_dirs`` (repository-relative kustomization folders whose built objects were added already).
        ``files``: ``source_files(root, environment)`` when the caller has it already.

        When the active trust names the state the environment's claims were indexed at (source_files_remember) and
        the change only rewrote files in place, only the hosts the change can touch are replayed: the hosts of the
        changed files and of the built folders' files then and now, the hosts of the built objects, and every host
        claimed twice or more then. Each is replayed in the order of the walk, so its owners are what a walk of
        every file would give; a host outside those has one claim, which no problem can come from."""
        if files is None:
            indexed = _indexed_claims(root, environment)
            if indexed is not None:
                self._add_changed_sources(environment, *indexed, skip_dirs=skip_dirs)
                return
        for current, relative, full in source_files(root, environment) if files is None else files:
            if skip_dirs and current in skip_dirs:
                continue
            for namespace, name, hosts in _source_ingresses(full):
                self.add(environment, namespace, name, hosts, relative)

    def _add_changed_sources(self, environment: str, files: list[tuple[str, str, str]], index: "_HostIndex",
                             changed: list[int], *, skip_dirs: Collection[str]) -> None:
        dirty = set(changed)
        for folder in skip_dirs:  # replaced by the folder's built objects, added already
            dirty.update(index.in_folder.get(folder, ()))
        now: dict[int, list[tuple[str, str, tuple[str, ...]]]] = {}
        for position in changed:
            current, _relative, full = files[position]
            if not (skip_dirs and current in skip_dirs):
                now[position] = _source_ingresses(full)  # stat-checked: the file changed
        hosts = set(index.shared)
        for position in dirty:
            hosts.update(index.hosts_of.get(position, ()))
        for claims in now.values():
            for _namespace, _name, claimed in claims:
                hosts.update(claimed)
        hosts.update(host for claimed_in, host in self.claims if claimed_in == environment)
        for host in hosts:
            entries = [entry for entry in index.by_host.get(host, ()) if entry[0] not in dirty]
            entries += [(position, namespace, name) for position, claims in now.items()
                        for namespace, name, claimed in claims if host in claimed]
            entries.sort(key=lambda entry: entry[0])  # stable: a file's documents stay in their order
            for position, namespace, name in entries:
                self.add(environment, namespace, name, (host,), files[position][1])

    def problems(self) -> list[ValidationProblem]:
        found = []
        for (environment, host), owners in sorted(self.claims.items()):
            if len(owners) < 2:
                continue
            listed = sorted((key, source() if callable(source) else source) for key, source in owners.items())
            described = ", ".join(f"Ingress {namespace or '?'}/{name} ({source})"
                                  for (namespace, name), source in listed)
            found.append(ValidationProblem(
                listed[-1][1], RULE,
                f"host {host} is claimed by {len(listed)} Ingresses in environment {environment}: {described}. "
                "One host routes to one backend; change the slug or directory of one project."))
        return found


# The source files of an environment as a complete pass listed them at a verified state of the tree (trust.py):
# (root, environment) → (state, [(folder, repository-relative file, absolute file)], indexes of the files that held
# an Ingress then, {repository-relative file: index}).
_FILES: dict[tuple[str, str], tuple[str, list[tuple[str, str, str]], list[int], dict[str, int]]] = {}


def source_files(root: Path, environment: str, *, every: bool = False) -> list[tuple[str, str, str]]:
    """The YAML files under ``environments/<environment>/`` that may hold Ingresses (kustomization files left out):
    [(repository-relative folder, repository-relative file, absolute file)] in the order of a walk. When the active
    trust names the state they were kept at and the change since only rewrote files in place, they come from that
    listing, and (unless ``every``) only those that held an Ingress then or changed since."""
    trusted_listing = _trusted_listing(root, environment)
    if trusted_listing is not None:
        (_state, files, claiming, _index_of), changed = trusted_listing
        if every:
            return files
        return [files[index] for index in sorted({*claiming, *changed})]
    base = str(root)
    found = []
    for current, _dirnames, filenames in walk_listed(Path(root), f"environments/{environment}"):
        for filename in filenames:
            if filename.endswith(_YAML_SUFFIXES) and not filename.startswith("kustomization."):
                relative = f"{current}/{filename}"
                found.append((current, relative, os.path.join(base, relative)))
    return found


@dataclass
class _HostIndex:
    """An environment's Ingress host claims from its source files at one state of the tree, by host."""

    by_host: dict[str, list[tuple[int, str, str]]]  # host → [(file position in the listing, namespace, name)]
    hosts_of: dict[int, tuple[str, ...]]  # file position → the hosts its documents claim
    in_folder: dict[str, list[int]]  # repository-relative folder → positions of its claiming files
    shared: set[str]  # hosts with two or more claims (a duplicate, or one Ingress with and without namespace)


# (root, environment) → the claims index of the files _FILES keeps for the same state.
_HOSTS: dict[tuple[str, str], _HostIndex] = {}


def _host_index(files: list[tuple[str, str, str]], claiming: list[int]) -> "_HostIndex | None":
    """The claims of the ``claiming`` files as the source cache holds them; None when one is not cached."""
    by_host: dict[str, list[tuple[int, str, str]]] = {}
    hosts_of: dict[int, tuple[str, ...]] = {}
    in_folder: dict[str, list[int]] = {}
    for position in claiming:
        current, _relative, full = files[position]
        cached = _SOURCE_CACHE.get(full)
        if cached is None:
            return None
        claimed = []
        for namespace, name, hosts in cached[1]:
            for host in hosts:
                by_host.setdefault(host, []).append((position, namespace, name))
                claimed.append(host)
        hosts_of[position] = tuple(claimed)
        in_folder.setdefault(current, []).append(position)
    shared = {host for host, entries in by_host.items() if len(entries) > 1}
    return _HostIndex(by_host=by_host, hosts_of=hosts_of, in_folder=in_folder, shared=shared)


def _host_index_update(index: _HostIndex, files: list[tuple[str, str, str]],
                       positions: Iterable[int]) -> "_HostIndex | None":
    """``index`` (of ``files``) with the claims of the files at ``positions`` taken again from the source cache: what
    _host_index of every claiming file gives, for the cost of those files (a job's few files, not 80,000). A new
    index: ``index`` itself is left as it was (a validation may be reading it). None when one is not cached."""
    by_host, hosts_of, in_folder, shared = dict(index.by_host), dict(index.hosts_of), dict(index.in_folder), set(
        index.shared)
    for position in positions:
        current, _relative, full = files[position]
        cached = _SOURCE_CACHE.get(full)
        if cached is None:
            return None
        touched = set(hosts_of.pop(position, ()))
        claims = [(namespace, name, host) for namespace, name, hosts in cached[1] for host in hosts]
        touched.update(host for _namespace, _name, host in claims)
        for host in touched:
            entries = [entry for entry in by_host.get(host, ()) if entry[0] != position]
            entries += [(position, namespace, name) for namespace, name, claimed in claims if claimed == host]
            entries.sort(key=lambda entry: entry[0])  # stable: a file's documents stay in their order
            if entries:
                by_host[host] = entries
            else:
                by_host.pop(host, None)
            if len(entries) > 1:
                shared.add(host)
            else:
                shared.discard(host)
        folder = [kept for kept in in_folder.get(current, ()) if kept != position]
        if cached[1]:  # the file claims (Ingresses, even without hosts), as _host_index lists it
            hosts_of[position] = tuple(host for _namespace, _name, host in claims)
            folder = sorted([*folder, position])
        if folder:
            in_folder[current] = folder
        else:
            in_folder.pop(current, None)
    return _HostIndex(by_host=by_host, hosts_of=hosts_of, in_folder=in_folder, shared=shared)


def _trusted_listing(root: Path, environment: str):
    """(what source_files_remember kept for the environment, positions of the files changed since) when the
    active trust names the state it was kept at and the change only rewrote files in place; else None."""
    trust = trust_active()
    kept = _FILES.get((str(root), environment))
    if trust is None or kept is None or kept[0] != trust.since or not structure_unchanged():
        return None
    index_of = kept[3]
    return kept, sorted(index_of[path] for path in trust.paths if path in index_of)


def _indexed_claims(root: Path, environment: str):
    """(files, index, positions of the changed files) for add_sources when the environment's claims were indexed
    at the state the active trust names (_trusted_listing); else None."""
    index = _HOSTS.get((str(root), environment))
    trusted_listing = _trusted_listing(root, environment) if index is not None else None
    if trusted_listing is None:
        return None
    (_state, files, _claiming, _index_of), changed = trusted_listing
    return files, index, changed


def _may_claim(full: str) -> bool:
    """Whether the source file ``full`` held an Ingress when read into the cache, or is not cached (unknown)."""
    cached = _SOURCE_CACHE.get(full)
    return cached is None or bool(cached[1])


def source_files_remember(root: Path, environment: str, state: str | None,
                          files: list[tuple[str, str, str]] | None, *,
                          changed: Collection[str] | None = None) -> None:
    """Keep ``files`` (``source_files(root, environment, every=True)`` listed while the tree was in ``state``, their
    Ingresses read into the cache) for ``source_files``, with their host claims indexed by host (add_sources).

    ``changed``: the repository-relative paths rewritten in place since the state kept before, when ``files`` is
    the listing kept then (the same list: a change that only rewrote files, trust.trusting). Only those files'
    claims are indexed again; the result is the index of every file all the same."""
    key = (str(root), environment)
    index = _HOSTS.pop(key, None)
    kept = _FILES.get(key)
    if state and files is not None:
        if changed is not None and kept is not None and kept[1] is files and index is not None:
            index_of = kept[3]
            positions = sorted({index_of[path] for path in changed if path in index_of})
            claiming = kept[2]
            if positions:
                now = {position for position in positions if _may_claim(files[position][2])}
                claiming = sorted({*(position for position in claiming if position not in positions), *now})
            _FILES[key] = (state, files, claiming, index_of)
            index = _host_index_update(index, files, positions)
        else:
            claiming = [position for position, (_current, _relative, full) in enumerate(files) if _may_claim(full)]
            _FILES[key] = (state, files, claiming,
                           {relative: position for position, (_c, relative, _f) in enumerate(files)})
            index = _host_index(files, claiming)
        if index is not None:
            _HOSTS[key] = index
    else:
        _FILES.pop(key, None)


def _source_ingresses(full: str) -> list[tuple[str, str, tuple[str, ...]]]:
    cached = _SOURCE_CACHE.get(full)
    if cached is not None and trusted(full):  # unchanged since a verified state of the tree (trust.trusting)
        return cached[1]
    try:
        stat = os.stat(full)
    except OSError:
        _SOURCE_CACHE.pop(full, None)
        return []
    key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    if cached is not None and cached[0] == key:
        return cached[1]
    found = []
    source_stats["read"] += 1
    try:
        data = Path(full).read_bytes()
        if kind_may_occur(data, "Ingress"):  # NetworkPolicies name "Ingress" too: only a kind key counts
            found = _fast_ingresses(data)
            if found is None:
                found = _ingresses(yaml.load_all(data, Loader=_Loader))
    except (OSError, yaml.YAMLError):
        found = []  # the build or the YAML check reports the file
    if len(_SOURCE_CACHE) >= _SOURCE_CACHE_MAX:
        _SOURCE_CACHE.clear()
    _SOURCE_CACHE[full] = (key, found)
    return found


def _ingresses(documents) -> list[tuple[str, str, tuple[str, ...]]]:
    found = []
    for document in documents:
        if is_ingress(document):
            metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
            found.append((str(metadata.get("namespace") or ""), str(metadata.get("name") or ""),
                          ingress_hosts(document)))
    return found


def _fast_ingresses(data: bytes) -> list[tuple[str, str, tuple[str, ...]]] | None:
    """The Ingresses of a source file read with the fast parser (classes.fast_documents), or None when PyYAML must
    read it: the parser refused, a merge key, or a name or host PyYAML could read as another type."""
    if b"<<" in data:
        return None
    try:
        found = _ingresses(fast_documents(data, "source"))
    except Refused:
        return None
    for namespace, name, hosts in found:
        if not all(is_string_everywhere(text) for text in (namespace, name, *hosts)):
            return None
    return found
