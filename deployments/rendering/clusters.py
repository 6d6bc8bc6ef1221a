"""clusters/<env>/: the objects that point the cluster's GitOps tool (Argo CD or Flux) at this repository."""

from dataclasses import dataclass

from deployments.models import Environment
from deployments.rendering.common import (
    ARGOCD_FINALIZER,
    ARGOCD_NAMESPACE,
    ARGOCD_RETRY,
    FLUX_NAMESPACE,
    FLUX_SOURCE_NAME,
    IN_CLUSTER_SERVER,
)
from deployments.rendering.templating import render_template


@dataclass(frozen=True)
class ClusterEntry:
    env_name: str
    gitops_tool: str
    repo_url: str
    branch: str


def render_cluster_entry(entry: ClusterEntry) -> dict[str, bytes]:
    prefix = f"clusters/{entry.env_name}/"
    context = {
        "env": entry.env_name, "repo_url": entry.repo_url, "branch": entry.branch,
        "platform_path": f"environments/{entry.env_name}/platform",
        "projects_path": f"environments/{entry.env_name}/projects",
    }
    if entry.gitops_tool == Environment.GitOpsTool.FLUX:
        context.update({"namespace": FLUX_NAMESPACE, "source": FLUX_SOURCE_NAME})
        files = {
            "source.yaml": render_template("clusters/flux-gitrepository.yaml.j2", context),
            "platform.yaml": render_template("clusters/flux-kustomization.yaml.j2", {
                **context, "name": f"tesslate-platform-{entry.env_name}", "path": context["platform_path"],
                "depends_on": None, "timeout": "5m"}),
            "projects.yaml": render_template("clusters/flux-kustomization.yaml.j2", {
                **context, "name": f"tesslate-projects-{entry.env_name}", "path": context["projects_path"],
                "depends_on": f"tesslate-platform-{entry.env_name}", "timeout": "15m"}),
        }
    else:
        context.update({
            "namespace": ARGOCD_NAMESPACE, "project": f"tesslate-{entry.env_name}", "server": IN_CLUSTER_SERVER,
            "finalizer": ARGOCD_FINALIZER, "retry": ARGOCD_RETRY,
            # Argo CD's Go template syntax, passed as data so jinja leaves the braces alone.
            "app_name_template": f"{entry.env_name}-{{{{ .path.basename }}}}",
            "path_template": "{{ .path.path }}",
            "namespace_template": "{{ .path.basename }}",
        })
        files = {
            "appproject.yaml": render_template("clusters/argocd-appproject.yaml.j2", context),
            "platform.yaml": render_template("clusters/argocd-application.yaml.j2", context),
            "projects.yaml": render_template("clusters/argocd-applicationset.yaml.j2", context),
        }
    files["kustomization.yaml"] = render_template("clusters/kustomization.yaml.j2", {
        "resources": sorted(files)})
    return {prefix + name: text.encode() for name, text in sorted(files.items())}


def render_compose_note(env_name: str) -> dict[str, bytes]:
    text = render_template("compose/README.md.j2", {"env": env_name})
    return {f"environments/{env_name}/README.md": text.encode()}
