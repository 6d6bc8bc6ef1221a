from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "projects"
    verbose_name = "Projects"

    def ready(self) -> None:
        # The projects' generated credentials are delivered with every render, after the environment's secrets.
        from deployments.secrets.delivery import register_deliverer
        from deployments.services import encrypted_store_register
        from projects.credentials import credentials_deliver
        from projects.models import ServiceCredential

        register_deliverer(credentials_deliver)
        # Key rotation (manage.py rotate_encryption_key) re-encrypts them with the environment's secrets.
        encrypted_store_register(
            ServiceCredential, select_related=("container__project__environment",),
            label=lambda c: f"{c.container.project.environment.name}/{c.container.project}/{c.container}/{c.key}")
