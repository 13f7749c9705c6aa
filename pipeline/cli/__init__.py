"""The `lineguard` command: thin Typer commands that parse options and call one library function.

`app` assembles them; `consume`, `defects` and `inspect_model` are the runtime's own commands. The CLI may
import any part of `pipeline`; nothing in `pipeline` imports the CLI.
"""
