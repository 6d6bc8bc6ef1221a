"""The one place that builds Kubernetes API clients.

A cluster is named by a kubeconfig *context* (the environment's ``kube_context``); the kubeconfig file is
``settings.KUBECONFIG`` (empty: ``$KUBECONFIG`` or ``~/.kube/config``). With no kubeconfig and no context the
in-cluster service-account configuration is used (the portal running inside the cluster it manages). Callers
get a fresh ``kubernetes.client.ApiClient`` per call (the generated clients are not thread-safe to share between
jobs) and must close it; ``api_client`` is a context manager that does.

Errors from the transport or the API server are turned into ``ClusterError`` with the context name and a
one-line reason, so pages and job runs can show them without a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

# Fail fast: a page waits on these reads. (connect, read) seconds, as urllib3 takes them.
REQUEST_TIMEOUT = (5, 30)


class ClusterError(Exception):
    """The cluster could not be reached or refused a request. ``reason`` is one line, without credentials."""

    def __init__(self, context: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(f"Cluster {context or '(in-cluster)'}: {reason}")
        self.context = context
        self.reason = reason
        self.status = status

    @property
    def kind(self) -> str:
        """credentials (401 Unauthorized, 403 Forbidden) | unreachable (no answer) | error (any other answer):
        the kinds AWS sources use (clients.ebs_snapshots.AwsSourceError)."""
        if self.status in (401, 403):
            return "credentials"
        return "unreachable" if self.status is None else "error"


def _kubeconfig_path() -> str | None:
    path = getattr(settings, "KUBECONFIG", "") or os.environ.get("KUBECONFIG", "")
    if path:
        return path
    default = os.path.expanduser("~/.kube/config")
    return default if os.path.exists(default) else None


def configuration(*, context: str = "") -> k8s_client.Configuration:
    """The client configuration for a kubeconfig context (empty: current context, or in-cluster config).

    Raises ClusterError when the kubeconfig or the context does not exist.
    """
    config = k8s_client.Configuration()
    path = _kubeconfig_path()
    try:
        if path is None and not context:
            k8s_config.load_incluster_config(client_configuration=config)
        else:
            k8s_config.load_kube_config(config_file=path, context=context or None, client_configuration=config,
                                        persist_config=False)
    except (ConfigException, FileNotFoundError, TypeError) as exc:
        raise ClusterError(context, f"no usable kubeconfig: {exc}") from None
    return config


@contextmanager
def api_client(*, context: str = "") -> Iterator[k8s_client.ApiClient]:
    """A Kubernetes API client for ``context``, closed on exit."""
    api = k8s_client.ApiClient(configuration(context=context))
    try:
        yield api
    finally:
        api.close()


def cluster_error(context: str, exc: Exception) -> ClusterError:
    """Turn an exception of the kubernetes client or urllib3 into a ClusterError with a one-line reason."""
    if isinstance(exc, ClusterError):
        return exc
    if isinstance(exc, k8s_client.ApiException):
        reason = (exc.reason or "error").strip()
        return ClusterError(context, f"the API server answered {exc.status} {reason}", status=exc.status)
    return ClusterError(context, f"unreachable ({type(exc).__name__})")
