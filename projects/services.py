"""Every write of projects and their containers: the admin, the commands and the jobs call these."""

from django.db import transaction

from deployments import access, changes
from projects.models import Container, Project


def _verb(created: bool, what: str, obj) -> str:
    return f"{'Added' if created else 'Changed'} {what} {obj}"


@transaction.atomic
def project_save(*, project: Project, user=None) -> Project:
    """Create or change a project; a project moved to another environment renders both."""
    created = project._state.adding
    previous = None if created else Project.objects.filter(pk=project.pk).values_list(
        "environment_id", flat=True).first()
    access.require(user, "projects.add_project" if created else "projects.change_project",
                   {project.environment_id, previous}, what=str(project))
    access.act_as(project, user)
    project.full_clean()
    project.save()
    changes.environments_changed({project.environment_id, previous} - {None}, user=user,
                                 reason=_verb(created, "project", project))
    return project


@transaction.atomic
def project_delete(*, project: Project, user=None) -> None:
    environment_id, label = project.environment_id, str(project)
    access.require(user, "projects.delete_project", {environment_id}, what=label)
    access.act_as(project, user)
    project.delete()
    changes.environments_changed({environment_id}, user=user, reason=f"Deleted project {label}")


@transaction.atomic
def container_save(*, container: Container, user=None) -> Container:
    created = container._state.adding
    access.require(user, "projects.add_container" if created else "projects.change_container",
                   {container.project.environment_id}, what=str(container))
    access.act_as(container, user)
    container.full_clean()
    container.save()
    changes.environments_changed({container.project.environment_id}, user=user,
                                 reason=_verb(created, "container", container))
    return container


@transaction.atomic
def container_delete(*, container: Container, user=None) -> None:
    environment_id, label = container.project.environment_id, str(container)
    access.require(user, "projects.delete_container", {environment_id}, what=label)
    access.act_as(container, user)
    container.delete()
    changes.environments_changed({environment_id}, user=user, reason=f"Deleted container {label}")
