"""Reads for the live view: what the model expects of a cluster, and the cached last view."""

from __future__ import annotations

from deployments.models import Environment, RenderRun
from live.checks import Expectations, NodeGroupModel, ProjectModel
from live.models import LiveStatus
from projects.models import Project


def last_commit_sha() -> str:
    """The portal's newest commit in the GitOps repository (any environment: Argo CD and Flux follow the branch
    head, so every app should reach it)."""
    run = (RenderRun.objects.exclude(commit_sha="").filter(status=RenderRun.Status.SUCCEEDED)
           .order_by("-finished_at", "-id").first())
    return run.commit_sha if run else ""


def expectations_for(*, environment: Environment) -> Expectations:
    """The environment's node groups, projects (namespace, state, Services with a host) and the last commit."""
    groups = tuple(
        NodeGroupModel(name=g.name, capacity_type=g.capacity_type, instance_types=tuple(g.instance_type_list),
                       min_size=g.min_size, desired_size=g.desired_size, max_size=g.max_size,
                       labels=tuple(sorted(g.label_dict.items())),
                       taints=tuple((t["key"], t.get("value", ""), t["effect"]) for t in g.taint_list),
                       disk_size_gb=g.disk_size_gb)
        for g in environment.node_groups.order_by("name"))
    projects = []
    for project in (Project.objects.filter(environment=environment).select_related("environment")
                    .prefetch_related("containers").order_by("slug")):
        services = tuple((c.workload_name, project.host_for(c.directory)) for c in project.containers.all()
                         if not c.is_service)
        projects.append(ProjectModel(id=str(project.id), slug=project.slug, namespace=project.namespace,
                                     state=project.state, services=services, rendered=project.is_rendered))
    return Expectations(environment=environment.name, gitops_tool=environment.gitops_tool, node_groups=groups,
                        projects=tuple(projects), last_commit=last_commit_sha())


def live_status_for(*, environment: Environment) -> LiveStatus | None:
    return LiveStatus.objects.filter(environment=environment).first()
