"""The promotion gate on SQLite and PostgreSQL: a first version, not-worse promoted, worse refused (and recorded),
force recorded with who and why, reports that do not fit refused; `lineguard models` errors as one readable line."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import REPO_ROOT, subprocess_env
from model_factory import build_tiny_model, tiny_metadata
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import RegistryError
from pipeline.inference import file_sha256
from pipeline.registry.gate import PromotionRequest, promote
from pipeline.registry.report import ComparisonReport, ModelScores, report_path
from pipeline.storage.engine import open_database
from pipeline.storage.registry import active_target, decisions_of, find_version, list_versions

GOOD = {"image_auroc": 0.95, "f1": 0.90, "false_positive_rate": 0.50}


def scores(model: Path, **metrics: float | None) -> ModelScores:
    values = GOOD | metrics
    return ModelScores(
        model_name="tiny-blur",
        model_version=model.stem,
        path=str(model),
        file_sha256=file_sha256(model),
        threshold=0.08,
        image_auroc=values["image_auroc"],
        f1=values["f1"],
        precision=values["f1"],
        recall=values["f1"],
        false_positive_rate=values["false_positive_rate"],
        normal_false_alarm_rate=0.0,
    )


def version(folder: Path, name: str, base: Path | None = None, **metrics: float | None) -> Path:
    """Model `name` (its version too) with a report against `base` where the candidate has `metrics`."""
    path = build_tiny_model(folder / f"{name}.onnx", tiny_metadata(version=name))
    if base is not None:
        report = ComparisonReport("e" * 64, f"{name}.onnx.evalset.json", {}, scores(path, **metrics), scores(base))
        report_path(path).write_text(report.to_json())
    return path


@pytest.fixture
def sessions(db_url: str) -> sessionmaker[Session]:
    return open_database(db_url)[1]


def active(sessions: sessionmaker[Session]) -> str | None:
    with sessions() as session:
        target = active_target(session, "tiny-blur")
    return None if target is None else target.model_version


def test_first_version_becomes_active_then_not_worse_is_promoted(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    v1 = version(tmp_path, "1")
    first = promote(sessions, PromotionRequest(v1, decided_by="ann"))
    assert (first.outcome, first.previous_version, active(sessions)) == ("initial", None, "1")
    assert promote(sessions, PromotionRequest(v1, decided_by="ann")).outcome == "unchanged"
    v2 = version(tmp_path, "2", base=v1)  # the same figures as v1: not worse
    second = promote(sessions, PromotionRequest(v2, decided_by="bob"))
    assert (second.outcome, second.previous_version, active(sessions)) == ("promoted", "1", "2")
    with sessions() as session:
        row = find_version(session, "tiny-blur", "2")
        assert row is not None and row.metrics is not None and row.metrics["f1"] == 0.90
        assert row.evaluation_digest == "e" * 64 and row.model_metadata["image_threshold"] == 0.08
        [decision] = decisions_of(session, row)
        assert (decision.outcome, decision.decided_by, decision.comparison["reference"]["f1"]) == (
            "promoted",
            "bob",
            0.9,
        )


@pytest.mark.parametrize(
    ("metrics", "phrase"),
    [
        ({"f1": 0.80}, "f1 0.8000 < 0.9000"),
        ({"image_auroc": 0.90}, "image auroc 0.9000 < 0.9500"),
        ({"false_positive_rate": 0.75}, "false positive rate 0.7500 > 0.5000"),
    ],
)
def test_worse_is_refused_and_recorded(
    sessions: sessionmaker[Session], tmp_path: Path, metrics: dict[str, float], phrase: str
) -> None:
    v1 = version(tmp_path, "1")
    promote(sessions, PromotionRequest(v1))
    v2 = version(tmp_path, "2", base=v1, **metrics)
    decision = promote(sessions, PromotionRequest(v2, decided_by="bob"))
    assert decision.outcome == "refused" and not decision.active and active(sessions) == "1"
    assert phrase in decision.message and "\n" not in decision.message
    with sessions() as session:
        listed = {item.version.model_version: item for item in list_versions(session)}
        assert listed["2"].last_decision is not None and listed["2"].last_decision.outcome == "refused"
        assert listed["1"].active and not listed["2"].active


def test_better_figures_where_the_set_defines_none_are_compared_where_it_does(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    v1 = version(tmp_path, "1")
    promote(sessions, PromotionRequest(v1))
    # no confirmed defects in the evaluation set: AUROC and F1 undefined for both, the false-positive rate decides
    v2 = version(tmp_path, "2", base=v1, image_auroc=None, f1=None, false_positive_rate=0.1)
    assert promote(sessions, PromotionRequest(v2)).outcome == "promoted"


def test_force_is_recorded_with_who_and_why(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    v1 = version(tmp_path, "1")
    promote(sessions, PromotionRequest(v1))
    v2 = version(tmp_path, "2", base=v1, f1=0.5)
    assert promote(sessions, PromotionRequest(v2)).outcome == "refused"
    with pytest.raises(RegistryError, match="--force needs --reason"):
        promote(sessions, PromotionRequest(v2, force=True, reason=" "))
    forced = promote(sessions, PromotionRequest(v2, force=True, reason="new lighting on line 2", decided_by="cid"))
    assert (forced.outcome, active(sessions)) == ("forced", "2")
    with sessions() as session:
        row = find_version(session, "tiny-blur", "2")
        assert row is not None
        history = [(d.outcome, d.decided_by, d.reason) for d in decisions_of(session, row)]
    assert history[0][0] == "refused"
    assert history[1] == ("forced", "cid", "new lighting on line 2")


def test_reports_that_do_not_fit_are_refused(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    v1 = version(tmp_path, "1")
    promote(sessions, PromotionRequest(v1))
    other = version(tmp_path / "other", "7")
    v2 = version(tmp_path, "2", base=other)  # evaluated against a version that is not the active one
    decision = promote(sessions, PromotionRequest(v2))
    assert decision.outcome == "refused" and "evaluated against v7, but v1 is active" in decision.message
    no_report = version(tmp_path, "3")
    assert "has no evaluation report" in promote(sessions, PromotionRequest(no_report)).message
    stale = version(tmp_path, "4", base=v1)
    build_tiny_model(stale, replace(tiny_metadata(version="4"), image_threshold=0.5))  # the file changed since
    with pytest.raises(RegistryError, match="was made for another file"):
        promote(sessions, PromotionRequest(stale))
    build_tiny_model(v1, replace(tiny_metadata(version="1"), image_threshold=0.5))
    with pytest.raises(RegistryError, match="already registered with another file"):
        promote(sessions, PromotionRequest(v1))
    assert active(sessions) == "1"


def lineguard(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pipeline", *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)


def test_cli_promote_and_list(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    v1 = version(tmp_path, "1")
    v2 = version(tmp_path, "2", base=v1, f1=0.5)
    assert lineguard("models", "promote", str(v1), "--db", url, "--by", "ann").returncode == 0
    for args, message in [
        ((str(v2),), "promotion refused: tiny-blur v2 is worse than v1 (active)"),
        ((str(v2), "--force"), "--force needs --reason"),
        ((str(tmp_path / "missing.onnx"),), "file not found"),
    ]:
        done = lineguard("models", "promote", *args, "--db", url)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 1 and len(errors) == 1 and message in errors[0], done.stderr
        assert "Traceback" not in done.stderr
    forced = lineguard("models", "promote", str(v2), "--db", url, "--force", "--reason", "trial", "--by", "bob")
    assert forced.returncode == 0 and forced.stdout.startswith("forced: tiny-blur v2 is active"), forced.stderr
    listed = lineguard("models", "list", "--db", url, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["model_version"]: row for row in json.loads(listed.stdout)}
    assert rows["2"]["active"] and not rows["1"]["active"]
    decisions = rows["2"]["decisions"]
    assert [d["outcome"] for d in decisions] == ["refused", "forced"]
    assert (decisions[1]["decided_by"], decisions[1]["reason"]) == ("bob", "trial")
    table = lineguard("models", "list", "--db", url)
    assert table.returncode == 0 and "2 registered versions" in table.stdout
