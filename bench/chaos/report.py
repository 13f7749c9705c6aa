"""The report: which code ran, the table printed, the JSON written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench.chaos import REPO
from bench.chaos.plan import PARTITIONS


def code_version() -> str:
    """The commit the pipeline code came from, and whether pipeline/ differed from it (others' work in progress)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    if not (REPO / ".git").exists():
        return "unknown (not a git checkout: say what it is with --code)"
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" + uncommitted changes under pipeline/" if git("status", "--porcelain", "pipeline") else "")


def print_table(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    c = r["config"]
    table = Table(title=f"Chaos run, {r['machine']}, {c['frames']} frames on {PARTITIONS} partitions, seed {c['seed']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("expected", justify="right")
    kills = f"{r['kills_mid_stream']} / {r['kills_during_pg_outage']} / {r['kills_during_webhook_outage']}"
    rows = [
        ("SIGKILLs (mid-stream / during PG outage / webhook down)", f"{r['kills_done']} ({kills})", str(c["kills"])),
        ("PostgreSQL outages", f"{r['pg_outages']} ({', '.join(f'{s:.1f}' for s in r['plan']['pg_down_s'])} s)", ""),
        ("webhook down", f"{r['webhook_down_s']:.0f} s", ""),
        ("consumer starts (restarts)", f"{r['consumer_starts']} ({r['restarts']})", ""),
        ("exits on its own (while PG down)", f"{r['self_exits']} ({r['self_exits_while_pg_down']})", ""),
        ("wall time", f"{r['wall_s']:.0f} s", ""),
        ("defects: reference / stored", f"{r['defects_reference']} / {r['defects_stored']}", "equal"),
        ("defects lost / extra", f"{r['defects_lost']} / {r['defects_extra']}", "0 / 0"),
        ("frames counted (inspection_counts)", str(r["frames_counted"]), str(r["frames_sent"])),
        ("defects counted (inspection_counts)", str(r["defects_counted"]), str(r["defects_stored"])),
        ("alerts in table (by rule)", f"{r['alerts_in_table']} {r['alerts_by_rule']}", str(r["alerts_reference"])),
        (
            "alerts not raised / extra vs reference",
            f"{len(r['alerts_not_raised'])} / {len(r['alerts_raised_extra'])}",
            "0 / 0",
        ),
        ("webhook: accepted / distinct ids", f"{r['webhook_requests_accepted']} / {r['webhook_distinct_ids']}", ""),
        ("webhook duplicates (same id again)", str(r["webhook_duplicates"]), "reported"),
        ("alerts missing / unknown ids", f"{r['alerts_missing']} / {r['alerts_unknown']}", "0 / 0"),
        ("deliveries not marked delivered", str(r["deliveries_not_delivered"]), "0"),
        ("DLQ records", str(r["dlq_records"]), "0"),
        ("database offsets = log ends", str(r["db_offsets"] == r["end_offsets"]), "True"),
        ("Kafka commit behind the database, per partition", str(r["kafka_commit_lag"]), ">= 0"),
    ]
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(f"log lines: {r['logs']['counts']}")
    console.print("[bold green]PASSED[/]" if r["passed"] else "[bold red]FAILED[/]")


def write_json(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")
