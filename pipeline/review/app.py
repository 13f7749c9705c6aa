"""The review page's FastAPI app: routes, templates, static files, and what wraps every answer (security headers,
a bounded request body, one log line instead of a traceback page)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.errors import ConfigError
from pipeline.frames.store import FrameStore, configured_store
from pipeline.review import api, health, media, pages
from pipeline.review.auth import check_tokens
from pipeline.review.context import ReviewConfig
from pipeline.settings import Settings
from pipeline.storage.engine import DatabaseTimeouts, open_database, open_database_read_only

log = logging.getLogger(__name__)

# Only this server's own script, styles and images: an escaping bug elsewhere still runs no injected script.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# A verdict is a few hundred bytes; nothing the page takes is larger than this.
MAX_BODY_BYTES = 64 * 1024
# The name a single LINEGUARD_REVIEW_TOKEN is bound to (review_tokens binds a token to each reviewer).
SHARED_REVIEWER = "shared"


class Guard:
    """ASGI middleware around the whole app, outside Starlette's error handling: every answer, a 500 included, gets
    the security headers; a body over MAX_BODY_BYTES is a 413 before any route reads it; an exception that escapes
    a route is one log line and a plain 500, never a traceback to the client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not length.isdigit() or len(length) > 12 or int(length) > MAX_BODY_BYTES:
            await _plain(send, 413, f"a request body is at most {MAX_BODY_BYTES} bytes")
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise _TooLarge
            return message

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers += [
                    (k.lower().encode(), v.encode())
                    for k, v in SECURITY_HEADERS.items()
                    if k.lower().encode() not in present
                ]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, counted, with_headers)
        except _TooLarge:
            if not started:
                await _plain(send, 413, f"a request body is at most {MAX_BODY_BYTES} bytes")
        except Exception as exc:
            # one line per failure (an attacker must not fill the log); the traceback at debug level, for a bug hunt
            log.error("%s %s failed: %s: %s", scope.get("method"), scope.get("path"), type(exc).__name__, exc)
            log.debug("traceback", exc_info=True)
            if not started:
                await _plain(send, 500, "internal error (logged on the server)")


class _TooLarge(Exception):
    pass


async def _plain(send: Send, code: int, text: str) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": (text + "\n").encode()})


def create_app(
    sessions: sessionmaker[Session],
    tokens: Mapping[str, str] | str | None,
    read_only: bool = False,
    labels: Sequence[str] = ("other",),
    store: FrameStore | None = None,
) -> FastAPI:
    """The app over an open database. `tokens`: reviewer name -> token (a single string is the shared token);
    `store`: where images are read (default: the configured frame store)."""
    named = {SHARED_REVIEWER: tokens} if isinstance(tokens, str) else dict(tokens or {})
    named = {} if read_only else named
    check_access(named, read_only, labels)
    app = FastAPI(title="LineGuard review", docs_url=None, redoc_url=None, openapi_url=None)
    store = store if store is not None else configured_store()
    app.state.review = ReviewConfig(sessions, named, read_only, tuple(labels), store)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    for module in (pages, media, api, health):
        app.include_router(module.router)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_middleware(Guard)
    return app


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, without echoing the input back (a path parameter can be megabytes of anything)."""
    errors: list[dict[str, Any]] = []
    if isinstance(exc, RequestValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:200]} for e in exc.errors()[:10]]
    return JSONResponse({"detail": errors}, status_code=422)


def check_access(tokens: Mapping[str, str], read_only: bool, labels: Sequence[str]) -> None:
    """Without a token the page must be read-only: one anyone on the network could label would feed training
    whatever they typed. Tokens must be hard to guess (pipeline/review/auth.py)."""
    if not read_only and not tokens:
        raise ConfigError("the review page needs LINEGUARD_REVIEW_TOKEN for labelling, or --read-only")
    check_tokens(tokens)
    for label in labels:
        if not label or len(label) > 64:
            raise ConfigError(f"review label {label!r}: 1 to 64 characters")


def settings_tokens(settings: Settings) -> dict[str, str]:
    """Reviewer name -> token from review_tokens, plus the shared review_token."""
    tokens = {name: token.get_secret_value() for name, token in settings.review_tokens.items()}
    if settings.review_token is not None:
        if SHARED_REVIEWER in tokens:
            raise ConfigError(f"review_tokens names a reviewer {SHARED_REVIEWER!r}, the name of review_token")
        tokens[SHARED_REVIEWER] = settings.review_token.get_secret_value()
    return tokens


def app_from_settings(settings: Settings, read_only: bool = False) -> FastAPI:
    """The app on the database named in the settings: migrated first when it labels; read-only, it creates and
    migrates nothing and refuses a database that is missing or behind."""
    tokens = {} if read_only else settings_tokens(settings)
    check_access(tokens, read_only, settings.review_labels)
    timeouts = DatabaseTimeouts(
        settings.db_connect_timeout_s, settings.db_statement_timeout_s, settings.db_lock_timeout_s
    )
    if read_only:
        _, sessions = open_database_read_only(settings.db_url, timeouts=timeouts)
    else:
        _, sessions = open_database(settings.db_url, timeouts=timeouts)
    store = FrameStore(settings.frame_store_url, create=False)
    return create_app(sessions, tokens, read_only, settings.review_labels, store)
