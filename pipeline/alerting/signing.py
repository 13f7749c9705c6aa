"""Webhook signing: the alert body, its headers and the HMAC-SHA256 signature receivers check."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SIGNATURE_HEADER = "X-LineGuard-Signature"
TIMESTAMP_HEADER = "X-LineGuard-Timestamp"
ALERT_ID_HEADER = "X-LineGuard-Alert-Id"


def alert_body(alert_id: int, payload: dict[str, Any]) -> bytes:
    return json.dumps({"alert_id": alert_id, **payload}, sort_keys=True).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Signature header value: hex HMAC-SHA256 over "<timestamp>.<body>" (the timestamp guards against replays)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """For receivers: constant-time check of a webhook's signature header."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
