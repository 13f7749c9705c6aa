"""The `lineguard` command: thin Typer commands that parse options and call one library function.

Training commands live in `training.cli` and are loaded only when called, so the line image (which has
no torch) still runs every runtime command.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from pipeline.errors import LineGuardError

app = typer.Typer(
    name="lineguard",
    help="LineGuard: streaming quality inspection for factory lines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _mount_training_commands() -> None:
    # Registered from training.cli's own signatures so that --help shows the real options; when the
    # training extra is not installed the commands are absent rather than broken.
    try:
        training_cli = importlib.import_module("training.cli")
    except ModuleNotFoundError:
        return
    training_cli.register(app)


def _mount_runtime_commands() -> None:
    inspect_cli = importlib.import_module("pipeline.inspect_cli")
    inspect_cli.register(app)
    for name in ("pipeline.line_cli",):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(app)


def main() -> None:
    """Entry point: one readable line on a LineGuard error, never a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _mount_runtime_commands()
    _mount_training_commands()
    try:
        app()
    except LineGuardError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(1)
