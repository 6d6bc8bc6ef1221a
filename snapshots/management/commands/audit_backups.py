"""python manage.py audit_backups [--format csv|json|html] [--no-sync]: run the backup audit in the foreground."""

from django.core.management.base import BaseCommand, CommandError

from jobs.models import JobRun
from snapshots.models import AuditReport
from snapshots.reports import report_csv, report_html, report_json
from snapshots.services import audit_run

FORMATS = {"csv": report_csv, "json": report_json, "html": report_html}


class Command(BaseCommand):
    help = ("Audit backups (snapshots of every project volume, retention, orphans, errors, encryption, the database "
            "backup, the GitOps remote) and print the report.")

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=sorted(FORMATS), help="Print the whole report in this format; "
                            "default: a summary on stderr only.")
        parser.add_argument("--no-sync", action="store_true", help="Evaluate the stored inventory without "
                            "refreshing it from AWS and the clusters first.")

    def handle(self, *args, **options):
        report = AuditReport.objects.create(reason="manage.py audit_backups")
        audit_run(report=report, sync=not options["no_sync"],
                  callback=lambda percent, line: self.stderr.write(f"[{percent:3d}%] {line}"))
        report.refresh_from_db()
        if report.status == JobRun.Status.FAILED:
            raise CommandError(f"Audit {report.pk} failed: {report.error}")
        if options["format"]:
            self.stdout.write(FORMATS[options["format"]](report), ending="")
        self.stderr.write(f"Audit {report.pk}: {report.compliant_count} compliant, {report.non_compliant_count} "
                          f"non-compliant, {report.unknown_count} unknown.")
