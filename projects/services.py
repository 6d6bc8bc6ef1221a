"""Every write of projects and their containers: the admin, the commands and the jobs call these."""

from datetime import UTC

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from deployments import access, changes, domain
from jobs.models import JobRun
from jobs.queue import enqueue
from projects.models import Container, HibernationRun, Project, VolumeRestore


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


# --- hibernation and wake (DOMAIN.md "Hibernation and snapshots") ---------------------------------------------

HIBERNATION_QUEUE = "gitops"
HIBERNATION_JOB = "snapshots.tasks.hibernation_run_job"


def _hibernation_timeout() -> int:
    return int(getattr(settings, "HIBERNATION_SNAPSHOT_TIMEOUT_SECONDS", 300))


@transaction.atomic
def project_hibernate(*, project: Project, user=None) -> HibernationRun | None:
    """Hibernate an active project without losing data.

    On a cluster with EBS VolumeSnapshots (``Environment.supports_snapshots``): sets the project Hibernating with
    a new stamp (UTC ``YYYYmmdd-HHMMSS``, the VolumeSnapshot names) and queues a ``HibernationRun`` on the
    ``gitops`` queue (inline without REDIS_URL), returned; the run commits the snapshots, waits for them
    (``HIBERNATION_SNAPSHOT_TIMEOUT_SECONDS``, default 300 s), and only then removes the folder
    (``snapshots.hibernation``). On other Kubernetes clusters (Minikube: no VolumeSnapshots) the project is
    stopped at once: Hibernated, rendered with zero replicas, namespace and volumes kept; returns None.

    Raises ValidationError (field ``state``) for a project that is not active, a Compose environment, or a
    hibernation already running.
    """
    project = Project.objects.select_for_update().select_related("environment").get(pk=project.pk)
    access.require(user, "projects.change_project", {project.environment_id}, what=str(project))
    environment = project.environment
    if project.state != Project.State.ACTIVE:
        raise ValidationError({"state": f"Only an active project can hibernate; {project} is "
                                        f"{project.get_state_display().lower()}."})
    if not domain.is_kubernetes(environment.kind):
        raise ValidationError({"state": "Projects on a Docker Compose server do not hibernate."})
    if not environment.supports_snapshots:
        project.state = Project.State.HIBERNATED
        project.hibernation_error = ""
        project_save(project=project, user=user)
        return None
    if HibernationRun.objects.filter(project=project, status__in=(JobRun.Status.QUEUED,
                                                                   JobRun.Status.RUNNING)).exists():
        raise ValidationError({"state": f"A hibernation of {project} is already running."})
    stamp = timezone.now().astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    Project.objects.filter(pk=project.pk).update(state=Project.State.HIBERNATING, hibernation_stamp=stamp,
                                                 hibernation_error="", updated_at=timezone.now())
    run = HibernationRun.objects.create(
        project=project, stamp=stamp, timeout_seconds=_hibernation_timeout(),
        triggered_by=user if user is not None and user.is_authenticated else None,
        reason=f"Hibernate project {project}"[:500])

    def failed(reason: str) -> None:
        HibernationRun.objects.filter(pk=run.pk).update(enqueue_error=reason[:500])

    enqueue(HIBERNATION_QUEUE, HIBERNATION_JOB, run.pk, job_id=f"hibernation-{run.pk}", on_failure=failed)
    return run


def project_snapshot_sets(*, project: Project) -> list[HibernationRun]:
    """The project's complete snapshot sets (succeeded hibernations with an EBS snapshot id for every volume),
    newest first."""
    runs = (HibernationRun.objects.filter(project=project, status__in=(JobRun.Status.SUCCEEDED,
                                                                         JobRun.Status.WARNINGS))
            .prefetch_related("volumes").order_by("-created_at", "-pk"))
    return [run for run in runs if run.is_complete_set]


@transaction.atomic
def project_wake(*, project: Project, user=None, snapshot_set: HibernationRun | None = None) -> Project:
    """Wake a hibernated project: Active again, and on EKS every volume restored from a snapshot set.

    ``snapshot_set``: a complete ``HibernationRun`` of this project (default: the newest complete set). Each of
    its volumes becomes a ``VolumeRestore`` (replacing the previous ones: the namespace and its PVCs were deleted
    with the hibernation), rendered as a pre-provisioned VolumeSnapshotContent (``source.snapshotHandle``, driver
    ebs.csi.aws.com, ``deletionPolicy: Retain``), a VolumeSnapshot bound to it and the PVC with ``dataSource``
    (DOMAIN.md "Restore"). A stopped project (Minikube) just starts again. Requests a render.

    Raises ValidationError: field ``state`` (not hibernated), ``snapshot_set`` (no complete set, or one of
    another project or incomplete).
    """
    project = Project.objects.select_for_update().select_related("environment").get(pk=project.pk)
    access.require(user, "projects.change_project", {project.environment_id}, what=str(project))
    if project.state != Project.State.HIBERNATED:
        raise ValidationError({"state": f"Only a hibernated project can wake; {project} is "
                                        f"{project.get_state_display().lower()}."})
    if project.environment.supports_snapshots:
        if snapshot_set is None:
            sets = project_snapshot_sets(project=project)
            if not sets:
                raise ValidationError({"snapshot_set": f"{project} has no complete snapshot set to restore."})
            snapshot_set = sets[0]
        elif snapshot_set.project_id != project.pk or not snapshot_set.is_complete_set:
            raise ValidationError({"snapshot_set": f"Hibernation {snapshot_set.pk} is not a complete snapshot set "
                                                   f"of {project}."})
        VolumeRestore.objects.filter(project=project).delete()
        for volume in snapshot_set.volumes.all():
            restore = VolumeRestore(project=project, volume_name=volume.volume_name,
                                    source_snapshot_name=volume.volume_snapshot_name,
                                    snapshot_handle=volume.snapshot_handle, hibernation_run=snapshot_set)
            restore.full_clean()
            restore.save()
        # The per-volume restore replaces the legacy single-volume one.
        project.restore_snapshot_id = ""
    # Not through project_save: its validation refuses this state change by hand (Project._state_change_problem).
    project.state = Project.State.ACTIVE
    project.hibernation_stamp = ""
    project.save(update_fields=["state", "hibernation_stamp", "restore_snapshot_id", "updated_at"])
    changes.environments_changed({project.environment_id}, user=user, reason=f"Woke project {project}")
    return project
