"""pytest plugin: a local HTTP server that speaks the Kubernetes API calls the portal makes.

Register with ``pytest_plugins = ["tests.kube_store"]``. The ``kube_store`` fixture starts a server on 127.0.0.1,
writes a kubeconfig with two contexts (``test-cluster`` → the server, ``unreachable`` → a closed port) and points
``settings.KUBECONFIG`` at it, so the real ``kubernetes`` client reaches it exactly as it reaches a cluster.

It serves any resource path generically — ``/api/v1/...`` and ``/apis/<group>/<version>/...``, cluster-wide or
namespaced, list (with ``limit`` / ``continue`` pagination), get, create (POST) and delete — from an in-memory
store. Helpers build VolumeSnapshots and VolumeSnapshotContents with the shapes of ``snapshot.storage.k8s.io/v1``
(external-snapshotter CRDs), including ``readyToUse`` turning true after a delay and an error status.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

SNAPSHOT_API = "snapshot.storage.k8s.io/v1"
_PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                   r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?/?$")


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeAPI:
    """The fake API server's state. ``objects[(apiVersion, plural, namespace, name)] = object``.

    ``fail_status``: answer every request with this HTTP status (a Status object), e.g. 401, 403, 500.
    ``requests``: (method, path) of every request, for assertions.
    """

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str, str], dict] = {}
        self.ready_at: dict[tuple[str, str, str, str], float] = {}
        self.fail_status: int | None = None
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.url = ""
        self.kubeconfig = ""
        self.context = "test-cluster"
        self.unreachable_context = "unreachable"

    # --- store -------------------------------------------------------------------------------------
    def add(self, api_version: str, plural: str, obj: dict, *, ready_after: float | None = None) -> dict:
        """Store ``obj``; with ``ready_after`` seconds its ``status.readyToUse`` turns true that much later."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now_text())
        meta.setdefault("resourceVersion", "1")
        key = (api_version, plural, meta.get("namespace", ""), meta["name"])
        with self.lock:
            self.objects[key] = obj
            if ready_after is not None:
                obj.setdefault("status", {})["readyToUse"] = False
                self.ready_at[key] = time.monotonic() + ready_after
        return obj

    def _refresh(self, key) -> None:
        due = self.ready_at.get(key)
        if due is not None and time.monotonic() >= due:
            self.objects[key].setdefault("status", {})["readyToUse"] = True
            del self.ready_at[key]

    def list(self, api_version: str, plural: str, namespace: str = "") -> list[dict]:
        with self.lock:
            keys = sorted(k for k in self.objects if k[0] == api_version and k[1] == plural
                          and (not namespace or k[2] == namespace))
            for key in keys:
                self._refresh(key)
            return [json.loads(json.dumps(self.objects[k])) for k in keys]

    def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict | None:
        key = (api_version, plural, namespace, name)
        with self.lock:
            if key not in self.objects:
                return None
            self._refresh(key)
            return json.loads(json.dumps(self.objects[key]))

    def delete(self, api_version: str, plural: str, namespace: str, name: str) -> bool:
        with self.lock:
            self.ready_at.pop((api_version, plural, namespace, name), None)
            return self.objects.pop((api_version, plural, namespace, name), None) is not None

    # --- snapshot objects with real shapes ------------------------------------------------------------
    def volume_snapshot_pair(self, *, namespace: str, name: str, pvc: str, handle: str, labels: dict | None = None,
                             ready: bool = True, ready_after: float | None = None, error: str = "",
                             restore_size: str = "5Gi", size_bytes: int = 5 * 2**30,
                             created: datetime | None = None, driver: str = "ebs.csi.aws.com",
                             snapshot_class: str = "tesslate-ebs-snapshots") -> tuple[dict, dict]:
        """A VolumeSnapshot of ``pvc`` and its bound, dynamically created VolumeSnapshotContent (``handle`` is the
        EBS snapshot id). ``error`` puts ``status.error`` on both and readyToUse false."""
        vs_uid = str(uuid.uuid4())
        content_name = f"snapcontent-{vs_uid}"
        created = created or datetime.now(UTC)
        created_text = created.strftime("%Y-%m-%dT%H:%M:%SZ")
        error_status = {"message": error, "time": created_text} if error else None
        content_status = {"creationTime": int(created.timestamp() * 1e9), "readyToUse": ready and not error,
                          "restoreSize": size_bytes, "snapshotHandle": handle}
        snapshot_status = {"boundVolumeSnapshotContentName": content_name, "creationTime": created_text,
                           "readyToUse": ready and not error, "restoreSize": restore_size}
        if error_status:
            content_status["error"] = error_status
            snapshot_status["error"] = error_status
            if not handle:
                del content_status["snapshotHandle"]
        content = {
            "apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshotContent",
            "metadata": {"name": content_name, "creationTimestamp": created_text},
            "spec": {"deletionPolicy": "Retain", "driver": driver, "source": {"volumeHandle": f"vol-{vs_uid[:17]}"},
                     "volumeSnapshotClassName": snapshot_class,
                     "volumeSnapshotRef": {"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshot", "name": name,
                                           "namespace": namespace, "uid": vs_uid}},
            "status": content_status,
        }
        snapshot = {
            "apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshot",
            "metadata": {"name": name, "namespace": namespace, "uid": vs_uid, "labels": labels or {},
                         "creationTimestamp": created_text},
            "spec": {"source": {"persistentVolumeClaimName": pvc}, "volumeSnapshotClassName": snapshot_class},
            "status": snapshot_status,
        }
        self.add(SNAPSHOT_API, "volumesnapshotcontents", content, ready_after=ready_after)
        self.add(SNAPSHOT_API, "volumesnapshots", snapshot, ready_after=ready_after)
        return snapshot, content


class _Handler(BaseHTTPRequestHandler):
    api: KubeAPI

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                          "reason": reason, "code": code})

    def _route(self):
        parsed = urlparse(self.path)
        self.api.requests.append((self.command, parsed.path))
        if self.api.fail_status:
            self._status(self.api.fail_status, "Failure", f"injected failure {self.api.fail_status}")
            return None
        match = _PATH.match(parsed.path)
        if not match:
            self._status(404, "NotFound", f"the server could not find the requested resource {parsed.path}")
            return None
        api_version = "v1" if match["core"] else f"{match['group']}/{match['version']}"
        return api_version, match["plural"], match["namespace"] or "", match["name"], parse_qs(parsed.query)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        route = self._route()
        if route is None:
            return
        api_version, plural, namespace, name, query = route
        if name:
            obj = self.api.get(api_version, plural, namespace, name)
            if obj is None:
                self._status(404, "NotFound", f'{plural} "{name}" not found')
            else:
                self._send(200, obj)
            return
        items = self.api.list(api_version, plural, namespace)
        start = int((query.get("continue") or ["0"])[0] or 0)
        limit = int((query.get("limit") or ["0"])[0] or 0)
        page = items[start:start + limit] if limit else items[start:]
        following = start + len(page)
        meta = {"resourceVersion": "1"}
        if limit and following < len(items):
            meta["continue"] = str(following)
        self._send(200, {"apiVersion": api_version, "kind": "List", "metadata": meta, "items": page})

    def do_POST(self) -> None:  # noqa: N802
        route = self._route()
        if route is None:
            return
        api_version, plural, namespace, _, _ = route
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if namespace:
            body.setdefault("metadata", {})["namespace"] = namespace
        if self.api.get(api_version, plural, namespace, body["metadata"]["name"]) is not None:
            self._status(409, "AlreadyExists", f'{plural} "{body["metadata"]["name"]}" already exists')
            return
        self._send(201, self.api.add(api_version, plural, body))

    def do_DELETE(self) -> None:  # noqa: N802
        route = self._route()
        if route is None:
            return
        api_version, plural, namespace, name, _ = route
        if self.api.delete(api_version, plural, namespace, name or ""):
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
        else:
            self._status(404, "NotFound", f'{plural} "{name}" not found')


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def kube_store(settings, tmp_path):
    """A running fake API server (KubeAPI), reachable through settings.KUBECONFIG context ``test-cluster``."""
    api = KubeAPI()
    handler = type("Handler", (_Handler,), {"api": api})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    clusters = [("test-cluster", api.url), ("unreachable", f"http://127.0.0.1:{_closed_port()}")]
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "test-cluster",
        "clusters": [{"name": name, "cluster": {"server": url}} for name, url in clusters],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "tester"}} for name, _ in clusters],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    api.kubeconfig = str(path)
    settings.KUBECONFIG = str(path)
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
