"""Reads about projects."""

from django.db.models import QuerySet

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


def project_list_for_admin() -> QuerySet[Project]:
    return Project.objects.select_related("environment").prefetch_related("containers")
