"""The list's query string: filters, page and page size, parsed once for the list, the CSV, the chart and links."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError

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


def _text(value: Any, info: ValidationInfo) -> str | None:
    """A filter as typed, stripped; None when empty. PostgreSQL refuses NUL in text, and no id holds control
    characters: say so instead of a failed query."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        return None
    if len(text) > MAX_VALUE_CHARS or not text.isprintable():
        raise PydanticCustomError(
            "unprintable",
            "{name}: at most {chars} printable characters",
            {"name": info.field_name, "chars": MAX_VALUE_CHARS},
        )
    return text


def _time(value: Any, info: ValidationInfo) -> datetime | None:
    text = _text(value, info)
    if text is None:
        return None
    try:
        return parse_since(text, (info.context or {}).get("now"), name=str(info.field_name))
    except LineGuardError as exc:
        raise ValueError(str(exc)) from None


def _score(value: Any, info: ValidationInfo) -> float | None:
    text = _text(value, info)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{info.field_name} {text[:32]!r}: use a number like 0.25")
    return number


def _status(value: Any, info: ValidationInfo) -> str | None:
    text = _text(value, info)
    if text is not None and text not in REVIEW_STATUSES:
        raise ValueError(f"status {text[:32]!r}: use one of {', '.join(REVIEW_STATUSES)}")
    return text


def _cluster(value: Any, info: ValidationInfo) -> int | None:
    """`lineguard cluster`'s id: a whole number, -1 for DBSCAN's noise."""
    text = _text(value, info)
    if text is None:
        return None
    if not _is_whole(text.removeprefix("-"), len(str(MAX_CLUSTER))) or not -1 <= int(text) <= MAX_CLUSTER:
        raise ValueError(f"cluster {text[:32]!r}: use a cluster id from `lineguard cluster` (-1: noise)")
    return int(text)


def _is_whole(text: str, digits: int) -> bool:
    """ASCII digits only (str.isdigit takes "²", which int() refuses), and few enough to convert quickly."""
    return 0 < len(text) <= digits and text.isascii() and text.isdigit()


def _whole(default: int, low: int, high: int) -> BeforeValidator:
    def parse(value: Any, info: ValidationInfo) -> int:
        text = value.strip() if isinstance(value, str) else ""
        if not text:
            return default
        if not _is_whole(text, len(str(high))) or not low <= int(text) <= high:
            raise ValueError(f"{info.field_name} {text[:32]!r}: use a whole number from {low} to {high}")
        return int(text)

    return BeforeValidator(parse)


Text = Annotated[str | None, BeforeValidator(_text)]


class ListParams(BaseModel):
    """The list's query parameters, each parsed and checked where it is declared (context: `now`, for relative
    times). Every value comes in as typed text; a bad one is an error with the message the page shows."""

    model_config = ConfigDict(frozen=True)

    camera: Text = None
    line: Text = None
    since: Annotated[datetime | None, BeforeValidator(_time)] = None
    until: Annotated[datetime | None, BeforeValidator(_time)] = None
    min_score: Annotated[float | None, BeforeValidator(_score)] = None
    max_score: Annotated[float | None, BeforeValidator(_score)] = None
    status: Annotated[str | None, BeforeValidator(_status)] = None
    label: Text = None
    model_version: Text = None
    cluster: Annotated[int | None, BeforeValidator(_cluster)] = None
    page: Annotated[int, _whole(1, 1, MAX_PAGE)] = 1
    per_page: Annotated[int, _whole(PER_PAGE, 1, MAX_PER_PAGE)] = PER_PAGE


def parse_list_query(params: Mapping[str, str], now: datetime | None = None) -> ListQuery:
    """Every problem is reported (the page shows them) instead of silently widening the view: a bad parameter is
    left out of the query, and of the links too when it is not printable text."""
    raw = {name: params[name] for name in ListParams.model_fields if name in params}
    context = {"now": now}
    errors: list[str] = []
    unprintable: set[str] = set()
    try:
        parsed = ListParams.model_validate(raw, context=context)
    except ValidationError as exc:
        problems = exc.errors(include_url=False)
        errors = [str(e["ctx"]["error"]) if e["type"] == "value_error" else e["msg"] for e in problems]
        unprintable = {str(e["loc"][0]) for e in problems if e["type"] == "unprintable"}
        bad = {str(e["loc"][0]) for e in problems}
        parsed = ListParams.model_validate({k: v for k, v in raw.items() if k not in bad}, context=context)
    values = {name: params[name].strip() for name in FIELDS if (params.get(name) or "").strip()}
    values = {name: value for name, value in values.items() if name not in unprintable}
    where = DefectFilter(**parsed.model_dump(exclude={"page", "per_page"}))
    return ListQuery(where, values, parsed.page, parsed.per_page, tuple(errors))
