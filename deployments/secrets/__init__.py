"""Secrets in one package: encryption at rest (``crypto``), the kubeseal format (``kubeseal``, no models),
Sealed Secrets delivery (``sealing``), the AWS Secrets Manager sync (``secrets_manager``) and what a render
calls to deliver an environment's values (``delivery``). This ``__init__`` imports nothing that reads models, so
the models can use the pure parts (``kubeseal``, ``crypto``)."""
