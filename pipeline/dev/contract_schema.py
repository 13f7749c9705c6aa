"""Writes docs/contract.schema.json, the JSON schema of a model's metadata, from pipeline/contract.py; a test keeps
the committed file equal to what this writes (`python -m pipeline.dev.contract_schema` after changing a field)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.contract import contract_schema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "contract.schema.json"


def schema_text() -> str:
    return json.dumps(contract_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else SCHEMA_PATH
    path.write_text(schema_text())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
