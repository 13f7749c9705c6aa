"""Writes the JSON schemas of the training configurations, generated from their pydantic dataclasses:
docs/train-config.schema.json (training.config.TrainConfig, `lineguard train`) and
docs/train-sensors-config.schema.json (training.sensors.config.SensorTrainConfig, `lineguard train-sensors`).

    .venv/bin/python scripts/config_schemas.py           # after changing a field
    .venv/bin/python scripts/config_schemas.py --check   # exit 1 when a committed file differs (the tests run this)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import TypeAdapter

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere: the project's packages from this checkout

from training.config import TrainConfig  # noqa: E402
from training.sensors.config import SensorTrainConfig  # noqa: E402

SCHEMAS = {
    REPO_ROOT / "docs" / "train-config.schema.json": TrainConfig,
    REPO_ROOT / "docs" / "train-sensors-config.schema.json": SensorTrainConfig,
}


def schema_text(config_class: type) -> str:
    return json.dumps(TypeAdapter(config_class).json_schema(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when a file is out of date")
    args = parser.parse_args()
    stale = []
    for path, config_class in SCHEMAS.items():
        text = schema_text(config_class)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.relative_to(REPO_ROOT))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    if stale:
        print(f"out of date: {', '.join(map(str, stale))}; run: .venv/bin/python scripts/config_schemas.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
