"""``manage.py dumpdata`` that skips models without a table of their own.

Django's dumpdata queries every model, including unmanaged ones such as django-rq's admin-only ``Dashboard`` (no
table: the dump failed with "relation django_rq_dashboard does not exist"). This command adds those models to
``--exclude``; everything else is Django's own dumpdata.
"""

from django.apps import apps
from django.core.management.commands import dumpdata


class Command(dumpdata.Command):
    help = dumpdata.Command.help + " Models without a table (managed = False) are skipped."

    def handle(self, *app_labels, **options):
        excluded = list(options.get("exclude") or [])
        for model in apps.get_models():
            if not model._meta.managed and not model._meta.proxy and model._meta.label not in excluded:
                excluded.append(model._meta.label)
        options["exclude"] = excluded
        return super().handle(*app_labels, **options)
