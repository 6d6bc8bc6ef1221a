from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance: access, approvals and audit"

    def ready(self) -> None:
        from governance import object_rules, receivers  # noqa: F401 - object rules; run signal receivers
