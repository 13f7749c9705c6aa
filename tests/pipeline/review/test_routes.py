"""The review page's routes through FastAPI's TestClient, on SQLite and PostgreSQL, over rows the batch writer wrote."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import frame_result
from review_seed import (
    DEFECT_OFFSETS,
    XSS_CAMERA,
    camera_of,
    expected_offsets,
    frame_png,
    overlay_png,
    result,
    seed,
    version_of,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pipeline.alerting.rules import AlertRuleConfig, AlertRules, DriftReference
from pipeline.alerting.state import load_rule_state, save_rule_state
from pipeline.errors import ConfigError
from pipeline.frames.store import FrameStore
from pipeline.results import Source
from pipeline.review.api import csv_lines
from pipeline.review.app import create_app
from pipeline.review.auth import new_token
from pipeline.storage.engine import open_database
from pipeline.storage.rates import defect_rates
from pipeline.storage.review import DefectFilter
from pipeline.storage.store import ModelInfo, write_results
from pipeline.storage.tables import Defect

TOKEN = new_token()  # ana's
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BEN = {"Authorization": f"Bearer {new_token()}"}


@dataclass
class Site:
    client: TestClient
    sessions: sessionmaker[Session]
    ids: dict[int, int]  # source offset -> defect id

    def offsets(self, html: str) -> list[int]:
        """Source offsets of the list's rows, in page order."""
        by_id = {v: k for k, v in self.ids.items()}
        return [by_id[int(i)] for i in re.findall(r'<tr data-id="(\d+)"', html)]

    def row(self, offset: int) -> Defect:
        with self.sessions() as session:
            return session.scalars(select(Defect).where(Defect.source_offset == offset)).one()


@pytest.fixture
def site(db_url: str) -> Iterator[Site]:
    engine, sessions = open_database(db_url)
    seed(sessions)
    with sessions() as session:
        ids = {offset: defect_id for offset, defect_id in session.execute(select(Defect.source_offset, Defect.id))}
    tokens = {"ana": TOKEN, "ben": BEN["Authorization"].removeprefix("Bearer ")}
    with TestClient(create_app(sessions, tokens, labels=["scratch", "dent"])) as client:
        yield Site(client, sessions, ids)
    engine.dispose()


def test_list_filters_and_pages(site: Site) -> None:
    page = site.client.get("/", params={"per_page": 5})
    assert page.status_code == 200
    assert site.offsets(page.text) == expected_offsets()[:5]
    assert "1–5 of 20 defects" in page.text and "page 1 of 4" in page.text
    last = site.client.get("/", params={"per_page": 5, "page": 4})
    assert site.offsets(last.text) == expected_offsets()[15:]
    assert "16–20 of 20" in last.text
    cases = {
        "camera": ({"camera": "cam-2"}, expected_offsets(camera="cam-2")),
        "line": ({"line": "line-2"}, expected_offsets(line="line-2")),
        "model version": ({"model_version": "1"}, expected_offsets(model_version="1")),
        "score range": ({"min_score": "0.3", "max_score": "0.4"}, [o for o in expected_offsets() if 10 <= o <= 20]),
        "time range": (
            {"since": "2026-11-28T10:00:10", "until": "2026-11-28T10:00:14"},
            [12, 10],
        ),
        "together": ({"camera": "cam-1", "model_version": "2"}, expected_offsets(camera="cam-1", model_version="2")),
    }
    for name, (params, expected) in cases.items():
        answer = site.client.get("/", params=params)
        assert answer.status_code == 200, name
        assert site.offsets(answer.text) == expected, name
        assert f"of {len(expected)} defects" in answer.text, name


def test_label_writes_need_the_token(site: Site) -> None:
    defect_id = site.ids[10]
    url = f"/api/defects/{defect_id}/review"
    verdict = {"status": "confirmed", "label": "dent", "note": "seen on the belt"}
    missing = site.client.post(url, json=verdict)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert site.client.post(url, json=verdict, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert site.client.post(url, json=verdict, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert site.row(10).review_status == "new" and site.row(10).reviewed_by is None

    saved = site.client.post(url, json=verdict, headers=AUTH)
    assert saved.status_code == 200 and saved.json()["status"] == "confirmed"
    row = site.row(10)
    assert (row.review_status, row.label, row.note, row.reviewed_by) == ("confirmed", "dent", "seen on the belt", "ana")
    assert row.reviewed_at is not None
    # no note in the request keeps the stored one; an empty note clears it
    # the reviewer is the name the token is bound to, never what the client says
    site.client.post(url, json={"status": "rejected"}, headers=BEN)
    assert (site.row(10).review_status, site.row(10).label, site.row(10).note) == ("rejected", None, "seen on the belt")
    assert site.row(10).reviewed_by == "ben"
    claimed = site.client.post(url, json={"status": "confirmed", "reviewer": "ana"}, headers=BEN)
    assert claimed.status_code == 422 and site.row(10).review_status == "rejected"
    site.client.post(url, json={"status": "rejected", "note": ""}, headers=AUTH)
    assert site.row(10).note is None
    # and the list filters on what was written
    site.client.post(f"/api/defects/{site.ids[12]}/review", json={"status": "confirmed", "label": "dent"}, headers=AUTH)
    assert site.offsets(site.client.get("/", params={"status": "rejected"}).text) == [10]
    assert site.offsets(site.client.get("/", params={"label": "dent"}).text) == [12]

    assert site.client.post(url, json={"status": "maybe"}, headers=AUTH).status_code == 422
    assert site.client.post(url, json={"status": "new", "label": "x" * 65}, headers=AUTH).status_code == 422
    assert site.client.post("/api/defects/999999/review", json=verdict, headers=AUTH).status_code == 404
    read_only = TestClient(create_app(site.sessions, None, read_only=True))
    assert read_only.post(url, json=verdict, headers=AUTH).status_code == 403
    assert "read-only" in read_only.get(f"/defects/{defect_id}").text


def test_csv_exports_the_whole_filtered_view(site: Site) -> None:
    site.client.post(f"/api/defects/{site.ids[4]}/review", json={"status": "confirmed", "label": "=1+2"}, headers=AUTH)
    answer = site.client.get("/defects.csv", params={"camera": "cam-1", "per_page": 2, "page": 3})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    # every matching row, whatever page the list was on
    assert [int(r["source"].rsplit("@", 1)[1]) for r in rows] == expected_offsets(camera="cam-1")
    labelled = next(r for r in rows if r["source"].endswith("@4"))
    assert labelled["label"] == "'=1+2" and labelled["status"] == "confirmed"  # a formula stays text
    # keyset batches read each row once
    everything = "".join(csv_lines(site.sessions, DefectFilter(), batch=3))
    sources = [r["source"] for r in csv.DictReader(io.StringIO(everything))]
    assert len(sources) == len(set(sources)) == len(DEFECT_OFFSETS)
    assert site.client.get("/defects.csv", params={"min_score": "lots"}).status_code == 400


def test_everything_rendered_is_escaped(site: Site) -> None:
    note = '<img src=x onerror="alert(2)">'
    site.client.post(f"/api/defects/{site.ids[38]}/review", json={"status": "new", "note": note}, headers=AUTH)
    pages = {
        "list": site.client.get("/").text,
        "filtered": site.client.get("/", params={"camera": XSS_CAMERA}).text,
        "defect": site.client.get(f"/defects/{site.ids[38]}", params={"camera": XSS_CAMERA}).text,
        "rates": site.client.get("/rates").text,
        "error": site.client.get("/", params={"since": "<b>soon</b>"}).text,
    }
    for name, html in pages.items():
        assert XSS_CAMERA not in html and "<b>" not in html and note not in html, name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["filtered"]
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in pages["defect"]
    assert site.offsets(pages["filtered"]) == [38]
    csp = site.client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_links_and_fetches_follow_the_root_path(site: Site) -> None:
    # As uvicorn --root-path /lineguard behind a proxy that strips the prefix: the app sees the whole path.
    proxied = TestClient(site.client.app, root_path="/lineguard")
    listing = proxied.get("/lineguard/", params={"camera": "cam-1"})
    defect = proxied.get(f"/lineguard/defects/{site.ids[4]}", params={"camera": "cam-1"})
    rates = proxied.get("/lineguard/rates")
    for page in (listing, defect, rates):
        assert page.status_code == 200
        targets = re.findall(r'(?:href|src|action)="([^"]*)"', page.text)
        assert targets and all(t.startswith("/lineguard/") for t in targets), targets
    assert 'data-root="/lineguard"' in defect.text  # the script's fetches start with it
    assert f'href="/lineguard/defects/{site.ids[0]}?camera=cam-1"' in listing.text
    assert proxied.get("/lineguard/static/review.js").status_code == 200
    assert proxied.get(f"/lineguard/defects/{site.ids[4]}/thumb.jpg").status_code == 200
    answer = proxied.post(f"/lineguard/api/defects/{site.ids[4]}/review", json={"status": "confirmed"}, headers=AUTH)
    assert answer.status_code == 200


def test_images_through_one_function_and_thumbnails(site: Site) -> None:
    with_restored, without = site.ids[4], site.ids[6]
    frame = site.client.get(f"/defects/{with_restored}/image/frame")
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/png"
    assert frame.content == frame_png(4) and "max-age" in frame.headers["cache-control"]
    assert site.client.get(f"/defects/{with_restored}/image/overlay").content == overlay_png(4)
    assert site.client.get(f"/defects/{with_restored}/image/restored").status_code == 200
    assert site.client.get(f"/defects/{without}/image/restored").status_code == 404
    assert site.client.get(f"/defects/{with_restored}/image/other").status_code == 422
    page = site.client.get(f"/defects/{without}").text
    assert "the model gave no restored frame" in page and '<rect class="region" x="1" y="2"' in page

    thumb = site.client.get(f"/defects/{with_restored}/thumb.jpg")
    assert thumb.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and max(image.shape[:2]) == 128 and image.shape[:2] == (96, 128)
    # a raw frame has no picture: the thumbnail comes from the overlay
    with site.sessions() as session, session.begin():
        row = session.get(Defect, with_restored)
        assert row is not None
        row.frame, row.frame_content_type = bytes(96 * 128), "application/x-raw"
    assert site.client.get(f"/defects/{with_restored}/thumb.jpg").status_code == 200
    assert site.client.get(f"/defects/{with_restored}/image/frame").status_code == 404
    assert "frame stored as application/x-raw" in site.client.get(f"/defects/{with_restored}").text
    assert site.client.get("/defects/999999/thumb.jpg").status_code == 404
    assert site.client.get("/defects/999999").status_code == 404


def test_defect_page_steps_through_the_filtered_list(site: Site) -> None:
    order = expected_offsets(camera="cam-2")
    middle = order[2]
    html = site.client.get(f"/defects/{site.ids[middle]}", params={"camera": "cam-2", "page": 1}).text
    newer = re.search(r'id="newer" href="/defects/(\d+)\?camera=cam-2"', html)
    older = re.search(r'id="older" href="/defects/(\d+)\?camera=cam-2"', html)
    assert newer and older
    assert (int(newer.group(1)), int(older.group(1))) == (site.ids[order[1]], site.ids[order[3]])
    assert 'id="back" href="/?camera=cam-2"' in html


def test_defect_rate_chart_from_the_inspection_counts(site: Site) -> None:
    with site.sessions() as session:
        rates = defect_rates(session)
    assert rates.step_s == 1800  # a day in at most 48 round buckets
    for camera in ("cam-1", "cam-2", XSS_CAMERA):
        points = rates.series[camera]
        frames = sum(1 for o in range(40) if camera_of(o) == camera)
        defects = sum(1 for o in DEFECT_OFFSETS if camera_of(o) == camera)
        assert (sum(p.frames for p in points), sum(p.defects for p in points)) == (frames, defects)
    html = site.client.get("/rates", params={"line": "line-2"}).text
    assert html.count('<g class="series"') == 1 and 'data-camera="cam-2"' in html
    frames = sum(1 for o in range(40) if camera_of(o) == "cam-2")
    defects = sum(1 for o in DEFECT_OFFSETS if camera_of(o) == "cam-2")
    totals = (
        f'<td class="num">{frames}</td><td class="num">{defects}</td><td class="num">{defects / frames * 100:.2f} %'
    )
    assert totals in html
    assert site.client.get("/rates", params={"until": "nonsense"}).status_code == 400


def test_bad_filters_are_reported_not_ignored(site: Site) -> None:
    answer = site.client.get("/", params={"min_score": "high", "status": "maybe", "page": "0"})
    assert answer.status_code == 400
    assert "min_score" in answer.text and "status" in answer.text and "page" in answer.text
    assert site.offsets(answer.text) == []


def test_a_server_without_a_token_is_read_only_or_refused(tmp_path: Path) -> None:
    _, sessions = open_database(f"sqlite:///{tmp_path}/t.db")
    with pytest.raises(ConfigError, match="LINEGUARD_REVIEW_TOKEN"):
        create_app(sessions, None)
    with pytest.raises(ConfigError, match="fewer than 32"):
        create_app(sessions, "short-9Xq2")
    assert create_app(sessions, None, read_only=True) is not None


def test_versions_are_suggested(site: Site) -> None:
    html = site.client.get("/").text
    assert all(f'<option value="{version_of(o)}">' in html for o in (0, 30))


def test_images_from_the_frame_store(site: Site, tmp_path: Path) -> None:
    # A row the writer stored through the frame store holds URIs, no blobs; the page serves it all the same.
    store = FrameStore(f"file://{tmp_path / 'frames'}")
    verdict = dataclasses.replace(result(20), source=Source("frames", 1, 20))
    refs = store.put_results([verdict], [])
    with site.sessions() as session, session.begin():
        write_results(session, [verdict], [], [], ModelInfo("tiny", "2"), 60, frame_refs=refs)
        row = session.scalars(select(Defect).where(Defect.source_partition == 1)).one()
        assert row.frame is None and row.frame_uri is not None
        defect_id = row.id
    assert site.client.get(f"/defects/{defect_id}/image/frame").content == frame_png(20)
    assert site.client.get(f"/defects/{defect_id}/image/overlay").content == overlay_png(20)
    assert site.client.get(f"/defects/{defect_id}/thumb.jpg").status_code == 200
    assert '<rect class="region"' in site.client.get(f"/defects/{defect_id}").text


def test_rates_page_shows_each_cameras_false_alarm_drift(site: Site) -> None:
    config = AlertRuleConfig(None, 10_000, 10_000, 0.0, drift_window_frames=40, drift_factor=5.0)
    reference = DriftReference(budget=0.001, normal_median=0.01, normal_std=0.01)
    frames = [frame_result(i, i % 4 == 0, XSS_CAMERA) for i in range(40)] + [frame_result(i, False) for i in range(40)]
    with site.sessions() as session, session.begin():
        cameras = load_rule_state(session, {XSS_CAMERA, "cam-1"})
        AlertRules(config).evaluate(frames, "1", cameras, reference)
        save_rule_state(session, cameras)
    html = site.client.get("/rates").text
    table = html[html.index('<table id="drift"') :]
    assert "<script>alert(1)</script>" not in table and "&lt;script&gt;" in table  # stored camera ids are escaped
    assert "25.00 %" in table and "0.10 %" in table and "drifting" in table
    only = site.client.get("/rates", params={"camera": "cam-1"}).text
    assert "drifting" not in only[only.index('<table id="drift"') :]
