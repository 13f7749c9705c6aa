"""The `lineguard` command: thin Typer commands that parse options and call one library function.

Training commands live in `training.cli` and are mounted only when the training extra is installed,
so the line image (which has no torch) still runs every runtime command.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from pipeline.errors import LineGuardError

_RUNTIME_COMMANDS = ("pipeline.inspect_cli", "pipeline.line_cli")
_TRAINING_COMMANDS = ("training.cli",)


def build_app() -> typer.Typer:
    """The full command tree: runtime commands, plus training commands where torch is installed."""
    app = typer.Typer(
        name="lineguard",
        help="LineGuard: streaming quality inspection for factory lines.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    for name in (*_RUNTIME_COMMANDS, *_TRAINING_COMMANDS):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # a module not written yet, or the training extra (torch) not installed on a line image
            if exc.name == name or exc.name in {"torch", "sklearn", "matplotlib"}:
                continue
            raise
        module.register(app)
    return app


def main() -> None:
    """Entry point: one readable line on a LineGuard error, never a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
