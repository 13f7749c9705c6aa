"""The list's query string: filters, page and page size, parsed once for the list, the CSV, the chart and links."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from pipeline.errors import LineGuardError
from pipeline.storage.review import REVIEW_STATUSES, DefectFilter, parse_since

FIELDS = ("camera", "line", "since", "until", "min_score", "max_score", "status", "label", "model_version", "cluster")
PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_PAGE = 10**9
# Longest filter value: camera and line ids, labels and model versions are short; longer input is an error, not a
# query.
MAX_VALUE_CHARS = 256
MAX_CLUSTER = 2**31 - 1


@dataclass(frozen=True)
class ListQuery:
    """A parsed query string; `values` keeps the filters as typed, to refill the form and carry into links."""

    where: DefectFilter
    values: dict[str, str]
    page: int = 1
    per_page: int = PER_PAGE
    errors: tuple[str, ...] = ()

    def link(self, **changes: int | str | None) -> str:
        """This query string ("?..." or "") with some parameters changed (None removes one)."""
        params = dict(self.values)
        params |= {"page": str(self.page), "per_page": str(self.per_page)}
        for name, value in changes.items():
            params[name] = "" if value is None else str(value)
        defaults = {"page": "1", "per_page": str(PER_PAGE)}
        kept = {name: value for name, value in params.items() if value and defaults.get(name) != value}
        return "?" + urlencode(kept) if kept else ""

    def filters_only(self) -> str:
        """The query string of the filters alone (the CSV export of the same view)."""
        return self.link(page=None, per_page=None)

    def chart_link(self) -> str:
        """The query string of the filters the defect-rate chart has (camera, line, time)."""
        dropped = set(FIELDS) - {"camera", "line", "since", "until"}
        return self.link(page=None, per_page=None, **dict.fromkeys(dropped))


def parse_list_query(params: Mapping[str, str], now: datetime | None = None) -> ListQuery:
    """Every problem is reported (the page shows them) instead of silently widening the view."""
    values = {name: params[name].strip() for name in FIELDS if (params.get(name) or "").strip()}
    errors: list[str] = []
    for name, value in list(values.items()):
        # PostgreSQL refuses NUL in text, and no id holds control characters: say so instead of a failed query.
        if len(value) > MAX_VALUE_CHARS or not value.isprintable():
            errors.append(f"{name}: at most {MAX_VALUE_CHARS} printable characters")
            del values[name]
    times: dict[str, datetime] = {}
    for name in ("since", "until"):
        if name in values:
            try:
                times[name] = parse_since(values[name], now, name=name)
            except LineGuardError as exc:
                errors.append(str(exc))
    scores = {name: _number(values, name, errors) for name in ("min_score", "max_score")}
    status = values.get("status")
    if status is not None and status not in REVIEW_STATUSES:
        errors.append(f"status {status[:32]!r}: use one of {', '.join(REVIEW_STATUSES)}")
        status = None
    cluster = _cluster(values, errors)
    page = _whole(params, "page", 1, 1, MAX_PAGE, errors)
    per_page = _whole(params, "per_page", PER_PAGE, 1, MAX_PER_PAGE, errors)
    where = DefectFilter(
        camera=values.get("camera"),
        line=values.get("line"),
        since=times.get("since"),
        until=times.get("until"),
        min_score=scores["min_score"],
        max_score=scores["max_score"],
        status=status,
        label=values.get("label"),
        model_version=values.get("model_version"),
        cluster=cluster,
    )
    return ListQuery(where, values, page, per_page, tuple(errors))


def _number(values: dict[str, str], name: str, errors: list[str]) -> float | None:
    if name not in values:
        return None
    try:
        number = float(values[name])
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        errors.append(f"{name} {values[name][:32]!r}: use a number like 0.25")
        return None
    return number


def _cluster(values: dict[str, str], errors: list[str]) -> int | None:
    """`lineguard cluster`'s id: a whole number, -1 for DBSCAN's noise."""
    text = values.get("cluster")
    if text is None:
        return None
    if not _is_whole(text.removeprefix("-"), len(str(MAX_CLUSTER))) or not -1 <= int(text) <= MAX_CLUSTER:
        errors.append(f"cluster {text[:32]!r}: use a cluster id from `lineguard cluster` (-1: noise)")
        return None
    return int(text)


def _is_whole(text: str, digits: int) -> bool:
    """ASCII digits only (str.isdigit takes "²", which int() refuses), and few enough to convert quickly."""
    return 0 < len(text) <= digits and text.isascii() and text.isdigit()


def _whole(params: Mapping[str, str], name: str, default: int, low: int, high: int, errors: list[str]) -> int:
    text = (params.get(name) or "").strip()
    if not text:
        return default
    if not _is_whole(text, len(str(high))) or not low <= int(text) <= high:
        errors.append(f"{name} {text[:32]!r}: use a whole number from {low} to {high}")
        return default
    return int(text)
