from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from costs import services
from costs.models import CostSyncRun


class Command(BaseCommand):
    help = ("Fetch AWS Cost Explorer actuals (past months monthly, this month daily, by service) for EKS "
            "environments into the cache. An environment fetched today is skipped unless --force ($0.01 a request).")

    def add_arguments(self, parser):
        parser.add_argument("--environment", action="append", dest="environments", metavar="NAME",
                            help="Only this environment (repeatable). Default: every EKS environment.")
        parser.add_argument("--force", action="store_true", help="Fetch even when today's figures are cached.")

    def handle(self, *args, environments=None, force=False, **options):
        try:
            run = services.cost_sync_run_create(environment_names=environments, force=force,
                                                reason="manage.py sync_costs")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        run = services.cost_sync_run_execute(run_id=run.pk)
        self.stdout.write(run.log)
        summary = (f"Cost sync run {run.pk}: {run.get_status_display()}; {run.fetched_count} fetched, "
                   f"{run.cached_count} cached, {run.request_count} Cost Explorer requests.")
        if run.status == CostSyncRun.Status.FAILED:
            raise CommandError(f"{summary}\n{run.error}")
        self.stdout.write(self.style.SUCCESS(summary))
