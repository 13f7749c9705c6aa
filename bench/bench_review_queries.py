"""Review queries at scale: a million defect rows in SQLite and PostgreSQL, the review page's filters timed with
the defects indexes as they were before issue 8's frame store migration (0005) and as the models declare them now.

    python bench/bench_review_queries.py                          # 1,000,000 rows, SQLite and PostgreSQL
    python bench/bench_review_queries.py --rows 100000 --reps 10 --db sqlite

Rows are bulk-inserted without image bytes, spread over cameras, lines, 90 days, review statuses, labels, scores
and model versions the way a line produces them (a few noisy cameras, old defects mostly reviewed, most flagged
frames false positives). Each filter runs `reps` times with fresh parameters through pipeline/storage/review.py:
`defects_after` (the first page of rows, newest first) and `page_of_defects` (a page plus the total count, what the
page shows). Prints a table and writes bench/results/review-queries-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, insert, inspect, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.storage.engine import make_engine, migrate  # noqa: E402
from pipeline.storage.review import DefectFilter, defects_after, page_of_defects  # noqa: E402
from pipeline.storage.tables import Defect  # noqa: E402

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
DAYS = 90
CAMERAS = [f"cam-{i:02d}" for i in range(40)]
LINES = [f"line-{i}" for i in range(8)]
LABELS = ["scratch", "dent", "stain", "crack", "missing-part", "other"]
LABEL_WEIGHTS = [0.40, 0.25, 0.15, 0.10, 0.05, 0.05]
VERSIONS = [str(v) for v in range(1, 7)]  # one new model version every 15 days
# The defects indexes before migration 0005 (0001 to 0004), for the "before" column.
BEFORE = {
    "ix_defects_camera_captured": ("camera_id", "captured_at"),
    "ix_defects_line_captured": ("line_id", "captured_at"),
    "ix_defects_status_captured": ("review_status", "captured_at"),
    "ix_defects_label": ("label",),
    "ix_defects_score": ("score",),
    "ix_defects_model_version": ("model_version",),
}


# The defects indexes the models declare now (migration 0005), read once: the "after" column.
AFTER = {str(ix.name): tuple(c.name for c in ix.columns) for ix in Defect.__table__.indexes}


def rows(count: int, seed: int, chunk: int = 20_000) -> Iterator[list[dict[str, Any]]]:
    """Defect rows in chunks, oldest first."""
    rng = np.random.default_rng(seed)
    camera_weights = rng.pareto(1.5, len(CAMERAS)) + 1.0  # a few cameras flag far more than the rest
    camera_weights /= camera_weights.sum()
    ages = np.sort(rng.uniform(0, DAYS * 86_400, count))[::-1]  # seconds before NOW
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        age = ages[start : start + n]
        cams = rng.choice(len(CAMERAS), n, p=camera_weights)
        # reviewers keep up with most of the backlog, not with the last day
        p_reviewed = np.where(age > 14 * 86_400, 0.9, np.where(age > 86_400, 0.5, 0.1))
        reviewed = rng.random(n) < p_reviewed
        confirmed = reviewed & (rng.random(n) < 0.35)
        versions = np.minimum(((DAYS * 86_400 - age) // (15 * 86_400)).astype(int), len(VERSIONS) - 1)
        thresholds = 0.10 + 0.01 * versions
        scores = thresholds + rng.exponential(np.where(confirmed, 0.25, 0.06))
        labels = rng.choice(len(LABELS), n, p=LABEL_WEIGHTS)
        batch = []
        for i in range(n):
            offset = start + i
            captured = NOW - timedelta(seconds=float(age[i]))
            status = "confirmed" if confirmed[i] else ("rejected" if reviewed[i] else "new")
            batch.append(
                {
                    "source_topic": "lineguard.frames",
                    "source_partition": offset % 12,
                    "source_offset": offset,
                    "camera_id": CAMERAS[cams[i]],
                    "line_id": LINES[cams[i] % len(LINES)],
                    "seq": offset,
                    "captured_at": captured,
                    "detected_at": captured + timedelta(milliseconds=80),
                    "score": float(scores[i]),
                    "threshold": float(thresholds[i]),
                    "model_name": "default",
                    "model_version": VERSIONS[versions[i]],
                    "regions": [{"x": 10, "y": 20, "w": 30, "h": 12, "area": 360, "peak": 0.8}],
                    "frame_content_type": "image/jpeg",
                    "frame_uri": f"file:///srv/frames/lineguard.frames/{offset % 12}/{offset:020d}-frame.jpg",
                    "review_status": status,
                    "label": LABELS[labels[i]] if confirmed[i] else None,
                    "reviewed_at": NOW if reviewed[i] else None,
                }
            )
        yield batch


def fill(engine: Engine, count: int, seed: int) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        for chunk in rows(count, seed):
            conn.execute(insert(Defect), chunk)
    return time.perf_counter() - started


def use_indexes(engine: Engine, wanted: dict[str, tuple[str, ...]]) -> None:
    """Drop the defects indexes not in `wanted`, create the missing ones, refresh the planner's statistics."""
    present = {ix["name"]: tuple(ix["column_names"]) for ix in inspect(engine).get_indexes("defects")}
    with engine.begin() as conn:
        for name, columns in present.items():
            if name.startswith("ix_defects_") and wanted.get(name) != columns:
                conn.execute(text(f"DROP INDEX {name}"))
        for name, columns in wanted.items():
            if present.get(name) != columns:  # plain DDL: an Index object would attach itself to the models' table
                conn.execute(text(f"CREATE INDEX {name} ON defects ({', '.join(columns)})"))
    analyze(engine)


def analyze(engine: Engine) -> None:
    # PostgreSQL's autovacuum keeps statistics and the visibility map (index-only scans) current on its own;
    # SQLite has statistics only where someone runs ANALYZE, and the line never does: measure it as it runs.
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE defects"))


Filter = Callable[[np.random.Generator], tuple[DefectFilter, int]]


def _day(rng: np.random.Generator, back: int) -> datetime:
    return NOW - timedelta(days=float(rng.uniform(0, back)))


QUERIES: dict[str, Filter] = {
    "newest, no filter": lambda rng: (DefectFilter(), 1),
    "camera + last 24 h": lambda rng: (DefectFilter(camera=str(rng.choice(CAMERAS)), since=NOW - timedelta(days=1)), 1),
    "camera + 7-day range": lambda rng: (
        DefectFilter(camera=str(rng.choice(CAMERAS)), since=(t := _day(rng, 80)) - timedelta(days=7), until=t),
        1,
    ),
    "line + last 7 d": lambda rng: (DefectFilter(line=str(rng.choice(LINES)), since=NOW - timedelta(days=7)), 1),
    "status new": lambda rng: (DefectFilter(status="new"), 1),
    "status confirmed + label": lambda rng: (DefectFilter(status="confirmed", label=str(rng.choice(LABELS))), 1),
    "label only": lambda rng: (DefectFilter(label=str(rng.choice(LABELS[2:]))), 1),
    "score >= high (top ~1 %)": lambda rng: (DefectFilter(min_score=float(rng.uniform(0.6, 0.8))), 1),
    "score range 0.2-0.3": lambda rng: (DefectFilter(min_score=0.2, max_score=0.3), 1),
    "model version": lambda rng: (DefectFilter(model_version=str(rng.choice(VERSIONS))), 1),
    "status new + camera": lambda rng: (DefectFilter(status="new", camera=str(rng.choice(CAMERAS))), 1),
    "page 100 of 50, no filter": lambda rng: (DefectFilter(), 100),
}


def measure(engine: Engine, reps: int, seed: int) -> dict[str, dict[str, float]]:
    from sqlalchemy.orm import sessionmaker

    sessions = sessionmaker(engine)
    results: dict[str, dict[str, float]] = {}
    for name, make in QUERIES.items():
        rng = np.random.default_rng(seed)
        rows_ms, page_ms, total = [], [], 0
        with sessions() as session:
            for _ in range(reps):
                where, page = make(rng)
                if page == 1:
                    started = time.perf_counter()
                    defects_after(session, where, None, limit=50)
                    rows_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                total = page_of_defects(session, where, page=page, per_page=50).total
                page_ms.append((time.perf_counter() - started) * 1000)
                session.rollback()
        results[name] = {"matched": total, **percentiles("rows", rows_ms), **percentiles("page", page_ms)}
        print(
            f"  {name:28s} rows p50 {results[name].get('rows_p50_ms', 0):8.1f} ms  page+count p50 "
            f"{results[name]['page_p50_ms']:8.1f} p95 {results[name]['page_p95_ms']:8.1f} ms",
            flush=True,
        )
    return results


def percentiles(prefix: str, values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {f"{prefix}_p50_ms": round(statistics.median(ordered), 2), f"{prefix}_p95_ms": round(p95, 2)}


def run_one(kind: str, url: str, count: int, reps: int, seed: int) -> dict[str, Any]:
    migrate(url)
    engine = make_engine(url)
    print(f"{kind}: filling {count:,} rows ...", flush=True)
    fill_s = fill(engine, count, seed)
    report: dict[str, Any] = {"fill_s": round(fill_s, 1)}
    for label, wanted in (("before", BEFORE), ("after", AFTER)):
        started = time.perf_counter()
        use_indexes(engine, wanted)
        print(f"{kind}, indexes {label}: {sorted(wanted)} ({time.perf_counter() - started:.1f} s to build)", flush=True)
        report[label] = {"indexes": wanted, "queries": measure(engine, reps, seed)}
    engine.dispose()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--db", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.processor() or '?'}, python {platform.python_version()}",
        "rows": args.rows,
        "reps": args.reps,
        "command": " ".join(sys.argv),
    }
    with tempfile.TemporaryDirectory() as work:
        for kind in args.db.split(","):
            if kind == "sqlite":
                report["sqlite"] = run_one(kind, f"sqlite:///{work}/review.db", args.rows, args.reps, args.seed)
            elif kind == "postgresql":
                import pgserver

                server = pgserver.get_server(Path(work) / "pg", cleanup_mode="stop")
                try:
                    url = server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
                    report["postgresql"] = run_one(kind, url, args.rows, args.reps, args.seed)
                finally:
                    server.cleanup()
            else:
                raise SystemExit(f"--db: sqlite or postgresql, got {kind!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"review-queries-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2))
    print_table(report)
    print(f"wrote {path}")


def print_table(report: dict[str, Any]) -> None:
    for kind in ("sqlite", "postgresql"):
        if kind not in report:
            continue
        print(f"\n{kind}, {report['rows']:,} rows: page + count p50 / p95 ms (first page of rows alone p50)")
        print("| filter | matched | before | after |")
        before, after = report[kind]["before"]["queries"], report[kind]["after"]["queries"]
        for name in QUERIES:
            b, a = before[name], after[name]
            print(
                f"| {name} | {a['matched']:,} | {b['page_p50_ms']} / {b['page_p95_ms']} ({b.get('rows_p50_ms', '-')})"
                f" | {a['page_p50_ms']} / {a['page_p95_ms']} ({a.get('rows_p50_ms', '-')}) |"
            )


if __name__ == "__main__":
    main()
