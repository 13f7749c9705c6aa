"""Writes need the review token: `Authorization: Bearer TOKEN`, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException, Request, status

from pipeline.review.context import review_config

MIN_TOKEN_CHARS = 16


def require_writer(request: Request) -> None:
    """401 without a token, 403 with a wrong one or on a read-only server."""
    config = review_config(request)
    if config.read_only or config.token is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this review server is read-only")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a review token is needed (Authorization: Bearer TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not tokens_match(given.strip(), config.token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong review token")


def tokens_match(given: str, expected: str) -> bool:
    # Digests first: compare_digest is constant-time only for equal lengths, and the length is a secret too.
    return hmac.compare_digest(_digest(given), _digest(expected))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
