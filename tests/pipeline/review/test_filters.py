"""The list's query string, parsed by one pydantic model: every bad parameter reported and left out of the query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.review.filters import PER_PAGE, parse_list_query

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def test_good_parameters_become_the_filter() -> None:
    query = parse_list_query(
        {"camera": " cam-1 ", "since": "1.5h", "min_score": "0.25", "cluster": "-1", "per_page": "20"}, NOW
    )
    where = query.where
    assert (where.camera, where.min_score, where.cluster) == ("cam-1", 0.25, -1)
    assert where.since == NOW - timedelta(hours=1.5)
    assert (query.page, query.per_page, query.errors) == (1, 20, ())
    assert query.values == {"camera": "cam-1", "since": "1.5h", "min_score": "0.25", "cluster": "-1"}


def test_every_bad_parameter_is_reported_and_left_out() -> None:
    params = {"camera": "cam-1", "min_score": "lots", "status": "maybe", "page": "0", "label": "a\x00b", "until": "x"}
    query = parse_list_query(params, NOW)
    assert query.where.camera == "cam-1" and query.where.min_score is None and query.where.status is None
    assert query.where.until is None and (query.page, query.per_page) == (1, PER_PAGE)
    assert sorted(error.split()[0].rstrip(":") for error in query.errors) == [
        "label",
        "min_score",
        "page",
        "status",
        "until",
    ]
    assert "use a number like 0.25" in " ".join(query.errors)
    assert "label" not in query.values and query.values["min_score"] == "lots"  # refilled, unless unprintable
