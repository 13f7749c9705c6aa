"""Webhook signing: the alert body, its headers and the HMAC-SHA256 signature receivers check."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
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


def verify_signature(
    secret: str, timestamp: str, body: bytes, signature: str, max_age_s: float = 300.0, now: float | None = None
) -> bool:
    """For receivers: constant-time check of a webhook's signature header, and of its timestamp's freshness.

    A timestamp that is not a plain integer, or is further than `max_age_s` from `now` (default: this clock) in
    either direction, is refused: without the window a captured request could be replayed forever.
    """
    # isascii: str.isdigit also accepts digits int() parses differently or not at all (Arabic-Indic, superscripts);
    # the length bound keeps int() away from huge strings.
    if not (0 < len(timestamp) <= 15 and timestamp.isascii() and timestamp.isdigit()):
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > max_age_s:
        return False
    # As bytes: compare_digest raises TypeError on a str with non-ASCII characters (a header is untrusted input).
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode("utf-8", "replace"))
