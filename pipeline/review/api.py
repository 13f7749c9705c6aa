"""The page's data routes: a reviewer's verdict (token required) and the CSV export of the filtered view."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import LineGuardError, NotFoundError
from pipeline.review.auth import require_reviewer
from pipeline.review.context import DefectId, review_config
from pipeline.review.filters import parse_list_query
from pipeline.storage.review import DefectFilter, defects_after, review_defect, spreadsheet_cell, summary

router = APIRouter()
CSV_COLUMNS = (
    "id", "camera_id", "line_id", "captured_at", "detected_at", "score", "threshold", "model", "regions",
    "status", "label", "note", "reviewed_by", "reviewed_at", "source",
)  # fmt: skip


class ReviewBody(BaseModel):
    """A verdict as the page sends it: the whole review state of one defect. Who gave it is not part of it: the
    reviewer is the name the token is bound to."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["new", "confirmed", "rejected"]
    label: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=4000)  # None keeps the stored note, "" clears it

    @field_validator("label", "note")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        # PostgreSQL refuses NUL in text, and JSON can spell a lone surrogate no database stores
        if value is not None and ("\x00" in value or not _encodable(value)):
            raise ValueError("text with NUL characters or lone surrogates")
        return value


@router.post("/api/defects/{defect_id}/review", name="review_defect")
def review(
    request: Request, defect_id: DefectId, body: ReviewBody, reviewer: Annotated[str, Depends(require_reviewer)]
) -> dict[str, Any]:
    with review_config(request).sessions() as session, session.begin():
        try:
            defect = review_defect(session, defect_id, body.status, body.label, body.note, reviewer)
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        except LineGuardError as exc:
            raise HTTPException(422, str(exc)) from exc
        return summary(defect)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
            writer.writerow({name: spreadsheet_cell(value) for name, value in summary(defect).items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < batch:
            return
        last = rows[-1]
