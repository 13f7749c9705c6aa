"""The webhook channel against real local HTTP servers: redirects are failures, only http(s) URLs, fresh signatures."""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import frame_result
from sqlalchemy import select

from pipeline.alerting.channels import WebhookChannel, build_channels
from pipeline.alerting.outbox import deliver_due
from pipeline.alerting.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, alert_body, sign, verify_signature
from pipeline.dev.receiver import AlertReceiver
from pipeline.errors import ConfigError
from pipeline.results import RaisedAlert
from pipeline.settings import Settings
from pipeline.storage.engine import open_database
from pipeline.storage.store import ModelInfo, write_batch
from pipeline.storage.tables import AlertDelivery


class RedirectingServer:
    """Answers every request to /alerts with `status` and `Location: /moved`; records each request it gets."""

    def __init__(self, status: int) -> None:
        self.requests: list[tuple[str, str]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                seen.append((self.command, self.path))
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/alerts":
                    self.send_response(status)
                    self.send_header("Location", "/moved")
                else:
                    self.send_response(200)  # what a followed redirect would be answered: "delivered"
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RedirectingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.integration
@pytest.mark.parametrize("status", [301, 302, 307])
def test_a_redirect_is_a_failure_and_is_never_followed(status: int, tmp_path: Path) -> None:
    _, sessions = open_database(f"sqlite:///{tmp_path / 'redirect.db'}")
    frame = frame_result(0, True)
    alert = RaisedAlert("t:0", "high_score", frame.camera_id, frame.line_id, frame.detected_at, {"score": 0.5})
    with sessions() as session, session.begin():
        write_batch(session, "g", [frame], {("frames", 0): 1}, [alert], ["webhook"], ModelInfo("m", "1"), 60)
    with RedirectingServer(status) as server:
        channel = WebhookChannel(server.url, "s3cret", timeout_s=2.0)
        try:
            assert deliver_due(sessions, [channel], 0.05, 0.2) == 0
        finally:
            channel.close()
    assert server.requests == [("POST", "/alerts")]  # /moved never got a GET (nor a re-POST after a 307)
    with sessions() as session:
        delivery = session.scalars(select(AlertDelivery)).one()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert delivery.last_error is not None
    assert str(status) in delivery.last_error and "/moved" in delivery.last_error


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/alerts", "localhost:8080/alerts", "http:///alerts", "http://[::1"]
)
def test_only_http_and_https_webhook_urls_are_accepted(url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        build_channels(
            Settings(webhook_url=url, webhook_secret="webhook-secret-for-tests-0123456789abcdef", alert_log=False)
        )
    message = str(refused.value)
    assert "webhook_url" in message and "\n" not in message
    assert "passwd" not in message  # the URL itself stays out of logs: it may carry a token


def test_https_is_accepted_and_a_missing_secret_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.alerting.channels"):
        signed = build_channels(
            Settings(
                webhook_url="https://example.com/hook",
                webhook_secret="webhook-secret-for-tests-0123456789abcdef",
                alert_log=False,
            )
        )
        assert caplog.records == []
        unsigned = build_channels(Settings(webhook_url="http://127.0.0.1:9/hook", alert_log=False))
    assert [c.name for c in signed + unsigned] == ["webhook", "webhook"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "webhook_secret" in warnings[0].getMessage()
    for channel in signed + unsigned:
        channel.close()


def test_signature_freshness_window() -> None:
    body, sent = b'{"a": 1}', 1_700_000_000
    signature = sign("k", str(sent), body)
    assert verify_signature("k", str(sent), body, signature, now=sent + 299)
    assert verify_signature("k", str(sent), body, signature, now=sent - 299)  # a receiver's clock slightly behind
    assert not verify_signature("k", str(sent), body, signature, now=sent + 301)  # too old: a replay
    assert not verify_signature("k", str(sent), body, signature, now=sent - 301)  # too far in the future
    assert not verify_signature("k", str(sent), body, signature, max_age_s=10, now=sent + 11)
    assert verify_signature("k", str(int(time.time())), body, sign("k", str(int(time.time())), body))
    for garbage in ["", "abc", "1.7e9", "-1700000000", " 1700000000", "١٧٠٠٠٠٠٠٠٠", "9" * 5000]:
        # signed with the garbage itself, so only the timestamp check can refuse it
        assert not verify_signature("k", garbage, body, sign("k", garbage, body), now=sent)
    assert not verify_signature("k", str(sent), body, "sha256=é", now=sent)  # no TypeError on non-ASCII


@pytest.mark.integration
def test_the_receiver_refuses_a_stale_but_correctly_signed_request() -> None:
    body = alert_body(7, {"rule": "high_score"})
    with AlertReceiver(secret="k", max_age_s=60) as receiver:
        for age, expected in [(3600, 401), (-3600, 401), (0, 200)]:
            timestamp = str(int(time.time()) - age)
            headers = {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign("k", timestamp, body)}
            assert httpx.post(receiver.url, content=body, headers=headers, timeout=5).status_code == expected
    assert receiver.rejected == 2 and [a["alert_id"] for a in receiver.alerts] == [7]
