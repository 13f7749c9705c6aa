"""The page's data routes: a reviewer's verdict (token required) and the CSV export of the filtered view."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import LineGuardError, NotFoundError
from pipeline.review.auth import require_writer
from pipeline.review.context import review_config
from pipeline.review.filters import parse_list_query
from pipeline.storage.review import DefectFilter, defects_after, review_defect, summary

router = APIRouter()
CSV_COLUMNS = (
    "id", "camera_id", "line_id", "captured_at", "detected_at", "score", "threshold", "model", "regions",
    "status", "label", "note", "reviewed_by", "reviewed_at", "source",
)  # fmt: skip
# A cell starting like a formula runs as one in a spreadsheet (CSV injection); a leading quote keeps it text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ReviewBody(BaseModel):
    """A verdict as the page sends it: the whole review state of one defect."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["new", "confirmed", "rejected"]
    label: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=4000)  # None keeps the stored note, "" clears it
    reviewer: str | None = Field(default=None, max_length=128)


@router.post("/api/defects/{defect_id}/review", dependencies=[Depends(require_writer)], name="review_defect")
def review(request: Request, defect_id: int, body: ReviewBody) -> dict[str, Any]:
    with review_config(request).sessions() as session, session.begin():
        try:
            defect = review_defect(
                session, defect_id, body.status, body.label, body.note, (body.reviewer or "").strip() or "web"
            )
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        except LineGuardError as exc:
            raise HTTPException(422, str(exc)) from exc
        return summary(defect)


@router.get("/defects.csv", name="defects_csv")
def export_csv(request: Request) -> Response:
    query = parse_list_query(request.query_params)
    if query.errors:
        return PlainTextResponse("\n".join(query.errors) + "\n", status_code=400)
    return StreamingResponse(
        csv_lines(review_config(request).sessions, query.where),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="defects.csv"'},
    )


def csv_lines(sessions: sessionmaker[Session], where: DefectFilter, batch: int = 500) -> Iterator[str]:
    """Every defect of the filtered view, newest first, one short session per batch (a long export must not hold
    SQLite's write lock, which each transaction here takes, while the consumer waits to write)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    last = None
    while True:
        with sessions() as session:
            rows = defects_after(session, where, last, batch)
        for defect in rows:
            writer.writerow({name: _cell(value) for name, value in summary(defect).items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < batch:
            return
        last = rows[-1]


def _cell(value: object) -> object:
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value
