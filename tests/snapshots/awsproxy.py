"""A small HTTP proxy in front of moto_server that adds what the emulator lacks, for the snapshot tests.

moto answers EC2 DescribeSnapshots with every match in one response (it ignores MaxResults / NextToken), so the
proxy pages its answer: it forwards the call without them, cuts the ``snapshotSet`` to ``MaxResults`` items from
``NextToken`` on and adds ``nextToken`` when more remain. With ``fault`` set it answers every call with an AWS
error instead (``throttle``: 503 RequestLimitExceeded; ``expired``: 400 RequestExpired; ``s3_expired``: S3's
400 ExpiredToken). Everything else passes through unchanged.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15"

FAULTS = {
    "throttle": (503, "RequestLimitExceeded", "Request limit exceeded."),
    "expired": (400, "RequestExpired", "Request has expired."),
}


class PagingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.fault: str | None = None
        self.describe_calls: list[dict] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body: bytes, content_type: str = "text/xml") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, body: bytes | None) -> tuple[int, bytes, str]:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(proxy.upstream + self.path, data=body, headers=headers,
                                                 method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        return response.status, response.read(), response.headers.get("Content-Type", "text/xml")
                except urllib.error.HTTPError as exc:
                    return exc.code, exc.read(), exc.headers.get("Content-Type", "text/xml")

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.fault in FAULTS:
                    status, code, message = FAULTS[proxy.fault]
                    xml = (f"<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error><Code>{code}</Code>"
                           f"<Message>{message}</Message></Error></Errors><RequestID>x</RequestID></Response>")
                    self._reply(status, xml.encode())
                    return
                form = {k: v[0] for k, v in parse_qs((body or b"").decode(errors="replace")).items()}
                if form.get("Action") != "DescribeSnapshots":
                    self._reply(*self._forward(body))
                    return
                proxy.describe_calls.append(dict(form))
                limit = int(form.pop("MaxResults", 0) or 0)
                start = int(form.pop("NextToken", 0) or 0)
                from urllib.parse import urlencode

                status, data, content_type = self._forward(urlencode(form).encode())
                if status != 200 or not limit:
                    self._reply(status, data, content_type)
                    return
                root = ET.fromstring(data)
                namespace = root.tag[1:].split("}")[0] if root.tag.startswith("{") else EC2_NS
                ET.register_namespace("", namespace)
                items_parent = root.find(f"{{{namespace}}}snapshotSet")
                items = list(items_parent) if items_parent is not None else []
                for item in items:
                    items_parent.remove(item)
                for item in items[start:start + limit]:
                    items_parent.append(item)
                if start + limit < len(items):
                    token = ET.SubElement(root, f"{{{namespace}}}nextToken")
                    token.text = str(start + limit)
                self._reply(200, ET.tostring(root, xml_declaration=True, encoding="UTF-8"), content_type)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PagingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
