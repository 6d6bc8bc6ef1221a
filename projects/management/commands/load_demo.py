from django.core.management.base import BaseCommand

from projects.demo import demo_load


class Command(BaseCommand):
    help = ("Load the operator guide's setup (Minikube and AWS production environments, projects). Creates what is "
            "missing; an environment that already exists is left unchanged, with everything in it.")

    def handle(self, *args, **options):
        counts = demo_load()
        kept = counts.pop("environments_kept")
        summary = ", ".join(f"{value} {name.replace('_', ' ')}" for name, value in counts.items())
        self.stdout.write(self.style.SUCCESS(f"Demo data created: {summary}."))
        if kept:
            self.stdout.write(f"{kept} demo environment(s) already existed and were left unchanged (delete them "
                              "in the admin to load them again).")
