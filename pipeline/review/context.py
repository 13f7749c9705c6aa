"""What every route of the review page shares (database, token, labels) and how pages are rendered."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.orm import Session, sessionmaker

from pipeline.frames.store import FrameStore
from pipeline.review.attempts import FailedAttempts
from pipeline.storage.review import utc


@dataclass(frozen=True)
class ReviewConfig:
    """Set once by `create_app`; routes read it from the app's state."""

    sessions: sessionmaker[Session]
    tokens: dict[str, str]  # reviewer name -> token; empty on a read-only server
    read_only: bool
    labels: tuple[str, ...]
    store: FrameStore  # the only place images are read from (besides the blobs of rows from before it)
    attempts: FailedAttempts = field(default_factory=FailedAttempts)


# A defect id as a route takes it: a whole number the id column (INTEGER on PostgreSQL) can hold; a larger one is a
# 422, not a failed query (Hypothesis found 2**31 to be a 500 on PostgreSQL).
DefectId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


def review_config(request: Request) -> ReviewConfig:
    config: ReviewConfig = request.app.state.review
    return config


def root_path(request: Request) -> str:
    """The prefix a reverse proxy serves the page under ("" at the root); every link and fetch starts with it."""
    return str(request.scope.get("root_path") or "").rstrip("/")


def _when(value: datetime | None) -> str:
    return utc(value).strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


# Autoescape on for every template: camera ids, labels and notes come from cameras and reviewers.
_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["when"] = _when
TEMPLATES = Jinja2Templates(env=_ENV)


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    config = review_config(request)
    shared = {"root": root_path(request), "read_only": config.read_only, "labels": config.labels}
    return TEMPLATES.TemplateResponse(request, name, shared | context, status_code=status_code)
