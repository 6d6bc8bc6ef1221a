"""python manage.py sync_snapshots [--environment NAME]: refresh the snapshot inventory in the foreground."""

from django.core.management.base import BaseCommand, CommandError

from deployments.models import Environment
from jobs.models import JobRun
from snapshots.models import SnapshotSyncRun
from snapshots.services import snapshot_sync


class Command(BaseCommand):
    help = "Read EBS snapshots (AWS) and VolumeSnapshots (cluster) of EKS environments into the inventory."

    def add_arguments(self, parser):
        parser.add_argument("--environment", help="Only this environment (name); default: every EKS environment.")

    def handle(self, *args, **options):
        environment = None
        if options["environment"]:
            environment = Environment.objects.filter(name=options["environment"]).first()
            if environment is None:
                raise CommandError(f"No environment named {options['environment']!r}.")
        run = SnapshotSyncRun.objects.create(environment=environment, reason="manage.py sync_snapshots")
        snapshot_sync(run=run, callback=lambda percent, line: self.stdout.write(f"[{percent:3d}%] {line}"))
        run.refresh_from_db()
        summary = (f"Run {run.pk}: {run.snapshots_total} snapshots, {run.snapshots_new} new, "
                   f"{run.snapshots_gone} gone, {run.orphan_count} orphans.")
        if run.status == JobRun.Status.FAILED:
            raise CommandError(f"{summary}\n{run.error}")
        self.stdout.write(self.style.SUCCESS(summary))
