"""Indexes on (audit_environment_id, history_id) of the environment, node group, project and container histories:
the newest history row of one environment is one index probe (the dashboard keys its cached estimates on it),
however long the history grows. Plain CREATE INDEX: the same on PostgreSQL and SQLite."""

from django.db import migrations

TABLES = ["governance_historicalenvironment", "governance_historicalnodegroup", "governance_historicalproject",
          "governance_historicalcontainer"]


class Migration(migrations.Migration):
    dependencies = [("governance", "0004_after_hibernation")]

    operations = [
        migrations.RunSQL(f"CREATE INDEX IF NOT EXISTS {table}_env_hist ON {table} (audit_environment_id, history_id)",
                          f"DROP INDEX IF EXISTS {table}_env_hist")
        for table in TABLES
    ]
