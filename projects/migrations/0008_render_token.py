"""``RenderToken``: every project's render change marker, and the database triggers that replace it.

The token is what a project unit's fingerprint hashes (deployments.rendering.units), so a run reads only the
projects whose token moved. It must change whenever anything the project's render reads changes, whoever writes
it: the services, a queryset ``update()``, ``bulk_create``, a cascade, hand-written SQL. Hence triggers:

* ``projects_project``: an INSERT creates the project's token row; an UPDATE of a rendered column
  (PROJECT_COLUMNS) replaces its token;
* ``projects_container``, ``projects_volumerestore``: any INSERT, UPDATE or DELETE replaces the token of the
  project(s) the row belongs (or belonged) to;
* ``projects_servicecredential``: INSERT, DELETE, or an UPDATE of a rendered column (CREDENTIAL_COLUMNS) replaces
  the token of the container's project.

Tokens are random (never a counter), so a database restored from a backup never meets a token an earlier render
recorded for other content. PostgreSQL and SQLite (benchmarks, development) get equivalent triggers; the selector
trusts tokens only while every trigger exists (deployments.selectors.render_tokens_trusted), since a SQLite table
rebuild by a later migration drops its triggers.
"""

import django.db.models.deletion
from django.db import migrations, models

PROJECT_COLUMNS = ["slug", "owner", "volume_size", "restore_snapshot_id", "state", "hibernation_stamp",
                   "environment_id"]
# The rendered columns, and the fingerprint (the credentials check, projects.credentials, trusts the token too).
CREDENTIAL_COLUMNS = ["container_id", "key", "version", "sealed_value", "fingerprint"]

_PG_TOKEN = "replace(gen_random_uuid()::text, '-', '')"
_SQLITE_TOKEN = "lower(hex(randomblob(16)))"

_PG = f"""
INSERT INTO projects_rendertoken (project_id, token, credentials_checked)
    SELECT id, {_PG_TOKEN}, '' FROM projects_project;

CREATE OR REPLACE FUNCTION projects_project_render_token() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO projects_rendertoken (project_id, token, credentials_checked) VALUES (NEW.id, {_PG_TOKEN}, '')
            ON CONFLICT (project_id) DO UPDATE SET token = EXCLUDED.token;
    ELSE
        UPDATE projects_rendertoken SET token = {_PG_TOKEN} WHERE project_id = NEW.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER projects_project_render_token
    AFTER INSERT OR UPDATE OF {", ".join(PROJECT_COLUMNS)} ON projects_project
    FOR EACH ROW EXECUTE FUNCTION projects_project_render_token();

CREATE OR REPLACE FUNCTION projects_child_render_token() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE projects_rendertoken SET token = {_PG_TOKEN} WHERE project_id = OLD.project_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE projects_rendertoken SET token = {_PG_TOKEN} WHERE project_id = NEW.project_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER projects_container_render_token AFTER INSERT OR UPDATE OR DELETE ON projects_container
    FOR EACH ROW EXECUTE FUNCTION projects_child_render_token();
CREATE TRIGGER projects_volumerestore_render_token AFTER INSERT OR UPDATE OR DELETE ON projects_volumerestore
    FOR EACH ROW EXECUTE FUNCTION projects_child_render_token();

CREATE OR REPLACE FUNCTION projects_credential_render_token() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE projects_rendertoken SET token = {_PG_TOKEN}
            WHERE project_id = (SELECT project_id FROM projects_container WHERE id = OLD.container_id);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE projects_rendertoken SET token = {_PG_TOKEN}
            WHERE project_id = (SELECT project_id FROM projects_container WHERE id = NEW.container_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER projects_servicecredential_render_token
    AFTER INSERT OR DELETE OR UPDATE OF {", ".join(CREDENTIAL_COLUMNS)} ON projects_servicecredential
    FOR EACH ROW EXECUTE FUNCTION projects_credential_render_token();
"""

_PG_REVERSE = """
DROP TRIGGER IF EXISTS projects_project_render_token ON projects_project;
DROP TRIGGER IF EXISTS projects_container_render_token ON projects_container;
DROP TRIGGER IF EXISTS projects_volumerestore_render_token ON projects_volumerestore;
DROP TRIGGER IF EXISTS projects_servicecredential_render_token ON projects_servicecredential;
DROP FUNCTION IF EXISTS projects_project_render_token();
DROP FUNCTION IF EXISTS projects_child_render_token();
DROP FUNCTION IF EXISTS projects_credential_render_token();
"""

# What deployments.selectors.render_tokens_trusted looks for.
PG_TRIGGERS = ["projects_project_render_token", "projects_container_render_token",
               "projects_volumerestore_render_token", "projects_servicecredential_render_token"]
SQLITE_TRIGGERS = ["projects_project_render_token_insert", "projects_project_render_token_update"] + [
    f"{table}_render_token_{op}" for table in ("projects_container", "projects_volumerestore",
                                                "projects_servicecredential") for op in ("insert", "update", "delete")]


def _sqlite_statements() -> list[str]:
    bump = f"UPDATE projects_rendertoken SET token = {_SQLITE_TOKEN} WHERE project_id"
    statements = [
        "INSERT INTO projects_rendertoken (project_id, token, credentials_checked) "
        f"SELECT id, {_SQLITE_TOKEN}, '' FROM projects_project",
        "CREATE TRIGGER projects_project_render_token_insert AFTER INSERT ON projects_project FOR EACH ROW "
        "BEGIN INSERT OR REPLACE INTO projects_rendertoken (project_id, token, credentials_checked) "
        f"VALUES (NEW.id, {_SQLITE_TOKEN}, ''); END",
        f"CREATE TRIGGER projects_project_render_token_update AFTER UPDATE OF {', '.join(PROJECT_COLUMNS)} "
        f"ON projects_project FOR EACH ROW BEGIN {bump} = NEW.id; END",
    ]
    for table in ("projects_container", "projects_volumerestore"):
        statements += [
            f"CREATE TRIGGER {table}_render_token_insert AFTER INSERT ON {table} FOR EACH ROW "
            f"BEGIN {bump} = NEW.project_id; END",
            f"CREATE TRIGGER {table}_render_token_update AFTER UPDATE ON {table} FOR EACH ROW "
            f"BEGIN {bump} IN (OLD.project_id, NEW.project_id); END",
            f"CREATE TRIGGER {table}_render_token_delete AFTER DELETE ON {table} FOR EACH ROW "
            f"BEGIN {bump} = OLD.project_id; END",
        ]
    of_container = "(SELECT project_id FROM projects_container WHERE id IN ({}))"
    table = "projects_servicecredential"
    statements += [
        f"CREATE TRIGGER {table}_render_token_insert AFTER INSERT ON {table} FOR EACH ROW "
        f"BEGIN {bump} IN {of_container.format('NEW.container_id')}; END",
        f"CREATE TRIGGER {table}_render_token_update AFTER UPDATE OF {', '.join(CREDENTIAL_COLUMNS)} ON {table} "
        f"FOR EACH ROW BEGIN {bump} IN {of_container.format('OLD.container_id, NEW.container_id')}; END",
        f"CREATE TRIGGER {table}_render_token_delete AFTER DELETE ON {table} FOR EACH ROW "
        f"BEGIN {bump} IN {of_container.format('OLD.container_id')}; END",
    ]
    return statements


def _create_triggers(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(_PG)
    elif vendor == "sqlite":
        for statement in _sqlite_statements():
            schema_editor.execute(statement)
    # Other databases get no triggers: the selector then never trusts tokens (content fingerprints instead).


def _drop_triggers(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(_PG_REVERSE)
    elif vendor == "sqlite":
        for name in SQLITE_TRIGGERS:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")


class Migration(migrations.Migration):

    dependencies = [
        ('projects', '0007_servicecredential_derived_from'),
    ]

    operations = [
        migrations.CreateModel(
            name='RenderToken',
            fields=[
                ('project', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True,
                                                 related_name='render_token', serialize=False,
                                                 to='projects.project')),
                ('token', models.CharField(editable=False, max_length=32)),
                ('credentials_checked', models.CharField(blank=True, default='', editable=False, max_length=32)),
            ],
        ),
        migrations.RunPython(_create_triggers, _drop_triggers),
    ]
