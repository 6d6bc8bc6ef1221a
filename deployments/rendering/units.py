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
exactly that data plus the renderer version, so equal fingerprints give equal bytes. ``tree_units`` only builds
closures and hashes; the template work happens when a unit's ``render`` is called.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from deployments.rendering.clusters import ClusterEntry, render_cluster_entry
from deployments.rendering.common import PLATFORM_BASE_DIR, fingerprint, sha256
from deployments.rendering.compose import ComposeInput, render_compose_environment
from deployments.rendering.platform import render_platform_base, render_platform_overlay
from deployments.rendering.projects import ProjectEnvironment, project_paths, render_project, render_projects_index
from deployments.rendering.snapshot import EnvironmentSnapshot, TreeSnapshot
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
        project_ids = tuple(project.id for project in env.projects)
        key = f"{base_key}:projects-index"
        units.append(RenderUnit(key=key, directory=f"environments/{env.name}/projects/",
                                fingerprint=fingerprint(key, env.name, project_ids),
                                render=partial(render_projects_index, env.name, project_ids)))
        penv = ProjectEnvironment.of(env)
        # Hash the shared environment part once, not once per project.
        penv_digest = sha256(repr(penv))
        for project in env.projects:
            key = f"{base_key}:project:{project.id}"
            directory = f"environments/{env.name}/projects/{project.namespace}/"
            units.append(RenderUnit(
                key=key, directory=directory,
                fingerprint=sha256(RENDERER_VERSION, key, penv_digest, repr(project)),
                render=partial(render_project, penv, project),
                essential=(directory + "namespace.yaml", directory + "storage.yaml"),
                paths=partial(project_paths, penv, project),
            ))
    units.sort(key=lambda unit: unit.key)
    return units


def _platform_input(env: EnvironmentSnapshot) -> EnvironmentSnapshot:
    """The environment without its projects and database id: what the platform overlay reads."""
    return replace(env, id=0, projects=())


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
