"""Fixtures for the live view tests: the local Kubernetes API server (tests/kubeapi.py); test modules register
``tests.aws`` (moto_server, for the EKS node groups)."""

import pytest

from tests.kubeapi import kubeapi  # noqa: F401 - fixture for this folder


@pytest.fixture(autouse=True)
def no_eks_reads(settings):
    """The EKS API is read only by the tests that start moto (``eks_on_moto``)."""
    settings.LIVE_READ_EKS = False
