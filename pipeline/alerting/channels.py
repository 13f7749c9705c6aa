"""Alert channels: a signed JSON webhook, the Kafka alert topic, the log; each sends one alert or raises."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from pipeline.alerting.signing import ALERT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, alert_body, sign
from pipeline.errors import ConfigError
from pipeline.settings import Settings

log = logging.getLogger(__name__)

WEBHOOK_SCHEMES = ("http", "https")


class Channel(Protocol):
    """Where an alert goes; `name` is the channel column of its delivery rows."""

    name: str

    def send(self, alert_id: int, payload: dict[str, Any]) -> None:
        """Deliver or raise; a raise means retry later."""

    def close(self) -> None:
        """Release what the channel holds (connections); called once, when its dispatcher stops."""


def check_webhook_url(url: str) -> str:
    """The URL if it is http(s) with a host; a ConfigError otherwise (file://, ftp://, a typo without a scheme)."""
    # The message names the scheme, never the URL: webhook URLs often carry a token in their path or query.
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"webhook_url is not a valid URL ({exc})") from None
    if parsed.scheme not in WEBHOOK_SCHEMES:
        scheme = parsed.scheme or "none"
        raise ConfigError(f"webhook_url must start with http:// or https:// (its scheme is {scheme!r})")
    if not parsed.host:
        raise ConfigError("webhook_url has no host name")
    return url


class WebhookChannel:
    """POST one JSON alert; any answer outside 2xx (a redirect too) or network error is a failure to retry.

    Redirects are never followed: an HTTP client that follows a 301/302 turns the POST into a body-less GET,
    whose 200 would mark an alert delivered that no receiver ever saw.
    """

    name = "webhook"

    def __init__(self, url: str, secret: str | None, timeout_s: float) -> None:
        self.url = check_webhook_url(url)
        self.secret = secret
        self.timeout_s = timeout_s
        if not secret:
            log.warning(
                "WEBHOOK ALERTS ARE UNSIGNED: webhook_url is set without webhook_secret, so receivers cannot verify "
                "that an alert came from LineGuard; set LINEGUARD_WEBHOOK_SECRET"
            )
        # One client per channel: its connection pool keeps the receiver's connection open between alerts.
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def send(self, alert_id: int, payload: dict[str, Any]) -> None:
        body = alert_body(alert_id, payload)
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", ALERT_ID_HEADER: str(alert_id), TIMESTAMP_HEADER: timestamp}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        response = self._client.post(self.url, content=body, headers=headers)
        if response.is_success:
            return
        status = response.status_code
        if 300 <= status < 400:
            location = response.headers.get("location", "(none)")[:200]
            reason = (
                f"webhook answered {status} redirecting to {location!r} (redirects are not followed: fix webhook_url)"
            )
        else:
            reason = f"webhook answered {status}"
        raise httpx.HTTPStatusError(reason, request=response.request, response=response)

    def close(self) -> None:
        self._client.close()


class KafkaChannel:
    """Publish the alert JSON to the alert topic, keyed by camera, and wait for the broker's ack."""

    name = "kafka"

    def __init__(self, producer: Any, topic: str, timeout_s: float = 10.0) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s

    def send(self, alert_id: int, payload: dict[str, Any]) -> None:
        key = str(payload.get("camera_id", "")).encode()
        future = self.producer.send(self.topic, key=key, value=alert_body(alert_id, payload))
        future.get(timeout=self.timeout_s)

    def close(self) -> None:
        pass  # the producer belongs to whoever made it (the consumer shares it with the dead-letter sink)


class LogChannel:
    name = "log"

    def send(self, alert_id: int, payload: dict[str, Any]) -> None:
        log.warning(
            "ALERT %d %s camera=%s line=%s score=%s source=%s",
            alert_id,
            payload.get("rule"),
            payload.get("camera_id"),
            payload.get("line_id"),
            payload.get("score"),
            payload.get("source"),
        )

    def close(self) -> None:
        pass


def build_channels(settings: Settings, producer_factory: Callable[[], Any] | None = None) -> list[Channel]:
    """The channels enabled in settings; the Kafka channel needs a producer factory. A bad webhook_url raises
    ConfigError here, before any alert waits on it."""
    channels: list[Channel] = []
    if settings.webhook_url:
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        channels.append(WebhookChannel(settings.webhook_url, secret, settings.webhook_timeout_s))
    if settings.alert_kafka and producer_factory is not None:
        channels.append(KafkaChannel(producer_factory(), settings.alerts_topic))
    if settings.alert_log:
        channels.append(LogChannel())
    return channels
