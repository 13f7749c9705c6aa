"""The review page filters by `lineguard cluster`'s id and shows a defect's cluster, on SQLite and PostgreSQL."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from review_seed import DEFECT_OFFSETS, seed
from sqlalchemy import select

from pipeline.review.app import create_app
from pipeline.review.auth import new_token
from pipeline.storage.clusters import write_clusters
from pipeline.storage.engine import open_database
from pipeline.storage.tables import Defect


def test_cluster_filter_and_detail(db_url: str) -> None:
    engine, sessions = open_database(db_url)
    seed(sessions)
    with sessions() as session, session.begin():
        ids = dict(session.execute(select(Defect.source_offset, Defect.id)).all())
        # offsets divisible by 4 in cluster 1, the rest in 0, one as DBSCAN noise
        clusters = {ids[o]: (1 if o % 4 == 0 else 0) for o in DEFECT_OFFSETS}
        clusters[ids[2]] = -1
        del clusters[ids[6]]  # left out of the clustering
        write_clusters(session, clusters)
    with TestClient(create_app(sessions, new_token(), labels=["dent"])) as client:
        page = client.get("/", params={"cluster": "1"})
        shown = {int(i) for i in re.findall(r'<tr data-id="(\d+)"', page.text)}
        assert shown == {ids[o] for o in DEFECT_OFFSETS if o % 4 == 0}
        assert 'name="cluster" value="1"' in page.text  # the form keeps the filter
        noise = client.get("/", params={"cluster": "-1"})
        assert {int(i) for i in re.findall(r'<tr data-id="(\d+)"', noise.text)} == {ids[2]}
        bad = client.get("/", params={"cluster": "two"})
        assert "cluster &#39;two&#39;: use a cluster id" in bad.text
        detail = client.get(f"/defects/{ids[4]}")
        assert '<dt>cluster</dt><dd><a href="/?cluster=1">1</a></dd>' in detail.text
        unclustered = client.get(f"/defects/{ids[6]}")
        assert unclustered.status_code == 200 and "<dt>cluster</dt>" not in unclustered.text
    engine.dispose()
