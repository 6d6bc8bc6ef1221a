import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from live import services
from live.checks import CHECK_TITLES
from live.models import LiveRefreshRun, LiveStatus


class Command(BaseCommand):
    help = ("Read the clusters (read-only) and print the live view's diagnostics: nodes vs node groups, project "
            "namespaces, GitOps sync, and the troubleshooting checks with their fixes.")

    def add_arguments(self, parser):
        parser.add_argument("--environment", action="append", dest="environments", metavar="NAME",
                            help="Only this environment (repeatable). Default: every Kubernetes environment.")
        parser.add_argument("--json", action="store_true", help="Print the views as JSON.")

    def handle(self, *args, environments=None, json=False, **options):
        try:
            run = services.live_refresh_run_create(environment_names=environments, reason="manage.py live_status")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        run = services.live_refresh_run_execute(run_id=run.pk)
        statuses = list(LiveStatus.objects.filter(environment__in=run.environments.all())
                        .select_related("environment").order_by("environment__name"))
        if json:
            self.stdout.write(_dumps({s.environment.name: {
                "fetched_at": s.fetched_at.isoformat() if s.fetched_at else None, "error": s.last_error or None,
                "report": s.report} for s in statuses}))
        else:
            for status in statuses:
                self._print(status)
        if run.status == LiveRefreshRun.Status.FAILED:
            raise CommandError(run.error)

    def _print(self, status: LiveStatus) -> None:
        report = status.report or {}
        self.stdout.write(f"Environment {status.environment.name}: read {status.fetched_at or 'never'}"
                          + (f"; ERROR {status.last_error} (showing the last view)" if status.last_error else ""))
        for row in report.get("node_groups", []):
            self.stdout.write(f"  node group {row['name']}: {row['nodes']} nodes ({row['ready']} ready), desired "
                              f"{row['desired']}: {'; '.join(row['problems']) or 'OK'}")
        for row in report.get("namespaces", []):
            if row["verdict"] != "ok":
                self.stdout.write(f"  namespace {row['namespace']}: {row['verdict']}")
        for row in report.get("apps", []):
            at = {True: "at the last commit", False: "behind the last commit", None: "-"}[row["at_last_commit"]]
            self.stdout.write(f"  {row['kind']} {row['name']}: {row['sync_status']} / {row['health_status']}, {at}")
        for check, title in CHECK_TITLES.items():
            for v in (v for v in report.get("verdicts", []) if v["check"] == check):
                self.stdout.write(f"  [{'OK' if v['ok'] else 'PROBLEM'}] {title}: {v['subject']} — {v['detail']}")
                if v["fix"]:
                    self.stdout.write(f"      fix: {v['fix']}")


def _dumps(data) -> str:
    return json.dumps(data, indent=2)
