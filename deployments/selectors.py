"""Reads of deployments that pages, runs and the renderer need (services write; selectors read)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.conf import settings
from django.db import connection
from django.db.models import CharField, Count, F, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Cast, Coalesce

from deployments import domain, validators
from deployments.models import Environment, NodeGroup, RenderRun, Secret
from deployments.rendering.snapshot import (
    CONTAINER_FIELDS,
    ENVIRONMENT_FIELDS,
    ContainerSnapshot,
    EnvironmentSnapshot,
    NodeGroupSnapshot,
    ProjectsChanged,
    ProjectSnapshot,
    SecretSnapshot,
    TreeSnapshot,
    VolumeRestoreSnapshot,
)
from projects.models import RENDER_TOKEN_TRIGGERS, Container, Project, ServiceCredential, VolumeRestore


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


def render_tokens_trusted() -> bool:
    """Whether every trigger that keeps ``projects.models.RenderToken`` current exists in this database (one
    catalogue query). A SQLite table rebuilt by a later migration loses its triggers; without them a token could
    stay put while its project changes, so snapshots then fingerprint content instead."""
    vendor = connection.vendor
    names = RENDER_TOKEN_TRIGGERS.get(vendor)
    if not names:
        return False
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute("SELECT count(DISTINCT tgname) FROM pg_trigger WHERE NOT tgisinternal AND tgname = ANY(%s)",
                           [list(names)])
        else:
            cursor.execute(f"SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN "
                           f"({', '.join(['%s'] * len(names))})", list(names))
        return cursor.fetchone()[0] == len(names)


def environments_snapshot(*, environment_ids: Iterable[int] | None = None, lazy: bool = False) -> TreeSnapshot:
    """Read what the renderer needs for some environments (None: all of them): seven queries, or with ``lazy``
    three plus one catalogue query.

    Only the projects with a folder in git are read (``domain.project_is_rendered``: active, hibernating on EKS,
    stopped on Minikube); hibernated (EKS) and deleted projects have none. Every project carries its render token
    (``projects.models.RenderToken``), which its unit's fingerprint hashes.

    ``lazy``: on Kubernetes environments only each project's id and token are read (when the token triggers exist,
    ``render_tokens_trusted``); ``TreeSnapshot.load_projects`` reads the containers, credentials and restores of
    the projects the git writer actually renders (those whose fingerprint moved), so a run's reads follow the
    change, not the number of projects. Compose environments are always read whole (one unit renders them all).

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

    lazy_ids = ({row["id"] for row in environment_rows if domain.is_kubernetes(row["kind"])}
                if lazy and ids and render_tokens_trusted() else set())
    # Tuples, not dicts: a lazy project (10,000 at 10,000 projects) needs only its id and token.
    project_tuples = list(Project.objects.filter(_rendered_projects("", environment_rows), environment_id__in=ids)
                          .annotate(**_PROJECT_ANNOTATIONS).order_by().values_list(*_PROJECT_FIELDS))
    uuid_at, environment_at, token_at = (_PROJECT_FIELDS.index(name) for name in ("uuid_text", "environment_id",
                                                                                     "token"))
    lazy_projects: dict[int, list[tuple[str, str]]] = {pk: [] for pk in ids}
    eager_rows = []
    for values in project_tuples:
        if values[environment_at] in lazy_ids and values[token_at]:
            lazy_projects[values[environment_at]].append((_uuid_text(values[uuid_at]), values[token_at]))
        else:
            eager_rows.append(dict(zip(_PROJECT_FIELDS, values, strict=True)))
    projects: dict[int, list[ProjectSnapshot]] = {pk: [] for pk in ids}
    for snapshot_row, project in _project_snapshots(environment_rows, eager_rows,
                                                    whole=len(eager_rows) == len(project_tuples)):
        projects[snapshot_row["environment_id"]].append(project)

    return TreeSnapshot(
        repo_url=gitops_source_url(),
        branch=settings.GITOPS_BRANCH,
        environments=tuple(
            EnvironmentSnapshot(
                **row,
                node_groups=tuple(sorted(node_groups[row["id"]], key=lambda g: g.name)),
                secrets=tuple(sorted(secrets[row["id"]], key=lambda s: (s.secret_name, s.key))),
                projects=tuple(sorted(projects[row["id"]], key=lambda p: p.id)),
                lazy_projects=tuple(sorted(lazy_projects[row["id"]])),
            )
            for row in environment_rows
        ),
        covers_all_environments=environment_ids is None,
        load_projects=_load_projects if lazy_ids else None,
    )


_PROJECT_FIELDS = ("uuid_text", "environment_id", "slug", "owner", "volume_size", "restore_snapshot_id",
                   "state", "hibernation_stamp", "token")
# UUIDs read as text: converting 10,000 values to uuid.UUID and back costs more than the query.
_PROJECT_ANNOTATIONS = {"token": F("render_token__token"), "uuid_text": Cast("id", CharField())}


def _uuid_text(value) -> str:
    """A UUID column read as text (PostgreSQL: with dashes; SQLite stores 32 hex digits) in the canonical form."""
    value = str(value)
    if len(value) == 32:
        return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
    return value.lower()
# Above this many projects, their containers are read for the whole environment instead of by id.
_BY_ID_MAX = 500


def _project_snapshots(environment_rows: list[dict], project_rows: list[dict],
                       *, whole: bool) -> list[tuple[dict, ProjectSnapshot]]:
    """(row, ProjectSnapshot) of each project row (``_PROJECT_FIELDS``): its containers with their generated
    credentials (versions and sealed values, never the plaintext) and its volume restores, in three queries.
    ``whole``: the rows are every rendered project of these environments (no id filter needed)."""
    if not project_rows:
        return []
    ids = [row["id"] for row in environment_rows]
    wanted = None if whole else {_uuid_text(row["uuid_text"]) for row in project_rows}
    if wanted is None or len(wanted) > _BY_ID_MAX:
        def scope(prefix: str) -> Q:
            return _rendered_projects(prefix, environment_rows) & Q(**{f"{prefix}environment_id__in": ids})
    else:
        def scope(prefix: str) -> Q:
            return Q(**{f"{prefix}id__in": list(wanted)})

    # Generated credentials of service containers: versions and sealed values only, never the plaintext.
    credentials: dict[int, list[tuple[str, int, str]]] = {}
    for container_id, key, version, sealed_value in ServiceCredential.objects.filter(
            scope("container__project__")).order_by().values_list("container_id", "key", "version", "sealed_value"):
        credentials.setdefault(container_id, []).append((key, version, sealed_value))

    containers: dict[str, list[ContainerSnapshot]] = {}
    for row in Container.objects.filter(scope("project__")).order_by().annotate(
            project_text=Cast("project_id", CharField())).values("project_text", "id", *CONTAINER_FIELDS):
        project_id = _uuid_text(row.pop("project_text"))
        workload = domain.workload_name(row["role"], row["directory"])
        row["credentials"] = tuple(
            SecretSnapshot(secret_name=f"{workload}-credentials", key=key, version=version, sealed_value=sealed)
            for key, version, sealed in sorted(credentials.get(row.pop("id"), ())))
        row["uuid"] = str(row["uuid"])
        row["env_vars"] = tuple(validators.parse_env_vars(row["env_vars"]))
        containers.setdefault(project_id, []).append(ContainerSnapshot(**row))

    restores: dict[str, list[VolumeRestoreSnapshot]] = {}
    for project_id, volume_name, source, handle in VolumeRestore.objects.filter(scope("project__")).order_by(
            ).annotate(project_text=Cast("project_id", CharField())).values_list(
            "project_text", "volume_name", "source_snapshot_name", "snapshot_handle"):
        restores.setdefault(_uuid_text(project_id), []).append(VolumeRestoreSnapshot(
            volume_name=volume_name, source_snapshot_name=source, snapshot_handle=handle))

    result = []
    for row in project_rows:
        project_id = _uuid_text(row["uuid_text"])
        result.append((row, ProjectSnapshot(
            id=project_id, slug=row["slug"], owner=row["owner"], volume_size=row["volume_size"],
            restore_snapshot_id=row["restore_snapshot_id"],
            containers=tuple(sorted(containers.get(project_id, ()), key=lambda c: c.directory)),
            hibernation_stamp=row["hibernation_stamp"] if row["state"] == domain.STATE_HIBERNATING else "",
            stopped=row["state"] == domain.STATE_HIBERNATED,
            restores=tuple(sorted(restores.get(project_id, ()), key=lambda r: r.volume_name)),
            render_token=row["token"] or "",
        )))
    return result


def _load_projects(environment_id: int, project_ids: Sequence[str]) -> dict[str, ProjectSnapshot]:
    """``TreeSnapshot.load_projects`` of a lazy snapshot: the snapshots of these projects of one environment, read
    now (four queries). Raises ProjectsChanged naming a project that is no longer rendered (deleted, hibernated
    or moved since the snapshot): the run fails and is requested again."""
    environment_rows = list(Environment.objects.filter(pk=environment_id).values("id", "kind",
                                                                                 "storage_provisioner"))
    wanted = set(project_ids)
    queryset = Project.objects.filter(_rendered_projects("", environment_rows), environment_id=environment_id)
    if len(wanted) <= _BY_ID_MAX:
        queryset = queryset.filter(pk__in=list(wanted))
    rows = [row for row in queryset.annotate(**_PROJECT_ANNOTATIONS).order_by().values(*_PROJECT_FIELDS)
            if _uuid_text(row["uuid_text"]) in wanted]
    whole = len(wanted) > _BY_ID_MAX
    found = {project.id: project for _row, project in _project_snapshots(environment_rows, rows, whole=whole)}
    missing = sorted(wanted - found.keys())
    if missing:
        raise ProjectsChanged(f"{len(missing)} project(s) stopped being rendered while this run read them "
                              f"(first: {missing[0]}); a later run renders the change.")
    return found


def _count_per_environment(queryset) -> Coalesce:
    """``SELECT COUNT(*) FROM <queryset> WHERE environment_id = <the outer environment>`` as an expression."""
    counted = (queryset.filter(environment_id=OuterRef("pk")).order_by().values("environment_id")
               .annotate(n=Count("*")).values("n"))
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def active_project_count() -> Coalesce:
    """An environment's active projects, to annotate environments with (``Environment.objects.annotate(n=...)``).

    A subquery per environment answered from the (environment, state) index of projects
    (projects.0009_project_environment_state_index), instead of a join of every project grouped by environment:
    its cost follows the environment's active projects, and an index-only scan reads no project row."""
    return _count_per_environment(Project.objects.filter(state=domain.STATE_ACTIVE))


def node_group_count() -> Coalesce:
    """An environment's node groups, to annotate environments with (one indexed subquery per environment)."""
    return _count_per_environment(NodeGroup.objects.all())


def environment_recent_runs(*, environment: Environment, limit: int = 10) -> list[RenderRun]:
    """The runs that rendered this environment (runs for all environments included), newest first."""
    return list(
        RenderRun.objects.filter(Q(environments=environment) | Q(environments__isnull=True))
        .select_related("triggered_by").defer("diff", "log").distinct().order_by("-created_at", "-id")[:limit]
    )
