"""The review page's FastAPI app: routes, templates, static files and the headers every answer carries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import ConfigError
from pipeline.review import api, media, pages
from pipeline.review.auth import MIN_TOKEN_CHARS
from pipeline.review.context import ReviewConfig
from pipeline.settings import Settings
from pipeline.storage.engine import DatabaseTimeouts, open_database

# Only this server's own script, styles and images: an escaping bug elsewhere still runs no injected script.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def create_app(
    sessions: sessionmaker[Session], token: str | None, read_only: bool = False, labels: Sequence[str] = ("other",)
) -> FastAPI:
    """The app over an open database."""
    check_access(token, read_only, labels)
    app = FastAPI(title="LineGuard review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.review = ReviewConfig(sessions, token, read_only, tuple(labels))
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    for module in (pages, media, api):
        app.include_router(module.router)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return app


def check_access(token: str | None, read_only: bool, labels: Sequence[str]) -> None:
    """Without a token the page must be read-only: one anyone on the network could label would feed training
    whatever they typed."""
    if not read_only and not token:
        raise ConfigError("the review page needs LINEGUARD_REVIEW_TOKEN for labelling, or --read-only")
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"review_token must have at least {MIN_TOKEN_CHARS} characters")
    for label in labels:
        if not label or len(label) > 64:
            raise ConfigError(f"review label {label!r}: 1 to 64 characters")


def app_from_settings(settings: Settings, read_only: bool = False) -> FastAPI:
    """Open (and migrate) the database named in the settings and build the app on it."""
    token = settings.review_token.get_secret_value() if settings.review_token is not None else None
    token = None if read_only else token
    check_access(token, read_only, settings.review_labels)
    timeouts = DatabaseTimeouts(
        settings.db_connect_timeout_s, settings.db_statement_timeout_s, settings.db_lock_timeout_s
    )
    _, sessions = open_database(settings.db_url, timeouts=timeouts)
    return create_app(sessions, token, read_only, settings.review_labels)
