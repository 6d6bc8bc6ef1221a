from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs.scheduler import run_forever, schedule_entries


class Command(BaseCommand):
    help = "Run the one scheduler process: enqueues settings.PORTAL_SCHEDULE's jobs on time. Run exactly one."

    def add_arguments(self, parser):
        parser.add_argument("--list", action="store_true", help="Print the schedule and exit.")

    def handle(self, *args, **options):
        entries = schedule_entries()
        if options["list"]:
            for entry in entries:
                when = f"every {entry['interval']} s" if entry.get("interval") else f"cron {entry['cron']} (UTC)"
                self.stdout.write(f"{entry['name']}: {entry['func']} on {entry['queue']}, {when}")
            return
        if not settings.REDIS_URL:
            raise CommandError("REDIS_URL is not set: with jobs inline there is no queue to schedule onto.")
        run_forever()
