"""Fixtures for the GitOps tests of this folder: a bare remote (`gitops`), a switchable kubectl (`kubectl`) and the
real `gitops` queue (`gitops_queue`). They live in runfixtures.py; pytest finds them through this conftest."""

from tests.deployments.runfixtures import gitops, gitops_queue, kubectl  # noqa: F401 - fixtures for this folder
