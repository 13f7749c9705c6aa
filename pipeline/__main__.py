"""`python -m pipeline ...` runs the `lineguard` command (used where the console script is not installed)."""

from pipeline.cli import main

main()
