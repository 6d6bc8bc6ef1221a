"""The pure renderer: a TreeSnapshot in, render units out, each ``{repository-relative path: bytes}``.

Layout of the GitOps repository (GitOps habits: a base, per-environment overlays, ``clusters/<env>/`` entry
points for Argo CD or Flux):

    platform/base/                            shared Kustomize base of the platform (namespace tesslate)
    environments/<env>/platform/              the environment's overlay of that base
    environments/<env>/projects/              kustomization listing every active project folder
    environments/<env>/projects/proj-<uuid>/  one kustomization root per active project
    clusters/<env>/                           Argo CD AppProject/Application/ApplicationSet or Flux objects
    environments/<env>/{compose,secrets,scripts,systemd}/  Compose environments: one server that pulls this
                                              repository itself (see rendering/compose.py); no clusters/<env>/

Each unit's ``render`` reads nothing but the frozen data captured in its closure, and its fingerprint hashes
exactly that data plus the renderer version, so equal fingerprints give equal bytes. A project unit hashes its
project's render token instead (projects.models.RenderToken: database triggers replace it whenever anything the
project's render reads changes) with the environment part it reads; a lazy snapshot carries only (id, token) for
such projects, and their data is read (TreeSnapshot.load_projects, in one go through the units' ``prefetch``) only
for the units the git writer renders. ``tree_units`` only builds closures and hashes; the template work happens
when a unit's ``render`` is called, and projects that differ only in their names render once per call
(rendering/shapes.py).
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from deployments import domain
from deployments.rendering.clusters import ClusterEntry, render_cluster_entry
from deployments.rendering.common import PLATFORM_BASE_DIR, fingerprint, sha256
from deployments.rendering.compose import ComposeInput, render_compose_environment
from deployments.rendering.platform import render_platform_base, render_platform_overlay
from deployments.rendering.projects import ProjectEnvironment, project_paths, render_projects_index
from deployments.rendering.shapes import ProjectShapes
from deployments.rendering.snapshot import EnvironmentSnapshot, ProjectSnapshot, TreeSnapshot
from deployments.rendering.templating import RENDERER_VERSION


@dataclass(frozen=True)
class RenderUnit:
    """A folder of the repository and how to render it; the git writer skips units whose fingerprint it has."""

    key: str
    directory: str
    fingerprint: str
    render: Callable[[], dict[str, bytes]]
    # Paths the git writer never deletes while this unit exists, even with allow_deletions: a project still
    # active in the model keeps its Namespace and PVC (deleting them would let Argo CD / Flux prune its volume).
    essential: tuple[str, ...] = ()
    # The paths render() returns, known without rendering (None: render to know). A preview lists the files of
    # thousands of never-rendered projects from it and renders only the units of the page it shows.
    paths: Callable[[], tuple[str, ...]] | None = None
    # Units whose input is read only when rendered share one prefetch(keys): the git writer calls it once with
    # the keys of those it is about to render, so their input is read in a few queries, not one read per unit.
    prefetch: Callable[[list[str]], None] | None = None


class _LazyProjects:
    """The lazily read projects of one environment: read in one go for the units the writer renders (prefetch),
    one by one otherwise (a unit forced by a repair)."""

    def __init__(self, load: Callable, environment_id: int, env_name: str) -> None:
        self.load = load
        self.environment_id = environment_id
        self.prefix = f"env:{env_name}:project:"
        self.loaded: dict[str, ProjectSnapshot] = {}

    def __call__(self, keys: list[str]) -> None:
        ids = [key[len(self.prefix):] for key in keys if key.startswith(self.prefix)]
        missing = [pid for pid in ids if pid not in self.loaded]
        if missing:
            self.loaded.update(self.load(self.environment_id, missing))

    def render(self, render_project: ProjectShapes, project_id: str) -> dict[str, bytes]:
        if project_id not in self.loaded:
            self.loaded.update(self.load(self.environment_id, [project_id]))
        return render_project(self.loaded.pop(project_id))


def project_fingerprint(key: str, penv_digest: str, project: ProjectSnapshot, by_token=None) -> str:
    """A project unit's fingerprint: its render token when it has one (a token is replaced whenever the project's
    input changes, projects.models.RenderToken), else its whole snapshot. Both hash the renderer version and the
    digest of the environment part every project reads (``penv_digest``)."""
    if project.render_token:
        return (by_token or _token_fingerprints(penv_digest))(key, project.render_token)
    return sha256(RENDERER_VERSION, key, penv_digest, repr(project))


def token_fingerprint(key: str, penv_digest: str, token: str) -> str:
    """sha256 of the renderer version, the project environment's digest, the unit key and the render token."""
    return _token_fingerprints(penv_digest)(key, token)


def _token_fingerprints(penv_digest: str):
    base = _token_base(penv_digest)

    def one(key: str, token: str) -> str:
        digest = base.copy()
        digest.update(f"{key}\0{token}\0".encode())
        return digest.hexdigest()
    return one


def _token_base(penv_digest: str):
    return hashlib.sha256(f"{RENDERER_VERSION}\0render-token\0{penv_digest}\0".encode())


def tree_units(snapshot: TreeSnapshot) -> list[RenderUnit]:
    """Every unit of the snapshot, sorted by key. Cheap: hashing only, no template is rendered here."""
    units = [RenderUnit(key="shared:platform-base", directory=PLATFORM_BASE_DIR,
                        fingerprint=fingerprint("shared:platform-base"), render=render_platform_base)]
    for env in snapshot.environments:
        base_key = f"env:{env.name}"
        if not env.is_kubernetes:
            key = f"{base_key}:compose"
            compose_input = ComposeInput(env=replace(env, id=0), repo_url=snapshot.repo_url, branch=snapshot.branch)
            units.append(RenderUnit(key=key, directory=f"environments/{env.name}/",
                                    fingerprint=fingerprint(key, compose_input),
                                    render=partial(render_compose_environment, compose_input)))
            continue
        platform_input = _platform_input(env)
        key = f"{base_key}:platform"
        units.append(RenderUnit(key=key, directory=f"environments/{env.name}/platform/",
                                fingerprint=fingerprint(key, platform_input),
                                render=partial(render_platform_overlay, platform_input)))
        entry = ClusterEntry(env_name=env.name, gitops_tool=env.gitops_tool, repo_url=snapshot.repo_url,
                             branch=snapshot.branch, kind=env.kind, tls_mode=env.tls_mode,
                             supports_snapshots=env.supports_snapshots, ingress_class=env.ingress_class,
                             ingress_controller_namespace=env.ingress_controller_namespace,
                             aws_account_id=env.aws_account_id, disabled_addons=env.disabled_addons)
        key = f"{base_key}:clusters"
        units.append(RenderUnit(key=key, directory=f"clusters/{env.name}/", fingerprint=fingerprint(key, entry),
                                render=partial(render_cluster_entry, entry)))
        project_ids = tuple(sorted([project.id for project in env.projects]
                                   + [project_id for project_id, _token in env.lazy_projects]))
        key = f"{base_key}:projects-index"
        units.append(RenderUnit(key=key, directory=f"environments/{env.name}/projects/",
                                fingerprint=fingerprint(key, env.name, project_ids),
                                render=partial(render_projects_index, env.name, project_ids)))
        penv = ProjectEnvironment.of(env)
        # Hash the shared environment part once, not once per project.
        penv_digest = sha256(repr(penv))
        by_token = _token_fingerprints(penv_digest)
        # One shape memo per environment and call: projects that differ only in their names render once.
        render_project = ProjectShapes(penv)
        for project in env.projects:
            key = f"{base_key}:project:{project.id}"
            directory = f"environments/{env.name}/projects/{project.namespace}/"
            units.append(RenderUnit(
                key=key, directory=directory,
                fingerprint=project_fingerprint(key, penv_digest, project, by_token),
                render=partial(render_project, project),
                essential=(directory + "namespace.yaml", directory + "storage.yaml"),
                paths=partial(project_paths, penv, project),
            ))
        if env.lazy_projects:
            if snapshot.load_projects is None:
                raise ValueError(f"Environment {env.name} has projects to read later but no loader.")
            lazy = _LazyProjects(snapshot.load_projects, env.id, env.name)
            for project_id, token in env.lazy_projects:
                key = f"{base_key}:project:{project_id}"
                directory = f"environments/{env.name}/projects/{domain.project_namespace(project_id)}/"
                units.append(RenderUnit(
                    key=key, directory=directory, fingerprint=by_token(key, token),
                    render=partial(lazy.render, render_project, project_id), prefetch=lazy,
                    essential=(directory + "namespace.yaml", directory + "storage.yaml"),
                ))
    units.sort(key=lambda unit: unit.key)
    return units


def _platform_input(env: EnvironmentSnapshot) -> EnvironmentSnapshot:
    """The environment without its projects and database id: what the platform overlay reads."""
    return replace(env, id=0, projects=(), lazy_projects=())


def render_tree(snapshot: TreeSnapshot) -> dict[str, bytes]:
    """All units rendered and merged, sorted by path."""
    files: dict[str, bytes] = {}
    for unit in tree_units(snapshot):
        for path, content in unit.render().items():
            if path in files:
                raise ValueError(f"{path} is rendered by two units (the second is {unit.key})")
            if not path.startswith(unit.directory):
                raise ValueError(f"{unit.key} rendered {path} outside its folder {unit.directory}")
            files[path] = content
    return dict(sorted(files.items()))


def snapshot_scopes(snapshot: TreeSnapshot) -> tuple[str, ...]:
    """Folders this render owns: files under them that it no longer renders are deleted by the git writer."""
    if snapshot.covers_all_environments:
        return (PLATFORM_BASE_DIR, "clusters/", "environments/")
    scopes = [PLATFORM_BASE_DIR]
    for env in snapshot.environments:
        scopes += [f"environments/{env.name}/", f"clusters/{env.name}/"]
    return tuple(sorted(scopes))
