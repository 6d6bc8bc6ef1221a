from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "projects"
    verbose_name = "Projects"

    def ready(self) -> None:
        # The projects' generated credentials are delivered with every render, after the environment's secrets.
        from deployments.secrets.delivery import register_deliverer
        from projects.credentials import credentials_deliver

        register_deliverer(credentials_deliver)
