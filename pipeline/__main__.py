"""`python -m pipeline` runs the `lineguard` command."""

from pipeline.cli import main

main()
