"""The review page in a real headless Chromium (Playwright), served by a real uvicorn behind a reverse proxy that
serves it under /lineguard: list, filter, open a defect, label it from the keyboard, and a write without the token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefix_proxy import PrefixProxy
from review_seed import expected_offsets, seed
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pipeline.dev.broker import free_port
from pipeline.review.app import create_app
from pipeline.review.auth import new_token
from pipeline.review.server import background_server
from pipeline.storage.engine import open_database
from pipeline.storage.tables import Defect

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
expect = sync_api.expect

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = new_token()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (bash scripts/dev.sh test does, as root)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Site:
    url: str  # through the proxy, with the /lineguard prefix
    sessions: sessionmaker[Session]
    ids: dict[int, int]  # source offset -> defect id

    def row(self, offset: int) -> Defect:
        with self.sessions() as session:
            return session.scalars(select(Defect).where(Defect.source_offset == offset)).one()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'review.db'}")
    seed(sessions)
    with sessions() as session:
        ids = {offset: defect_id for offset, defect_id in session.execute(select(Defect.source_offset, Defect.id))}
    app = create_app(sessions, {"ana": TOKEN}, labels=["scratch", "dent"])
    port = free_port()
    with background_server(app, port, root_path="/lineguard"), PrefixProxy(port, "/lineguard") as proxy:
        yield Site(proxy.url, sessions, ids)
    engine.dispose()


def new_page(browser: Any) -> tuple[Any, list[str]]:
    """A page in a fresh context (empty session storage) that records script errors and CSP violations."""
    page = browser.new_context().new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return page, problems


def test_filter_open_and_label_with_the_keyboard(browser: Any, site: Site) -> None:
    page, problems = new_page(browser)
    page.goto(f"{site.url}/")
    rows = page.locator("table.defects tbody tr")
    expect(rows).to_have_count(len(expected_offsets()))
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.thumb')].slice(0, 3).every(i => i.complete && i.naturalWidth > 0)"
    )

    page.fill("input[name=camera]", "cam-2")
    page.press("input[name=camera]", "Enter")
    cam2 = expected_offsets(camera="cam-2")
    expect(rows).to_have_count(len(cam2))
    expect(page.locator("td.camera")).to_have_text(["cam-2"] * len(cam2))
    assert page.url.startswith(f"{site.url}/?") and "camera=cam-2" in page.url

    rows.first.locator("a").last.click()
    expect(page.locator("h1")).to_have_text(f"Defect {site.ids[cam2[0]]} · cam-2")
    page.wait_for_function("() => document.getElementById('overlay').naturalWidth > 0")

    page.fill("#token", TOKEN)  # the token is ana's: the verdict is recorded as hers
    page.keyboard.press("Escape")  # leave the field: keys label again
    page.keyboard.press("2")
    expect(page.locator("#message")).to_have_text("saved: confirmed (dent)")
    expect(page.locator("#status")).to_have_text("confirmed")
    row = site.row(cam2[0])
    assert (row.review_status, row.label, row.reviewed_by) == ("confirmed", "dent", "ana")

    page.keyboard.press("n")
    page.keyboard.type("burr on the left edge")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#message")).to_have_text("saved: confirmed (dent)")
    assert site.row(cam2[0]).note == "burr on the left edge"

    page.keyboard.press("Escape")
    page.keyboard.press("f")
    expect(page.locator("#message")).to_have_text("saved: rejected")
    row = site.row(cam2[0])
    assert (row.review_status, row.label, row.note) == ("rejected", None, "burr on the left edge")

    page.keyboard.press("j")  # the next older defect of the same filtered list
    expect(page.locator("h1")).to_have_text(f"Defect {site.ids[cam2[1]]} · cam-2")
    assert "camera=cam-2" in page.url
    assert problems == []


def test_a_write_without_the_token_is_refused(browser: Any, site: Site) -> None:
    page, problems = new_page(browser)
    page.goto(f"{site.url}/defects/{site.ids[4]}")
    page.keyboard.press("c")
    expect(page.locator("#message")).to_contain_text("refused (401)")
    page.fill("#token", "not-the-review-token")
    page.keyboard.press("Escape")
    page.keyboard.press("1")
    expect(page.locator("#message")).to_contain_text("refused (403): wrong review token")
    expect(page.locator("#status")).to_have_text("new")
    assert site.row(4).review_status == "new" and site.row(4).reviewed_at is None
    assert all("401" in p or "403" in p for p in problems), problems  # the browser logs the refused fetches
