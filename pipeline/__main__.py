"""`python -m pipeline` runs the `lineguard` command."""

from pipeline.cli.app import main

main()
