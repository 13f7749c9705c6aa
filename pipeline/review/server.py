"""Serving the review app with uvicorn: in the foreground (`lineguard review serve`) or in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from pipeline.errors import ConfigError
from pipeline.review.app import app_from_settings
from pipeline.settings import Settings


def normal_root_path(root_path: str) -> str:
    """ "" or "/prefix" without a trailing slash; anything else is a configuration mistake."""
    cleaned = root_path.strip().rstrip("/")
    if cleaned and not cleaned.startswith("/"):
        raise ConfigError(f"--root-path {root_path!r} must start with / (e.g. /review)")
    return cleaned


def serve(settings: Settings, read_only: bool = False) -> None:
    """Run the page until interrupted. Proxy headers are trusted from 127.0.0.1 only (uvicorn's default)."""
    root = normal_root_path(settings.review_root_path)
    app = app_from_settings(settings, read_only)
    uvicorn.run(app, host=settings.review_host, port=settings.review_port, root_path=root, log_level="info")


@contextmanager
def background_server(app: FastAPI, port: int, host: str = "127.0.0.1", root_path: str = "") -> Iterator[str]:
    """The app served by a real uvicorn in a thread; yields its base URL (with the root path). For tests and the
    screenshot script."""
    config = uvicorn.Config(app, host=host, port=port, root_path=root_path, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="review-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the review server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}{root_path}"
    finally:
        server.should_exit = True
        thread.join(10)
