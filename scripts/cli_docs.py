"""Write docs/CLI.md, the command reference, from the `lineguard` app itself: the click command tree Typer builds,
each command's help, usage and the argument and option records its `--help` prints.

Run `.venv/bin/python scripts/cli_docs.py` after changing a command or an option;
`tests/pipeline/cli/test_cli_docs.py` fails while docs/CLI.md differs from what this writes.
`--check` exits 1 instead of writing when the file is out of date; `--stdout` prints the page instead.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

import typer
from typer.core import TyperGroup

REPO_ROOT = Path(__file__).resolve().parent.parent
CLI_MD = REPO_ROOT / "docs" / "CLI.md"
REGENERATE = ".venv/bin/python scripts/cli_docs.py"

# The same text on every machine: nothing the terminal says (width, colour support) may reach the help text; the
# records are read from the click objects, never from rich's rendering, and these keep any import that looks quiet.
FIXED_ENVIRONMENT = {"COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}

HEADER = f"""# `lineguard` command reference

Generated from the `lineguard` app by `scripts/cli_docs.py` (every command: the runtime's, and those
`pipeline.dev` and `training` add through the `lineguard.commands` entry points). Do not edit by hand:
after changing a command or an option run

```bash
{REGENERATE}
```

`tests/pipeline/cli/test_cli_docs.py` fails while this page differs from the app. Settings that every command
shares (`LINEGUARD_*` variables, `--config FILE`) are described in `pipeline/README.md`.

"""


def render() -> str:
    """The whole page for the app as installed here."""
    os.environ.update(FIXED_ENVIRONMENT)
    sys.path.insert(0, str(REPO_ROOT))
    from pipeline.cli.app import build_app

    command = typer.main.get_command(build_app())
    with typer.Context(command, info_name="lineguard", terminal_width=100, color=False) as ctx:
        return HEADER + "\n".join(_section(command, ctx, "lineguard", 2)) + "\n"


def _section(command: typer.core.TyperCommand | TyperGroup, ctx: typer.Context, path: str, level: int) -> list[str]:
    """One command's heading, help, usage, arguments and options (the records `--help` prints), then its
    subcommands' sections."""
    lines = ["#" * level + f" `{path}`", ""]
    if command.help:
        lines += [inspect.cleandoc(command.help), ""]
    lines += ["```", f"{path} {' '.join(command.collect_usage_pieces(ctx))}", "```", ""]
    for kind, title in (("argument", "Arguments"), ("option", "Options")):
        records = [p.get_help_record(ctx) for p in command.get_params(ctx) if p.param_type_name == kind]
        records = [r for r in records if r is not None]
        if records:
            lines += [f"{title}:", ""]
            lines += [f"- `{name}`" + (f": {text}" if text else "") for name, text in records]
            lines.append("")
    if command.epilog:
        lines += [command.epilog, ""]
    if isinstance(command, TyperGroup):
        subcommands = [command.get_command(ctx, name) for name in command.list_commands(ctx)]
        lines += ["Commands:", ""]
        for sub in subcommands:
            anchor = f"{path} {sub.name}".replace(" ", "-")
            lines.append(f"- [`{sub.name}`](#{anchor}): {sub.get_short_help_str(limit=200)}")
        lines.append("")
        for sub in subcommands:
            with typer.Context(sub, info_name=sub.name, parent=ctx, terminal_width=100, color=False) as sub_ctx:
                lines += _section(sub, sub_ctx, f"{path} {sub.name}", level + 1)
    return lines


def main() -> int:
    text = render()
    if "--stdout" in sys.argv[1:]:
        sys.stdout.write(text)
        return 0
    if "--check" in sys.argv[1:]:
        if CLI_MD.exists() and CLI_MD.read_text(encoding="utf-8") == text:
            return 0
        print(f"{CLI_MD.relative_to(REPO_ROOT)} is out of date; run: {REGENERATE}", file=sys.stderr)
        return 1
    CLI_MD.write_text(text, encoding="utf-8")
    print(f"wrote {CLI_MD.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
