import deployments.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('deployments', '0005_compose'),
    ]

    operations = [
        migrations.AddField(
            model_name='environment',
            name='ingress_controller_namespace',
            field=models.CharField(default='ingress-nginx', help_text='Namespace of the ingress controller pods: the only namespace besides tesslate whose pods may open connections to project pods (NetworkPolicy project-isolation).', max_length=63, validators=[deployments.validators.validate_dns1123_label]),
        ),
        migrations.AddField(
            model_name='environment',
            name='backend_readiness_path',
            field=models.CharField(default='/health', help_text="The backend's readiness check: the guide's /health, or /ready on Studio releases that serve it (it also checks the database).", max_length=255, validators=[deployments.validators.validate_http_path]),
        ),
        migrations.AddField(
            model_name='environment',
            name='datastore_mode',
            field=models.CharField(choices=[('in-cluster', 'In cluster (PostgreSQL and Redis StatefulSets)'), ('external', 'External (RDS / ElastiCache URLs in secrets)')], default='in-cluster', help_text='In cluster: StatefulSets postgres and redis read the Secrets postgres-secret (POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD) and redis-secret (REDIS_PASSWORD). External: DATABASE_URL and REDIS_URL of tesslate-app-secrets point at RDS / ElastiCache. Either way both URLs are secrets.', max_length=10),
        ),
        migrations.AddField(
            model_name='environment',
            name='disabled_addons',
            field=models.CharField(blank=True, help_text='Cluster add-ons the cluster already runs, so git does not install them (comma-separated): cert-manager, ingress-nginx, external-secrets, sealed-secrets, snapshot-controller, aws-ebs-csi-driver, reflector. Each is installed only where the environment needs it.', max_length=255, validators=[deployments.validators.validate_addon_names]),
        ),
    ]
