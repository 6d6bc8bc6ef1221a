"""Reads of deployments that pages, runs and the renderer need (services write; selectors read)."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db.models import Q

from deployments import domain, validators
from deployments.models import Environment, NodeGroup, RenderRun, Secret
from deployments.rendering.snapshot import (
    CONTAINER_FIELDS,
    ENVIRONMENT_FIELDS,
    ContainerSnapshot,
    EnvironmentSnapshot,
    NodeGroupSnapshot,
    ProjectSnapshot,
    SecretSnapshot,
    TreeSnapshot,
    VolumeRestoreSnapshot,
)
from projects.models import Container, Project, ServiceCredential, VolumeRestore


def _rendered_projects(prefix: str, environment_rows: list[dict]) -> Q:
    """The projects that have a folder in git (``domain.project_is_rendered``) as a filter; ``prefix`` is the
    path to the project (``""``, ``"project__"``, ``"container__project__"``)."""
    snapshots = [row["id"] for row in environment_rows
                 if domain.supports_snapshots(row["kind"], row["storage_provisioner"])]
    stops = [row["id"] for row in environment_rows
             if domain.hibernation_stops(row["kind"], row["storage_provisioner"])]
    return (Q(**{f"{prefix}state": domain.STATE_ACTIVE})
            | Q(**{f"{prefix}state": domain.STATE_HIBERNATING, f"{prefix}environment_id__in": snapshots})
            | Q(**{f"{prefix}state": domain.STATE_HIBERNATED, f"{prefix}environment_id__in": stops}))


def gitops_source_url() -> str:
    """The URL Argo CD / Flux clone (GITOPS_SOURCE_URL, else the push remote), never with credentials in it."""
    return domain.url_without_credentials(settings.GITOPS_SOURCE_URL)


def environments_snapshot(*, environment_ids: Iterable[int] | None = None) -> TreeSnapshot:
    """Read what the renderer needs for some environments (None: all of them) in seven queries.

    Only the projects with a folder in git are read (``domain.project_is_rendered``: active, hibernating on EKS,
    stopped on Minikube); hibernated (EKS) and deleted projects have none.
    Rows are sorted in Python, not by the database, so the order (and the rendered bytes) does not depend on the
    database's collation.
    """
    environments = Environment.objects.all()
    if environment_ids is not None:
        environments = environments.filter(pk__in=list(environment_ids))
    environment_rows = sorted(environments.values(*ENVIRONMENT_FIELDS), key=lambda row: row["name"])
    ids = [row["id"] for row in environment_rows]
    for row in environment_rows:
        row["server_ip"] = row["server_ip"] or ""
        row["disabled_addons"] = tuple(validators.parse_addon_names(row["disabled_addons"]))

    node_groups: dict[int, list[NodeGroupSnapshot]] = {pk: [] for pk in ids}
    for row in NodeGroup.objects.filter(environment_id__in=ids).values(
            "environment_id", "name", "capacity_type", "hosts", "labels", "taints"):
        node_groups[row["environment_id"]].append(NodeGroupSnapshot(
            name=row["name"], capacity_type=row["capacity_type"], hosts=row["hosts"],
            labels=tuple(sorted(validators.parse_labels(row["labels"]).items())),
            taints=tuple((t["key"], t["value"], t["effect"]) for t in validators.parse_taints(row["taints"])),
        ))

    secrets: dict[int, list[SecretSnapshot]] = {pk: [] for pk in ids}
    for environment_id, secret_name, key, version, sealed_value, age_value in Secret.objects.filter(
            environment_id__in=ids).values_list("environment_id", "secret_name", "key", "version", "sealed_value",
                                                 "age_value"):
        secrets[environment_id].append(SecretSnapshot(secret_name=secret_name, key=key, version=version,
                                                      sealed_value=sealed_value, age_value=age_value))

    # Generated credentials of service containers: versions and sealed values only, never the plaintext.
    credentials: dict[int, list[tuple[str, int, str]]] = {}
    for container_id, key, version, sealed_value in ServiceCredential.objects.filter(
            _rendered_projects("container__project__", environment_rows),
            container__project__environment_id__in=ids).values_list(
            "container_id", "key", "version", "sealed_value"):
        credentials.setdefault(container_id, []).append((key, version, sealed_value))

    containers: dict[str, list[ContainerSnapshot]] = {}
    for row in Container.objects.filter(_rendered_projects("project__", environment_rows),
                                        project__environment_id__in=ids).values(
            "project_id", "id", *CONTAINER_FIELDS):
        project_id = str(row.pop("project_id"))
        workload = domain.workload_name(row["role"], row["directory"])
        row["credentials"] = tuple(
            SecretSnapshot(secret_name=f"{workload}-credentials", key=key, version=version, sealed_value=sealed)
            for key, version, sealed in sorted(credentials.get(row.pop("id"), ())))
        row["uuid"] = str(row["uuid"])
        row["env_vars"] = tuple(validators.parse_env_vars(row["env_vars"]))
        containers.setdefault(project_id, []).append(ContainerSnapshot(**row))

    restores: dict[str, list[VolumeRestoreSnapshot]] = {}
    for project_id, volume_name, source, handle in VolumeRestore.objects.filter(
            _rendered_projects("project__", environment_rows), project__environment_id__in=ids).order_by().values_list(
            "project_id", "volume_name", "source_snapshot_name", "snapshot_handle"):
        restores.setdefault(str(project_id), []).append(VolumeRestoreSnapshot(
            volume_name=volume_name, source_snapshot_name=source, snapshot_handle=handle))

    projects: dict[int, list[ProjectSnapshot]] = {pk: [] for pk in ids}
    for row in Project.objects.filter(_rendered_projects("", environment_rows), environment_id__in=ids).values(
            "id", "environment_id", "slug", "owner", "volume_size", "restore_snapshot_id", "state",
            "hibernation_stamp"):
        project_id = str(row["id"])
        projects[row["environment_id"]].append(ProjectSnapshot(
            id=project_id, slug=row["slug"], owner=row["owner"], volume_size=row["volume_size"],
            restore_snapshot_id=row["restore_snapshot_id"],
            containers=tuple(sorted(containers.get(project_id, ()), key=lambda c: c.directory)),
            hibernation_stamp=row["hibernation_stamp"] if row["state"] == domain.STATE_HIBERNATING else "",
            stopped=row["state"] == domain.STATE_HIBERNATED,
            restores=tuple(sorted(restores.get(project_id, ()), key=lambda r: r.volume_name)),
        ))

    return TreeSnapshot(
        repo_url=gitops_source_url(),
        branch=settings.GITOPS_BRANCH,
        environments=tuple(
            EnvironmentSnapshot(
                **row,
                node_groups=tuple(sorted(node_groups[row["id"]], key=lambda g: g.name)),
                secrets=tuple(sorted(secrets[row["id"]], key=lambda s: (s.secret_name, s.key))),
                projects=tuple(sorted(projects[row["id"]], key=lambda p: p.id)),
            )
            for row in environment_rows
        ),
        covers_all_environments=environment_ids is None,
    )


def environment_recent_runs(*, environment: Environment, limit: int = 10) -> list[RenderRun]:
    """The runs that rendered this environment (runs for all environments included), newest first."""
    return list(
        RenderRun.objects.filter(Q(environments=environment) | Q(environments__isnull=True))
        .select_related("triggered_by").defer("diff", "log").distinct().order_by("-created_at", "-id")[:limit]
    )
