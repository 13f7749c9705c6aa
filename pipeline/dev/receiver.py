"""A small local webhook receiver (for the demo and tests): verifies signatures and keeps the alerts it got."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from pipeline.alerting.signing import ALERT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature


class AlertReceiver:
    """HTTP server on 127.0.0.1 as a context manager; `.url` is the webhook URL, `.alerts` what arrived, in order.

    Requests with a bad signature (when `secret` is set), or a timestamp further than `max_age_s` from this clock,
    get 401 and are counted in `.rejected`.
    """

    def __init__(
        self, port: int = 0, secret: str | None = None, host: str = "127.0.0.1", max_age_s: float = 300.0
    ) -> None:
        self.secret = secret
        self.max_age_s = max_age_s
        self.alerts: list[dict[str, Any]] = []
        self.rejected = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="alert-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/alerts"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver._accept(body, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test and demo output stays readable

        return Handler

    def _accept(self, body: bytes, headers: dict[str, str]) -> int:
        # HTTP header names are case-insensitive (clients differ in how they write them): `headers` keys are lower case.
        with self._lock:
            self.requests += 1
            if self.secret is not None:
                signature = headers.get(SIGNATURE_HEADER.lower(), "")
                timestamp = headers.get(TIMESTAMP_HEADER.lower(), "")
                if not verify_signature(self.secret, timestamp, body, signature, max_age_s=self.max_age_s):
                    self.rejected += 1
                    return 401
            alert = json.loads(body)
            alert["_alert_id_header"] = headers.get(ALERT_ID_HEADER.lower())
            self.alerts.append(alert)
            return 200

    def start(self) -> AlertReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> AlertReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
