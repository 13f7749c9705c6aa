"""Attacks on the review page, on SQLite and PostgreSQL: the issue's reproduced attacks as regression tests, and
Hypothesis throwing arbitrary path parameters, query strings, headers and bodies at every route (no 5xx, the
security headers on every answer, no change to the database)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from review_seed import seed
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import ConfigError
from pipeline.frames.store import FrameStore
from pipeline.review import pages
from pipeline.review.app import SECURITY_HEADERS, create_app
from pipeline.review.auth import new_token, token_problem
from pipeline.review.chart import MAX_X_TICKS, rate_chart
from pipeline.review.filters import FIELDS
from pipeline.storage.engine import open_database
from pipeline.storage.rates import DefectRates
from pipeline.storage.tables import Base, Defect

TOKEN = new_token()
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Target:
    client: TestClient
    sessions: sessionmaker[Session]
    store: FrameStore
    ids: list[int]

    def snapshot(self) -> str:
        """A digest of every row of every table."""
        digest = hashlib.sha256()
        with self.sessions() as session:
            for table in Base.metadata.sorted_tables:
                for row in session.execute(select(table).order_by(*table.primary_key.columns)):
                    digest.update(repr(tuple(row)).encode())
        return digest.hexdigest()


@pytest.fixture
def target(db_url: str, tmp_path: Path) -> Iterator[Target]:
    engine, sessions = open_database(db_url)
    seed(sessions)
    store = FrameStore(str(tmp_path / "frames"))
    with sessions() as session:
        ids = list(session.scalars(select(Defect.id).order_by(Defect.id)))
    app = create_app(sessions, {"ana": TOKEN}, labels=["scratch", "dent"], store=store)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Target(client, sessions, store, ids)
    engine.dispose()


def assert_guarded(answer: object) -> None:
    status = answer.status_code  # type: ignore[attr-defined]
    headers = answer.headers  # type: ignore[attr-defined]
    assert status < 500, (status, answer.text[:300])  # type: ignore[attr-defined]
    for name in SECURITY_HEADERS:
        assert name.lower() in headers, (name, status)


# 1: the page served any URI a row held (file://, http://) to anyone.
def test_stored_uris_outside_the_frame_store_are_refused(target: Target) -> None:
    planted = target.ids[0]
    with target.sessions() as session, session.begin():
        session.execute(
            update(Defect)
            .where(Defect.id == planted)
            .values(
                frame_uri="file:///proc/self/environ",
                overlay_uri="file:///etc/passwd",
                restored_uri="http://127.0.0.1:9/x",
            )
        )
    before = target.store.refused
    for kind in ("frame", "overlay", "restored"):
        answer = target.client.get(f"/defects/{planted}/image/{kind}")
        assert answer.status_code == 403 and "refused" in answer.text, kind
        assert "root:" not in answer.text and TOKEN not in answer.text
        assert_guarded(answer)
    assert target.client.get(f"/defects/{planted}/thumb.jpg").status_code == 403
    page = target.client.get(f"/defects/{planted}")
    assert page.status_code == 200 and "stored outside the frame store" in page.text
    assert target.store.refused >= before + 4


# 2: the k8s template's placeholder and a run of one letter were accepted as tokens.
@pytest.mark.parametrize(
    "token",
    [
        "CHANGE-ME-16-characters-or-more",
        "a" * 16,
        "a" * 64,
        "0123456789" * 4,
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
        "short",
    ],
)
def test_placeholder_and_low_entropy_tokens_are_refused(target: Target, token: str) -> None:
    with pytest.raises(ConfigError) as refused:
        create_app(target.sessions, token, store=target.store)
    assert "\n" not in str(refused.value) and "lineguard review token" in str(refused.value)
    with pytest.raises(ConfigError):
        create_app(target.sessions, {"ben": token}, store=target.store)


def test_generated_tokens_meet_the_rule() -> None:
    assert all(token_problem(new_token()) is None for _ in range(200))


# 4: one request for ten thousand years of chart: 73 MB, 521,723 ticks, 16 s.
def test_the_chart_range_and_ticks_are_bounded(target: Target) -> None:
    started = time.monotonic()
    answer = target.client.get("/rates", params={"since": "0001-01-01", "until": "9999-12-31"})
    assert answer.status_code == 400 and len(answer.content) < 100_000
    assert time.monotonic() - started < 5
    wide = target.client.get("/rates", params={"since": "2025-01-01", "until": "2026-12-31"})
    assert wide.status_code == 400 and "at most 400 days" in wide.text
    allowed = target.client.get("/rates", params={"since": "2025-12-01", "until": "2026-12-31"})
    assert allowed.status_code == 200 and allowed.text.count('class="tick"') <= MAX_X_TICKS
    # the chart itself draws at most MAX_X_TICKS ticks whatever window it is handed
    from datetime import UTC, datetime

    rates = DefectRates(datetime(1971, 1, 1, tzinfo=UTC), datetime(8999, 1, 1, tzinfo=UTC), 7 * 86400, {})
    assert len(rate_chart(rates).x_ticks) <= MAX_X_TICKS


# 5: unauthenticated requests that gave 500s and tracebacks.
@pytest.mark.parametrize(
    "path",
    [
        "/?page=%C2%B2",
        "/?page=" + "9" * 5000,
        "/?per_page=%D9%A3",
        "/?cluster=%C2%B2",
        "/?cluster=99999999999999999999999",
        "/?since=99999999d",
        "/?since=99999999999999999999d",
        "/?camera=a%00b",
        "/defects.csv?line=%00",
        "/rates?until=9999-12-31T23:59:59-14:00",
        "/rates?until=0001-01-01T00:00",
        "/rates?since=0001-01-01T00:00:00%2B14:00",
        "/defects/99999999999999999999",
        "/defects/2147483648",  # past PostgreSQL INTEGER: found by the Hypothesis test below
        "/defects/99999999999999999999/image/frame",
        "/defects/99999999999999999999/thumb.jpg",
        "/defects/-1",
        "/defects/%C2%B2",
    ],
)
def test_bad_input_is_a_4xx_with_the_security_headers(target: Target, path: str) -> None:
    answer = target.client.get(path)
    assert 400 <= answer.status_code < 500, (path, answer.status_code)
    assert_guarded(answer)
    assert "Traceback" not in answer.text


def test_an_unexpected_error_is_a_plain_500_with_the_headers(
    target: Target, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(pages, "page_of_defects", broken)
    answer = target.client.get("/")
    assert answer.status_code == 500 and "Traceback" not in answer.text and "a bug" not in answer.text
    for name in SECURITY_HEADERS:
        assert name.lower() in answer.headers
    assert [r.message for r in caplog.records if r.levelname == "ERROR"] == ["GET / failed: RuntimeError: a bug"]
    assert target.client.get("/nowhere").headers["x-frame-options"] == "DENY"  # 404s too


def test_request_bodies_are_bounded(target: Target) -> None:
    url = f"/api/defects/{target.ids[0]}/review"
    answer = target.client.post(url, content=b"{" + b" " * 70_000 + b"}", headers=AUTH)
    assert answer.status_code == 413
    assert_guarded(answer)


# 8: identity, guesses.
def test_the_reviewer_is_the_name_bound_to_the_token(target: Target) -> None:
    url = f"/api/defects/{target.ids[0]}/review"
    assert target.client.post(url, json={"status": "confirmed", "reviewer": "boss"}, headers=AUTH).status_code == 422
    assert target.client.post(url, json={"status": "confirmed", "note": "a\u0000b"}, headers=AUTH).status_code == 422
    saved = target.client.post(url, json={"status": "confirmed"}, headers=AUTH)
    assert saved.status_code == 200 and saved.json()["reviewed_by"] == "ana"


def test_wrong_tokens_are_rate_limited_per_client(target: Target) -> None:
    app = target.client.app
    url = f"/api/defects/{target.ids[0]}/review"
    guesser = TestClient(app, client=("192.0.2.7", 40000))
    answers = [
        guesser.post(url, json={"status": "confirmed"}, headers={"Authorization": f"Bearer {new_token()}"})
        for _ in range(12)
    ]
    assert [a.status_code for a in answers[:10]] == [403] * 10
    assert answers[10].status_code == 429 and int(answers[10].headers["retry-after"]) > 0
    # while limited even the right token is refused (else the limit would not slow a guesser down)
    assert guesser.post(url, json={"status": "confirmed"}, headers=AUTH).status_code == 429
    # another client is not affected
    other = TestClient(app, client=("192.0.2.8", 40000))
    assert other.post(url, json={"status": "confirmed"}, headers=AUTH).status_code == 200
    with target.sessions() as session:
        assert session.get(Defect, target.ids[0]).reviewed_by == "ana"  # type: ignore[union-attr]


# Hypothesis: every route, arbitrary input.
SEGMENT = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["1", "2", "0", "-1", "²", "٣", "1e9", "..", "%2e%2e", "frame", "overlay", "restored"]),
)
KEY = st.one_of(st.sampled_from([*FIELDS, "page", "per_page"]), st.text(max_size=12))
VALUE = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["99999999d", "0001-01-01", "9999-12-31T23:59:59-14:00", "nan", "inf", "-1", "²", "9" * 400]),
)
QUERY = st.lists(st.tuples(KEY, VALUE), max_size=5).map(
    lambda pairs: "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
)
HEADER = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
BODY = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(
        st.sampled_from(["status", "label", "note", "reviewer", "x"]),
        st.one_of(st.none(), st.text(max_size=80), st.integers(), st.sampled_from(["new", "confirmed", "rejected"])),
        max_size=4,
    ).map(lambda d: json.dumps(d).encode()),
)
ROUTES = [
    "/",
    "/rates",
    "/defects.csv",
    "/defects/{a}",
    "/defects/{a}/image/{b}",
    "/defects/{a}/thumb.jpg",
    "/static/{a}",
    "/healthz",
    "/readyz",
    "/{a}",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from([*ROUTES, "POST /api/defects/{a}/review"]),
    a=SEGMENT,
    b=SEGMENT,
    query=QUERY,
    authorization=st.one_of(st.none(), HEADER, HEADER.map(lambda t: f"Bearer {t}")),
    body=BODY,
)
def test_arbitrary_requests_never_fail_the_server_nor_write(
    target: Target, route: str, a: str, b: str, query: str, authorization: str | None, body: bytes
) -> None:
    before = getattr(target, "_before", None) or target.snapshot()
    target._before = before  # type: ignore[attr-defined]
    method, _, path = route.rpartition(" ")
    url = path.format(a=quote(a, safe=""), b=quote(b, safe="")) + (f"?{query}" if query else "")
    headers = {"Authorization": authorization} if authorization is not None else {}
    if method == "POST":
        answer = target.client.post(url, content=body, headers=headers | {"Content-Type": "application/json"})
        assert 400 <= answer.status_code < 500, (url, answer.status_code, answer.text[:200])  # never written
    else:
        answer = target.client.get(url, headers=headers)
    assert_guarded(answer)
    assert target.snapshot() == before, url


def test_liveness_needs_no_database_and_readiness_does(target: Target) -> None:
    assert target.client.get("/healthz").text == "ok\n" and target.client.get("/readyz").status_code == 200
    broken = sessionmaker(create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=1"))
    app = create_app(broken, {"ana": TOKEN}, store=target.store)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
