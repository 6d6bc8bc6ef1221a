import uuid

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models

import deployments.validators


def container_uuids_fill(apps, schema_editor):
    Container = apps.get_model("projects", "Container")
    for pk in Container.objects.filter(uuid__isnull=True).values_list("pk", flat=True):
        Container.objects.filter(pk=pk).update(uuid=uuid.uuid4())


class Migration(migrations.Migration):

    dependencies = [
        ('projects', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='container',
            name='env_vars',
            field=models.TextField(blank=True, help_text='NAME=value, one per line. Plain values written to git: never passwords or tokens.', validators=[deployments.validators.validate_env_vars_text]),
        ),
        migrations.AddField(
            model_name='container',
            name='probe',
            field=models.CharField(blank=True, choices=[('http', 'HTTP GET on the port'), ('tcp', 'TCP connect to the port')], help_text='Readiness and startup check. Empty: HTTP GET for dev containers, pg_isready for PostgreSQL, TCP connect for other services.', max_length=4),
        ),
        migrations.AddField(
            model_name='container',
            name='probe_path',
            field=models.CharField(default='/', help_text='Path of the HTTP check.', max_length=255, validators=[deployments.validators.validate_http_path]),
        ),
        migrations.AddField(
            model_name='container',
            name='start_command',
            field=models.CharField(blank=True, help_text="Shell command run in /app/{dir}. Empty: the role's default for the devserver image (frontend: npm run dev on the port; backend: npm run dev with PORT set), the image's own command for other images.", max_length=1000, validators=[deployments.validators.validate_command_line]),
        ),
        migrations.AddField(
            model_name='container',
            name='startup_timeout_seconds',
            field=models.PositiveIntegerField(default=600, help_text='How long the first start (dependency install, first build) may take before the pod restarts.', validators=[django.core.validators.MinValueValidator(30), django.core.validators.MaxValueValidator(3600)]),
        ),
        # A unique UUID for existing rows: add the column nullable, give every row its own value, then make it
        # unique (AddField with a callable default evaluates it once, so every existing row would share a value).
        migrations.AddField(
            model_name='container',
            name='uuid',
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(container_uuids_fill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='container',
            name='uuid',
            field=models.UUIDField(default=uuid.uuid4, editable=False, help_text="Studio's container id: the pod label tesslate.io/container-id.", unique=True),
        ),
        migrations.CreateModel(
            name='ServiceCredential',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(max_length=64, validators=[deployments.validators.validate_secret_key_name])),
                ('ciphertext', models.TextField(editable=False, help_text='Fernet token; never the plaintext.')),
                ('fingerprint', models.CharField(editable=False, max_length=24)),
                ('version', models.PositiveIntegerField(default=1, editable=False, help_text='Increases with every new value; rolls the pods that read it.')),
                ('sealed_value', models.TextField(blank=True, editable=False)),
                ('sealed_for', models.CharField(blank=True, editable=False, max_length=100)),
                ('synced_version', models.PositiveIntegerField(default=0, editable=False)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('container', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='credentials', to='projects.container')),
            ],
            options={
                'ordering': ['container', 'key'],
                'constraints': [models.UniqueConstraint(fields=('container', 'key'), name='servicecredential_unique_key_per_container')],
            },
        ),
    ]
