"""The local Kubernetes API server fixture (tests/kubeapi.py) for the live view tests."""

from tests.kubeapi import kubeapi  # noqa: F401 - fixture for this folder
