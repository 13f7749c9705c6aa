"""The `lineguard` app: the runtime's commands, plus those other packages add through an entry-point group.

The runtime names no other package. `pipeline.dev` (broker, simulate) and `training` (train, evaluate, retrain,
architectures, demo) declare `register(app)` functions in the `lineguard.commands` group of their distribution's
metadata; where one is not installed (the line image has neither), its commands are left out and `--help` says so
in one line.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import EntryPoint, entry_points

import typer

from pipeline.cli import consume, db, defects, frames, inspect_model, latent, models, review
from pipeline.errors import LineGuardError

COMMAND_GROUP = "lineguard.commands"


def build_app() -> typer.Typer:
    """The full command tree: runtime commands, then every installed `lineguard.commands` entry point."""
    registrations, skipped, absent = [], [], []
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        try:
            registrations.append(entry.load())
        except ModuleNotFoundError as exc:
            if not _not_installed(entry, exc):
                raise
            skipped.append(entry.name)
            absent.append(str(exc.name))
    note = f"Not installed here: {', '.join(skipped)} commands (no {', '.join(absent)})." if skipped else None
    app = typer.Typer(
        name="lineguard",
        help="LineGuard: streaming quality inspection for factory lines.",
        epilog=note,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    commands = (
        consume.register,
        db.register,
        defects.register,
        frames.register,
        inspect_model.register,
        latent.register,
        review.register,
    )
    for register in (*commands, models.register, *registrations):
        register(app)
    return app


def _not_installed(entry: EntryPoint, exc: ModuleNotFoundError) -> bool:
    """True when the entry point's own package or a third-party library it needs is absent; False when a module
    inside an installed package is missing, which is a bug to show, not a command set to leave out."""
    missing = exc.name or ""
    if entry.module == missing or entry.module.startswith(missing + "."):
        return True
    return not missing.startswith(entry.module.split(".")[0] + ".")


def main() -> None:
    """Entry point: one readable line on a LineGuard error, never a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every webhook request at INFO: one line per alert drowns the line's own log (failures still show).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = build_app()
    try:
        app(standalone_mode=True)
    except LineGuardError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(1)
    except ValueError as exc:
        # invalid values found below the CLI layer (config checks, data contents) are user errors
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(1)
