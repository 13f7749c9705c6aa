"""docs/*-config.schema.json are what scripts/config_schemas.py generates from the training configurations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_config_schemas_are_generated_from_the_configs() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "config_schemas.py"), "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_field_is_documented_with_its_bounds() -> None:
    schema = json.loads((REPO_ROOT / "docs" / "train-config.schema.json").read_text())
    fields = schema["properties"]
    assert all(field.get("description") for field in fields.values())
    assert fields["val_fraction"]["exclusiveMinimum"] == 0 and fields["val_fraction"]["exclusiveMaximum"] == 0.5
    assert fields["contrast"]["enum"] == ["auto", "on", "off"]
    sensor = json.loads((REPO_ROOT / "docs" / "train-sensors-config.schema.json").read_text())["properties"]
    assert all(field.get("description") for field in sensor.values())
