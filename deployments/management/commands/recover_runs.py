from django.core.management.base import BaseCommand

from deployments.runs import render_runs_recover


class Command(BaseCommand):
    help = ("Repair render runs left by dead workers, lost jobs and queue outages (what the scheduler's "
            "render-runs-recover job does every RENDER_RECOVERY_INTERVAL seconds).")

    def handle(self, *args, **options):
        result = render_runs_recover()
        self.stdout.write(f"Failed as orphaned or given up: {result['failed'] or 'none'}; "
                          f"enqueued again: {result['requeued'] or 'none'}; "
                          f"new runs for environments left dirty: {result['requested'] or 'none'}.")
