"""AWS and Kubernetes endpoints that throttle, refuse the credentials or vanish, under a running portal (gunicorn +
an RQ worker): the cost sync, the snapshot sync and the live refresh run through the worker and end failed with a
clear error kind; the pages show the error beside the cached data and its age; no page answers 500.

One endpoint stands for both clouds (a small proxy on 127.0.0.1): AWS JSON calls (Cost Explorer) get
ThrottlingException / UnrecognizedClientException, AWS query calls (EC2 DescribeSnapshots) RequestLimitExceeded /
AuthFailure, Kubernetes calls 429 / 403 Status objects; "vanish" closes its port (connection refused). Before the
faults, Kubernetes calls pass through to tests.kubeapi, which gives the live view its cached copy.

Function-level versions: tests/costs/test_sync.py (throttling retried, expired credentials not), tests/snapshots/
test_sync.py and test_clients.py (throttle / expired through tests/snapshots/awsproxy.py), tests/live/test_live.py
(unauthorized token, no kubeconfig)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests import kubeapi as k
from tests.faults.stack import _wait

pytestmark = [pytest.mark.slow, pytest.mark.faults]

AWS_JSON = {"throttle": (400, "ThrottlingException", "Rate exceeded"),
            "denied": (400, "UnrecognizedClientException", "The security token included in the request is invalid.")}
AWS_QUERY = {"throttle": (503, "RequestLimitExceeded", "Request limit exceeded."),
             "denied": (401, "AuthFailure", "AWS was not able to validate the provided access credentials")}
KUBE = {"throttle": (429, "TooManyRequests", "Too many requests, please try again later."),
        "denied": (403, "Forbidden", 'namespaces is forbidden: User "portal" cannot list resource "namespaces"')}


class FaultEndpoint:
    """``mode``: "pass" (Kubernetes calls go to ``upstream``), "throttle" or "denied"; ``stop()`` makes it vanish."""

    def __init__(self, upstream: str) -> None:
        self.mode, self.upstream, self.calls = "pass", upstream, 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, body: bytes, content_type: str, headers=()):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                endpoint.calls += 1
                mode = endpoint.mode
                if self.path.startswith(("/api/", "/apis/", "/api?", "/apis?", "/version")):
                    if mode == "pass":
                        return self._forward(body)
                    status, reason, message = KUBE[mode]
                    status_body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                                   "reason": reason, "code": status}
                    return self._reply(status, json.dumps(status_body).encode(), "application/json",
                                       [("Retry-After", "1")] if status == 429 else [])
                if self.headers.get("X-Amz-Target"):
                    status, code, message = AWS_JSON["throttle" if mode == "pass" else mode]
                    return self._reply(status, json.dumps({"__type": code, "message": message}).encode(),
                                       "application/x-amz-json-1.1")
                status, code, message = AWS_QUERY["throttle" if mode == "pass" else mode]
                xml = (f"<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error><Code>{code}</Code>"
                       f"<Message>{message}</Message></Error></Errors><RequestID>fault-1</RequestID></Response>")
                return self._reply(status, xml.encode(), "text/xml")

            def _forward(self, body):
                headers = {key: value for key, value in self.headers.items()
                           if key.lower() not in ("host", "content-length")}
                request = urllib.request.Request(endpoint.upstream + self.path, data=body, headers=headers,
                                                 method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, data, kind = response.status, response.read(), response.headers["Content-Type"]
                except urllib.error.HTTPError as exc:
                    status, data, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "application/json")
                self._reply(status, data, kind or "application/json")

            do_GET = do_POST = do_PUT = _handle  # noqa: N815 - http.server's naming

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._http.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


SEED = """
import datetime
from decimal import Decimal
from django.utils import timezone
from costs.models import CostActual, EnvironmentCostSettings
from snapshots.models import Snapshot, SnapshotSource
from tests.factories import eks_environment_factory, project_factory
now = timezone.now()
env = eks_environment_factory(name="cloud-fault", kube_context="test-cluster")
project = project_factory(env, slug="shop")
first = now.date().replace(day=1)
start = (first - datetime.timedelta(days=20)).replace(day=1)
CostActual.objects.create(environment=env, granularity="MONTHLY", period_start=start, period_end=first,
                          service="Amazon Elastic Compute Cloud - Compute", amount=Decimal("305.55"),
                          fetched_at=now - datetime.timedelta(days=3))
Snapshot.objects.create(environment=env, project=project, key="snap-0fault000000001",
                        ebs_snapshot_id="snap-0fault000000001",
                        namespace=project.namespace, volume_name="project-storage", state="completed", size_gib=5,
                        started_at=now - datetime.timedelta(days=1), seen_in_aws=True)
# What earlier successful syncs left: when the figures were fetched, when each snapshot source last answered.
EnvironmentCostSettings.objects.update_or_create(environment=env, defaults={
    "last_fetched_at": now - datetime.timedelta(days=3)})
for kind in ("ebs", "cluster"):
    SnapshotSource.objects.create(environment=env, kind=kind, last_attempt_at=now - datetime.timedelta(days=1),
                                  last_success_at=now - datetime.timedelta(days=1), item_count=1)
print(env.pk)
"""

REQUEST = """
from costs.services import cost_sync_request
from live.services import live_refresh_request
from snapshots.services import snapshot_sync_request
from deployments.models import Environment
env = Environment.objects.get(name="cloud-fault")
runs = [cost_sync_request(force=True, reason="{mode}"), snapshot_sync_request(environment=env, reason="{mode}"),
        live_refresh_request(environment_names=["cloud-fault"], reason="{mode}")]
print(" ".join(str(run.pk) for run in runs))
"""

TABLES = ("costs_costsyncrun", "snapshots_snapshotsyncrun", "live_liverefreshrun")
RUN_PAGES = ("/admin/costs/costsyncrun/{}/change/", "/admin/snapshots/snapshotsyncrun/{}/change/",
             "/admin/live/liverefreshrun/{}/change/")
# What each fault must be called on the run (lower case, any of).
WORDS = {"throttle": ("throttl", "rate exceeded", "too many requests", "request limit"),
         "denied": ("credential", "forbidden", "denied", "unauthori", "invalid", "auth"),
         "vanish": ("unreachable", "refused", "could not connect", "connection")}


def _between(text: str, start: str, end: str) -> str:
    assert start in text, f"{start} not on the page"
    return _spaces(text.split(start, 1)[1].split(end, 1)[0])


def _all_between(text: str, start: str, end: str) -> list[str]:
    return [_spaces(part.split(end, 1)[0]) for part in text.split(start)[1:]]


def _spaces(text: str) -> str:
    return text.replace("\xa0", " ").replace("&nbsp;", " ")


def _finished(stack, table, run_id):
    rows = stack.sql(f"SELECT status, error_kind, error, enqueue_error FROM {table} WHERE id = %s", run_id)  # noqa: S608
    return rows[0] if rows and rows[0][0] not in ("queued", "running") else None


def test_throttled_refused_and_vanished_endpoints_fail_visibly_and_keep_the_cache(stack, tmp_path):
    cluster = k.KubeAPIServer()
    cluster.start()
    endpoint = FaultEndpoint(cluster.url)
    kubeconfig = cluster.kubeconfig()
    kubeconfig["clusters"][0]["cluster"]["server"] = endpoint.url
    config_path = stack.base / "kubeconfig"
    config_path.write_text(json.dumps(kubeconfig))
    try:
        stack.start_portal({
            "KUBECONFIG": str(config_path), "AWS_ENDPOINT_URL": endpoint.url, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1",
            "COST_SYNC_ATTEMPTS": "2", "COST_SYNC_BACKOFF_SECONDS": "0", "LIVE_REFRESH_ATTEMPTS": "2",
            "LIVE_REFRESH_BACKOFF_SECONDS": "0", "SNAPSHOT_SOURCE_RETRIES": "1",
            "SNAPSHOT_SOURCE_BACKOFF_SECONDS": "0", "LIVE_READ_EKS": "false", "GITOPS_AUTO_RENDER": "false",
        })
        stack.create_superuser()
        env_id = int(stack.shell(SEED).strip().splitlines()[-1])
        session = stack.login()
        # A healthy cluster read first: the live view's cached copy.
        live_id = int(stack.shell("from live.services import live_refresh_request; "
                                  "print(live_refresh_request(environment_names=['cloud-fault']).pk)").split()[-1])
        status = _wait(lambda: _finished(stack, "live_liverefreshrun", live_id), "the first live refresh", 120)
        assert status[0] == "succeeded", status
        (fetched_at,) = stack.sql("SELECT fetched_at FROM live_livestatus WHERE environment_id = %s", env_id)[0]
        assert fetched_at is not None

        pages = ["/admin/", f"/admin/costs/environmentcostsettings/report/{env_id}/",
                 f"/admin/live/livestatus/environment/{env_id}/", "/admin/snapshots/snapshot/",
                 "/admin/live/livestatus/clusters/"]
        for mode in ("throttle", "denied", "vanish"):
            if mode == "vanish":
                endpoint.mode = "vanish"
                endpoint.stop()
            else:
                endpoint.mode = mode
            ids = [int(pk) for pk in stack.shell(REQUEST.format(mode=mode)).split()[-3:]]
            for table, run_id, page in zip(TABLES, ids, RUN_PAGES, strict=True):
                status, kind, error, enqueue_error = _wait(lambda t=table, r=run_id: _finished(stack, t, r),
                                                           f"{table} #{run_id} ({mode})", timeout=180, every=0.5)
                assert not enqueue_error
                # A throttle or a vanished endpoint is transient (retried later by itself); refused credentials
                # need a person: their own kind, whichever sync met them.
                kinds = ("credentials",) if mode == "denied" else ("source", "remote")
                assert status == "failed" and kind in kinds, (mode, table, status, kind, error)
                assert any(word in error.lower() for word in WORDS[mode]), (mode, table, error)
                response = session.get(stack.url + page.format(run_id), timeout=60)
                assert response.status_code == 200 and "run-error" in response.text, (mode, page)
            for path in pages:
                response = session.get(stack.url + path, timeout=60)
                assert response.status_code == 200, (mode, path, response.status_code)
            # The cached data and its age stay beside the error.
            report = session.get(stack.url + pages[1], timeout=60).text
            error = _between(report, 'id="cost-error"', "</p>")
            assert any(word in error.lower() for word in WORDS[mode]), (mode, "cost report error", error)
            assert "Showing the cached figures from" in error and "(3 days ago)" in error, (mode, error)
            assert "305" in report, (mode, "cost report lost its cached actuals")
            live = session.get(stack.url + pages[2], timeout=60).text
            error = _between(live, 'id="live-error"', "</p>")
            assert any(word in error.lower() for word in WORDS[mode]), (mode, "live view error", error)
            assert "Showing the last view, read" in error and "ago" in error, (mode, error)
            snapshots = session.get(stack.url + pages[3], timeout=60).text
            errors = " ".join(_all_between(snapshots, 'class="errornote source-error"', "</p>"))
            assert any(word in errors.lower() for word in WORDS[mode]), (mode, "snapshot source error", errors)
            assert "showing data from 1 day ago" in errors, (mode, errors)
            assert "snap-0fault000000001" in snapshots, (mode, "snapshot list lost its cache")
        assert stack.worker.poll() is None and stack.web.poll() is None
        assert "Internal Server Error" not in stack.log("web")
        assert requests.get(stack.url + "/ready", timeout=10).status_code == 200
    finally:
        if endpoint.mode != "vanish":
            try:
                endpoint.stop()
            except Exception:  # noqa: BLE001,S110 - stopped already
                pass
        cluster.stop()
