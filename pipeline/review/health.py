"""Probes for an orchestrator: liveness without the database (an outage must not restart the page), readiness with."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import text

from pipeline.review.context import review_config

router = APIRouter()


@router.get("/healthz", name="healthz")
def healthz() -> PlainTextResponse:
    return PlainTextResponse("ok\n")


@router.get("/readyz", name="readyz")
def readyz(request: Request) -> PlainTextResponse:
    try:
        with review_config(request).sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure: not ready, and say which kind
        return PlainTextResponse(f"database unreachable: {type(exc).__name__}\n", status_code=503)
    return PlainTextResponse("ready\n")
