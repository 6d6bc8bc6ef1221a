"""pytest plugin: a local HTTP server that answers the Kubernetes API list calls the portal makes.

Use it through a conftest (``from tests.kubeapi import kubeapi``) or ``pytest_plugins``. The ``kubeapi`` fixture
starts a server on a free port of 127.0.0.1, writes a kubeconfig whose context ``test-cluster`` points at it
(bearer token auth) and sets ``settings.KUBECONFIG``, so the real ``kubernetes`` client reaches it exactly as it
reaches a cluster.

Objects are stored as the API's own JSON shapes; the builders below (``node``, ``namespace``, ``pod``,
``endpoint_slice``, ``certificate``, ``argo_application``, ``flux_kustomization``) make realistic ones. Lists honour
``limit`` and ``continue``. A resource whose API is not registered with ``serve`` answers 404 (CRD not installed);
``fail_with(status)`` makes every request fail (503 for an API server in trouble, 401 for a bad token).
"""

from __future__ import annotations

import datetime
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

TOKEN = "kubeapi-test-token"
CONTEXT = "test-cluster"

NODES = "/api/v1/nodes"
NAMESPACES = "/api/v1/namespaces"
PODS = "/api/v1/pods"
ENDPOINT_SLICES = "/apis/discovery.k8s.io/v1/endpointslices"
CERTIFICATES = "/apis/cert-manager.io/v1/certificates"
APPLICATIONS = "/apis/argoproj.io/v1alpha1/applications"
KUSTOMIZATIONS = "/apis/kustomize.toolkit.fluxcd.io/v1/kustomizations"
CORE = (NODES, NAMESPACES, PODS, ENDPOINT_SLICES)
LIST_KINDS = {NODES: ("v1", "NodeList"), NAMESPACES: ("v1", "NamespaceList"), PODS: ("v1", "PodList"),
              ENDPOINT_SLICES: ("discovery.k8s.io/v1", "EndpointSliceList"),
              CERTIFICATES: ("cert-manager.io/v1", "CertificateList"),
              APPLICATIONS: ("argoproj.io/v1alpha1", "ApplicationList"),
              KUSTOMIZATIONS: ("kustomize.toolkit.fluxcd.io/v1", "KustomizationList")}


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        server: KubeAPIServer = self.server.owner
        url = urlparse(self.path)
        server.requests.append(url.path)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, _status(401, "Unauthorized", "Unauthorized"))
        if server.failure:
            code = server.failure
            return self._send(code, _status(code, "ServiceUnavailable" if code >= 500 else "Failure", "injected"))
        items = server.objects.get(url.path)
        if items is None:
            return self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))
        query = parse_qs(url.query)
        offset = int((query.get("continue") or ["0"])[0] or 0)
        limit = int((query.get("limit") or ["0"])[0] or 0) or len(items) or 1
        limit = min(limit, server.page_size or limit)
        page = items[offset:offset + limit]
        more = offset + limit < len(items)
        api_version, kind = LIST_KINDS[url.path]
        self._send(200, {"apiVersion": api_version, "kind": kind,
                         "metadata": {"resourceVersion": "1", **({"continue": str(offset + limit)} if more else {})},
                         "items": page})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class KubeAPIServer:
    def __init__(self) -> None:
        self.objects: dict[str, list[dict]] = {path: [] for path in CORE}
        self.requests: list[str] = []
        self.failure = 0
        self.page_size = 0  # >0: the server pages lists at most this long whatever limit the client asks
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.owner = self
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def serve(self, *paths: str) -> None:
        """Serve these custom resource APIs (as if their CRDs were installed)."""
        for path in paths:
            self.objects.setdefault(path, [])

    def add(self, path: str, *objects: dict) -> None:
        self.serve(path)
        self.objects[path].extend(objects)

    def fail_with(self, status: int) -> None:
        self.failure = status

    def kubeconfig(self, token: str = TOKEN) -> dict:
        return {"apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
                "clusters": [{"name": CONTEXT, "cluster": {"server": self.url}}],
                "users": [{"name": "tester", "user": {"token": token}}],
                "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "tester"}}]}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def kubeapi(tmp_path, settings):
    """A running local Kubernetes API server with a kubeconfig (context ``test-cluster``) in settings.KUBECONFIG."""
    server = KubeAPIServer()
    server.start()
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(server.kubeconfig()))
    settings.KUBECONFIG = str(path)
    yield server
    server.stop()


# --- object builders (the API's shapes) -----------------------------------------------------------------------

def ts(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(name: str, namespace: str | None = None, labels: dict | None = None, **extra) -> dict:
    meta = {"name": name, "uid": f"uid-{namespace or ''}-{name}", "resourceVersion": "1",
            "creationTimestamp": "2026-11-01T00:00:00Z", "labels": labels or {}}
    if namespace:
        meta["namespace"] = namespace
    meta.update(extra)
    return meta


def node(name: str, *, group: str, instance_type: str = "t3.large", capacity_type: str = "ON_DEMAND",
         labels: dict | None = None, taints: list[dict] | None = None, ready: bool = True) -> dict:
    all_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "topology.kubernetes.io/zone":
                  "us-east-1a", "node.kubernetes.io/instance-type": instance_type,
                  "eks.amazonaws.com/nodegroup": group, "eks.amazonaws.com/capacityType": capacity_type,
                  **(labels or {})}
    return {"apiVersion": "v1", "kind": "Node", "metadata": _meta(name, labels=all_labels),
            "spec": {"providerID": f"aws:///us-east-1a/i-{abs(hash(name)) % 10**17:017d}", "taints": taints or []},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "reason": "KubeletReady" if ready else "KubeletNotReady"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.3-eks"}}}


def namespace(name: str, *, labels: dict | None = None, deleting_since: datetime.datetime | None = None,
              finalizers: list[str] | None = None, spec_finalizers: list[str] | None = None,
              conditions: list[dict] | None = None) -> dict:
    extra = {}
    if deleting_since is not None:
        extra["deletionTimestamp"] = ts(deleting_since)
    if finalizers:
        extra["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name, labels=labels, **extra),
            "spec": {"finalizers": spec_finalizers if spec_finalizers is not None else ["kubernetes"]},
            "status": {"phase": "Terminating" if deleting_since else "Active", "conditions": conditions or []}}


def pod(name: str, namespace: str, *, labels: dict | None = None, image: str = "nginx:1.27", ready: bool = True,
        restarts: int = 0, waiting: tuple[str, str] | None = None, last_terminated: str = "",
        container: str = "main") -> dict:
    state = {"waiting": {"reason": waiting[0], "message": waiting[1]}} if waiting else (
        {"running": {"startedAt": "2026-11-30T00:00:00Z"}})
    last = {"terminated": {"reason": last_terminated, "exitCode": 137}} if last_terminated else {}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(name, namespace, labels),
            "spec": {"containers": [{"name": container, "image": image}]},
            "status": {"phase": "Running" if not waiting else "Pending",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [{"name": container, "image": image, "imageID": "", "ready": ready,
                                              "restartCount": restarts, "started": ready, "state": state,
                                              "lastState": last}]}}


def endpoint_slice(service: str, namespace: str, *, ready: int = 1, not_ready: int = 0) -> dict:
    endpoints = [{"addresses": [f"10.0.0.{i + 1}"], "conditions": {"ready": True, "serving": True}}
                 for i in range(ready)]
    endpoints += [{"addresses": [f"10.0.1.{i + 1}"], "conditions": {"ready": False, "serving": False}}
                  for i in range(not_ready)]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": _meta(f"{service}-abcde", namespace, {"kubernetes.io/service-name": service}),
            "endpoints": endpoints, "ports": [{"name": "http", "port": 3000, "protocol": "TCP"}]}


def certificate(name: str, namespace: str, *, ready: bool, reason: str = "", message: str = "",
                dns_names: list[str] | None = None) -> dict:
    return {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": _meta(name, namespace),
            "spec": {"secretName": name, "dnsNames": dns_names or [], "issuerRef": {"name": "letsencrypt-prod",
                                                                                    "kind": "ClusterIssuer"}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "reason": reason or ("Ready" if ready else "Failed"), "message": message}],
                       **({"notAfter": "2027-02-28T00:00:00Z"} if ready else {})}}


def argo_application(name: str, *, project: str, sync: str = "Synced", health: str = "Healthy",
                     revision: str = "", message: str = "") -> dict:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": _meta(name, "argocd"),
            "spec": {"project": project, "source": {"repoURL": "https://git.example.com/gitops.git"},
                     "destination": {"server": "https://kubernetes.default.svc"}},
            "status": {"sync": {"status": sync, "revision": revision},
                       "health": {"status": health, **({"message": message} if message else {})}}}


def flux_kustomization(name: str, *, ready: bool = True, reason: str = "ReconciliationSucceeded",
                       revision: str = "", message: str = "") -> dict:
    return {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": _meta(name, "flux-system"),
            "spec": {"interval": "10m", "path": "./", "prune": True, "sourceRef": {"kind": "GitRepository",
                                                                                  "name": "tesslate-gitops"}},
            "status": {"lastAppliedRevision": revision,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": reason,
                                       "message": message}]}}
