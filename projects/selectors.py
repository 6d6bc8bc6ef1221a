"""Reads about projects."""

from django.db.models import Prefetch, QuerySet

from projects.models import Container, Project


def environment_host_labels(*, environment_id: int, exclude_project_id=None) -> dict[str, str]:
    """Map every `{slug}-{dir}` host label in use in an environment to the project slug that uses it.

    Deleted projects keep their row but no longer hold hosts.
    """
    rows = (
        Container.objects.filter(project__environment_id=environment_id)
        .exclude(project__state=Project.State.DELETED)
        .values_list("project__slug", "directory", "project_id")
    )
    return {f"{slug}-{directory}": slug for slug, directory, project_id in rows if project_id != exclude_project_id}


# What the project list reads of each container (its host links): the rest of a container is the change page's.
LISTED_CONTAINER_FIELDS = ("id", "project_id", "directory", "role")


def project_list_for_admin() -> QuerySet[Project]:
    """Projects with their environment (one join) and, as ``listed_containers`` (a list, by directory), the
    directory and role of each of their containers: one more query for a whole page, however many projects.
    ``to_attr`` keeps the prefetch a plain list per project instead of a related manager's queryset per row."""
    containers = Container.objects.only(*LISTED_CONTAINER_FIELDS).order_by("project_id", "directory")
    return Project.objects.select_related("environment").prefetch_related(
        Prefetch("containers", queryset=containers, to_attr="listed_containers"))
