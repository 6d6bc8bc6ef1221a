"""python manage.py hibernate_project SLUG --environment NAME: hibernate a project without losing data."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from jobs.models import JobRun
from projects import services
from projects.models import Project


def project_by_slug(slug: str, environment: str) -> Project:
    project = Project.objects.select_related("environment").filter(slug=slug, environment__name=environment).first()
    if project is None:
        raise CommandError(f"No project {slug!r} in environment {environment!r}.")
    return project


class Command(BaseCommand):
    help = ("Hibernate a project: on EKS, commit a VolumeSnapshot of every volume, wait until each is ready, record "
            "the EBS snapshot ids, then remove its folder (a failure keeps everything); on Minikube, stop it "
            "(zero replicas). With REDIS_URL set the run goes to the gitops queue (python manage.py rqworker gitops); "
            "without, it runs here.")

    def add_arguments(self, parser):
        parser.add_argument("slug", help="The project's slug.")
        parser.add_argument("--environment", required=True, help="The project's environment (name).")

    def handle(self, *args, **options):
        project = project_by_slug(options["slug"], options["environment"])
        try:
            run = services.project_hibernate(project=project, user=None)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if run is None:
            self.stdout.write(self.style.SUCCESS(
                f"{project} is stopped: zero replicas; its namespace and volumes stay. A render was requested."))
            return
        run.refresh_from_db()
        if run.status == JobRun.Status.FAILED:
            raise CommandError(f"Hibernation run {run.pk} failed; nothing was deleted.\n{run.error}")
        if run.is_finished:
            volumes = ", ".join(f"{v.volume_name}={v.snapshot_handle}" for v in run.volumes.all())
            self.stdout.write(self.style.SUCCESS(f"Hibernation run {run.pk}: {run.get_status_display()} ({volumes})."))
        else:
            self.stdout.write(f"Hibernation run {run.pk} queued on the gitops queue"
                              + (f" (not handed over: {run.enqueue_error})" if run.enqueue_error else "") + ".")
