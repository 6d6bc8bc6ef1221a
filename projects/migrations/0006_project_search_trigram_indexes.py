"""Trigram indexes for the admin's project search (slug, name and owner contain the term): on PostgreSQL, each
`UPPER(column::text) LIKE UPPER('%term%')` that Django's icontains writes is answered from a GIN index instead of
reading every project. Needs the pg_trgm extension (created here; it is a trusted extension since PostgreSQL 13).
Does nothing on other databases (SQLite in development reads its few rows)."""

from django.db import migrations

COLUMNS = ["slug", "name", "owner"]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in COLUMNS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS projects_project_{column}_upper_trgm ON projects_project "
            f"USING gin ((UPPER({column}::text)) gin_trgm_ops)")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS projects_project_{column}_upper_trgm")


class Migration(migrations.Migration):
    dependencies = [("projects", "0005_after_hibernation")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
