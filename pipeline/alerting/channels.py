"""Alert channels: a signed JSON webhook, the Kafka alert topic, the log; each sends one alert or raises."""

from __future__ import annotations

import logging
import time
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

from pipeline.alerting.signing import ALERT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, alert_body, sign
from pipeline.settings import Settings

log = logging.getLogger(__name__)


class Channel(Protocol):
    """Where an alert goes; `name` is the channel column of its delivery rows."""

    name: str

    def send(self, alert_id: int, payload: dict[str, Any]) -> None:
        """Deliver or raise; a raise means retry later."""


class WebhookChannel:
    """POST one JSON alert; any non-2xx answer or network error is a failure to retry."""

    name = "webhook"

    def __init__(self, url: str, secret: str | None, timeout_s: float) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s

    def send(self, alert_id: int, payload: dict[str, Any]) -> None:
        body = alert_body(alert_id, payload)
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", ALERT_ID_HEADER: str(alert_id), TIMESTAMP_HEADER: timestamp}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            if not 200 <= response.status < 300:
                raise OSError(f"webhook answered {response.status}")


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


def build_channels(settings: Settings, producer_factory: Callable[[], Any] | None = None) -> list[Channel]:
    """The channels enabled in settings; the Kafka channel needs a producer factory."""
    channels: list[Channel] = []
    if settings.webhook_url:
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        channels.append(WebhookChannel(settings.webhook_url, secret, settings.webhook_timeout_s))
    if settings.alert_kafka and producer_factory is not None:
        channels.append(KafkaChannel(producer_factory(), settings.alerts_topic))
    if settings.alert_log:
        channels.append(LogChannel())
    return channels
