from django.core.management.base import BaseCommand

from projects.demo import demo_load


class Command(BaseCommand):
    help = "Load the operator guide's setup (Minikube and AWS production environments, projects). Idempotent."

    def handle(self, *args, **options):
        counts = demo_load()
        summary = ", ".join(f"{value} {name.replace('_', ' ')}" for name, value in counts.items())
        self.stdout.write(self.style.SUCCESS(f"Demo data loaded: {summary}."))
