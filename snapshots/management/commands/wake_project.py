"""python manage.py wake_project SLUG --environment NAME [--set RUN_ID]: wake a hibernated project."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from projects import services
from projects.models import HibernationRun
from snapshots.management.commands.hibernate_project import project_by_slug


class Command(BaseCommand):
    help = ("Wake a hibernated project: on EKS every volume is restored from a snapshot set (the newest complete "
            "one, or --set), then a render is requested; on Minikube the project starts again.")

    def add_arguments(self, parser):
        parser.add_argument("slug", help="The project's slug.")
        parser.add_argument("--environment", required=True, help="The project's environment (name).")
        parser.add_argument("--set", type=int, dest="set_id", help="The hibernation run whose snapshots to restore.")

    def handle(self, *args, **options):
        project = project_by_slug(options["slug"], options["environment"])
        snapshot_set = None
        if options["set_id"] is not None:
            snapshot_set = HibernationRun.objects.filter(pk=options["set_id"], project=project).first()
            if snapshot_set is None:
                raise CommandError(f"No hibernation run {options['set_id']} of {project}.")
        try:
            services.project_wake(project=project, user=None, snapshot_set=snapshot_set)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        restores = ", ".join(f"{r.volume_name}={r.snapshot_handle}" for r in project.volume_restores.all())
        self.stdout.write(self.style.SUCCESS(f"{project} is active again{': ' + restores if restores else ''}."))
