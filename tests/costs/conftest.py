"""Fixtures for the cost tests (their modules register ``tests.aws`` for moto_server): Cost Explorer results
seeded through moto's API, and a local endpoint that answers every AWS request with one fixed error (throttling,
expired credentials)."""

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def ce_seed(moto_url: str, results: list[dict]) -> None:
    """Queue GetCostAndUsage answers in moto (``/moto-api/static/ce/cost-and-usage-results``).

    moto hands out the queued results in order, one per distinct request body, and answers a repeated body with
    the result it gave it before. A request for the next page carries NextPageToken, so its body differs: a result
    that holds a NextPageToken is followed by the next queued result, which is how the tests build multi-page
    answers on the real server.
    """
    data = json.dumps({"results": results}).encode()
    request = urllib.request.Request(f"{moto_url}/moto-api/static/ce/cost-and-usage-results", data=data,
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


@pytest.fixture
def seed_ce(aws):
    return lambda results: ce_seed(aws, results)


class _ErrorHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        server.requests += 1
        status, code, message = server.answer
        body = json.dumps({"__type": code, "message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def aws_error_endpoint(aws, monkeypatch):
    """A local endpoint answering every AWS JSON request with ``server.answer`` = (status, code, message);
    boto3 is pointed at it. ``server.requests`` counts what reached it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ErrorHandler)
    server.requests = 0
    server.answer = (400, "ThrottlingException", "Rate exceeded")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    yield server
    server.shutdown()
    server.server_close()
