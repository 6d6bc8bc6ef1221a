"""Fixtures for the live view tests: the local Kubernetes API server (tests/kubeapi.py) and moto_server
(tests/aws.py, for the EKS node groups)."""

import pytest

from tests.aws import aws, moto_server  # noqa: F401 - fixtures for this folder
from tests.kubeapi import kubeapi  # noqa: F401 - fixture for this folder


@pytest.fixture(autouse=True)
def no_eks_reads(settings):
    """The EKS API is read only by the tests that start moto (``eks_on_moto``)."""
    settings.LIVE_READ_EKS = False
