"""`lineguard models list | promote`: the model registry, and the gate a new version passes to become active."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.options import ConfigOpt, DbOpt, settings_from, stored_text
from pipeline.errors import LineGuardError

models_app = typer.Typer(help="The model registry: versions, metrics, promotions.", no_args_is_help=True)

TABLE_COLUMNS = ("model", "version", "active", "registered UTC", "AUROC", "F1", "FP rate", "decision", "by", "reason")


@models_app.command("promote")
def models_promote(
    model: Annotated[Path, typer.Argument(help="the new .onnx model (its report lies beside it: MODEL.report.json)")],
    db: DbOpt = None,
    force: Annotated[
        bool, typer.Option(help="activate even if worse than the active version (needs --reason)")
    ] = False,
    reason: Annotated[str | None, typer.Option(help="why: recorded with the decision")] = None,
    by: Annotated[str | None, typer.Option(help="who decides (default: the login name)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Register a model version; make it active only if it is not worse than the active one on its evaluation set."""
    from pipeline.registry.gate import PromotionRequest, promote
    from pipeline.storage.engine import open_database

    settings = settings_from(config, database_url=db)
    _, sessions = open_database(settings.db_url)
    request = PromotionRequest(model, force=force, reason=reason, decided_by=by or getpass.getuser())
    decision = promote(sessions, request)
    if not decision.active:
        raise LineGuardError(f"promotion refused: {decision.message}")
    typer.echo(f"{decision.outcome}: {decision.model_name} v{decision.model_version} is active ({decision.message})")


@models_app.command("list")
def models_list(
    db: DbOpt = None,
    name: Annotated[str | None, typer.Option(help="only this model name")] = None,
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    config: ConfigOpt = None,
) -> None:
    """Registered versions, newest first: the active one, metrics on their evaluation set, the latest decision."""
    from pipeline.storage.engine import open_database
    from pipeline.storage.registry import decisions_of, list_versions

    if output not in ("table", "json"):
        raise LineGuardError(f"--format must be table or json, got {output!r}")
    settings = settings_from(config, database_url=db)
    _, sessions = open_database(settings.db_url)
    with sessions() as session:
        rows = [
            _row(listing.version, listing.active, [_decision(d) for d in decisions_of(session, listing.version)])
            for listing in list_versions(session, name)
        ]
    if output == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} registered versions")
    for column in TABLE_COLUMNS:
        table.add_column(column, no_wrap=column != "reason", overflow="fold")
    for row in rows:
        metrics = row["metrics"] or {}
        last = row["decisions"][-1] if row["decisions"] else {}
        cells = (
            row["model_name"],
            row["model_version"],
            "*" if row["active"] else "",
            row["registered_at"][:16].replace("T", " "),
            *(_figure(metrics.get(key)) for key in ("image_auroc", "f1", "false_positive_rate")),
            last.get("outcome", ""),
            last.get("decided_by", ""),
            last.get("reason") or "",
        )
        table.add_row(*map(stored_text, cells))  # names and reasons are stored strings: never Rich markup
    Console().print(table)


def _row(version: Any, active: bool, decisions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model_name": version.model_name,
        "model_version": version.model_version,
        "active": active,
        "path": version.path,
        "file_sha256": version.file_sha256,
        "registered_at": _iso(version.registered_at),
        "metrics": version.metrics,
        "evaluation_digest": version.evaluation_digest,
        "metadata": version.model_metadata,
        "decisions": decisions,
    }


def _decision(decision: Any) -> dict[str, Any]:
    return {
        "outcome": decision.outcome,
        "decided_by": decision.decided_by,
        "reason": decision.reason,
        "decided_at": _iso(decision.decided_at),
        "comparison": decision.comparison,
    }


def _iso(value: datetime) -> str:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _figure(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ""


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
