"""The HTML pages: the filtered, paged list, one defect with its images and review panel, the defect-rate chart."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from pipeline.alerting.state import camera_drift
from pipeline.errors import ForeignFrameURIError, NotFoundError
from pipeline.review.chart import chart_span_problem, rate_chart
from pipeline.review.context import DefectId, render, review_config
from pipeline.review.filters import parse_list_query
from pipeline.review.images import BROWSER_TYPES, KINDS, defect_image, image_size
from pipeline.storage.rates import defect_rates
from pipeline.storage.review import DefectFilter, get_defect, model_versions, neighbours, page_of_defects

router = APIRouter()


@router.get("/", response_class=HTMLResponse, name="defect_list")
def defect_list(request: Request) -> HTMLResponse:
    query = parse_list_query(request.query_params)
    if query.errors:
        return render(request, "list.html", {"query": query, "result": None, "versions": []}, status_code=400)
    with review_config(request).sessions() as session:
        result = page_of_defects(session, query.where, query.page, query.per_page)
        versions = model_versions(session)
    return render(request, "list.html", {"query": query, "result": result, "versions": versions})


@router.get("/defects/{defect_id}", response_class=HTMLResponse, name="defect_page")
def defect_page(request: Request, defect_id: DefectId) -> HTMLResponse:
    # The query string is the list the reviewer came from: its filters pick the previous and next defects.
    query = parse_list_query(request.query_params)
    where = DefectFilter() if query.errors else query.where
    config = review_config(request)
    with config.sessions() as session:
        try:
            defect = get_defect(session, defect_id)
        except NotFoundError as exc:
            return render(request, "error.html", {"message": str(exc)}, status_code=404)
        newer, older = neighbours(session, where, defect)
        images: dict[str, tuple[bytes, str] | None] = {}
        refused: list[str] = []
        for kind in KINDS:
            try:
                images[kind] = defect_image(defect, kind, config.store)
            except ForeignFrameURIError:
                images[kind] = None
                refused.append(kind)
    shown = {kind: found is not None and found[1] in BROWSER_TYPES for kind, found in images.items()}
    frame = images["frame"]
    size = image_size(*frame) if frame is not None else None
    context = {
        "d": defect,
        "query": query,
        "newer": newer,
        "older": older,
        "shown": shown,
        "frame_type": frame[1] if frame is not None else None,
        "frame_size": size,
        "refused": refused,
    }
    return render(request, "defect.html", context)


@router.get("/rates", response_class=HTMLResponse, name="rates")
def rates_page(request: Request) -> HTMLResponse:
    query = parse_list_query(request.query_params)
    problem = chart_span_problem(query.where.since, query.where.until, datetime.now(UTC))
    if problem is not None:
        query = dataclasses.replace(query, errors=(*query.errors, problem))
    if query.errors:
        return render(request, "rates.html", {"query": query, "chart": None}, status_code=400)
    where = query.where
    with review_config(request).sessions() as session:
        rates = defect_rates(session, where.camera, where.line, where.since, where.until)
        drift = camera_drift(session, where.camera)
    context = {"query": query, "chart": rate_chart(rates), "rates": rates, "drift": drift}
    return render(request, "rates.html", context)
