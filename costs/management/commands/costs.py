import json

from django.core.management.base import BaseCommand, CommandError

from costs.reporting import report_json, report_lines
from costs.selectors import environment_cost_report
from deployments.models import Environment


class Command(BaseCommand):
    help = ("Print an environment's monthly cost: the estimate from the model line by line (with the guide's "
            "baseline), spot savings, the most expensive projects, findings, and the cached Cost Explorer actuals.")

    def add_arguments(self, parser):
        parser.add_argument("--environment", required=True, metavar="NAME")
        parser.add_argument("--json", action="store_true", help="Print JSON instead of text lines.")

    def handle(self, *args, environment, json=False, **options):
        try:
            env = Environment.objects.get(name=environment)
        except Environment.DoesNotExist:
            raise CommandError(f"No environment named {environment}.") from None
        report = environment_cost_report(environment=env)
        if json:
            self.stdout.write(_dumps(report_json(report)))
        else:
            self.stdout.write("\n".join(report_lines(report)))


def _dumps(data) -> str:
    return json.dumps(data, indent=2, sort_keys=False)
