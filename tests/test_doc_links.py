"""The READMEs and docs/ point only at what exists: every relative Markdown link, every repository path they name
(`pipeline/verdict.py`, `scripts/stack.sh`, `docs/models/vae.md`), every module they name
(`pipeline.sensors.model.SensorModel`) and every `lineguard` command and option they show (checked against
docs/CLI.md, which tests/pipeline/cli/test_cli_docs.py keeps equal to the app), so a change that forgets a doc fails
here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(
    [REPO_ROOT / "README.md", REPO_ROOT / "pipeline" / "README.md", *(REPO_ROOT / "docs").rglob("*.md")],
    key=lambda path: str(path),
)
# Paths are checked when they start in one of the repository's own folders; anything else (a data set's
# `train/good/`, a file of another project) is not the repository's to keep.
ROOTS = ("pipeline", "training", "tests", "scripts", "bench", "deploy", "docs")
# Named on purpose but not in the repository: benchmark outputs, and certificates each site supplies.
NOT_KEPT = ("bench/results/", "deploy/tls/")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
PATH = re.compile(r"(?<![\w./-])((?:[\w-]+/)+[\w.*-]*\w)")
COMMAND = re.compile(r"(?<![\w-])lineguard ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?([^`\n|#;]*)")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
RELATIVE_MODULE = re.compile(r"(?<![\w./-])([a-z_]+(?:\.[A-Za-z_]\w*)+)")
MODULE = re.compile(r"(?<![\w./-])((?:pipeline|training)(?:\.\w+)+)")


def relative_links(text: str) -> list[str]:
    links = [target.split("#")[0] for target in LINK.findall(text)]
    return [link for link in links if link and not re.match(r"^[a-z]+:", link)]


def named_paths(doc: Path, text: str) -> list[str]:
    """Paths written in the text that start in a top-level folder, or in a folder beside the document
    (pipeline/README.md names `storage/tables.py`)."""
    text = LINK.sub(lambda m: m.group(0).split("](")[0], text)  # link targets are checked as links
    # (at the top, only the repository's own folders: `runs/demo/model.onnx` is what a reader makes)
    beside = {child.name for child in doc.parent.iterdir() if child.is_dir()} if doc.parent != REPO_ROOT else set()
    found = []
    for path in PATH.findall(text):
        top, last = path.split("/")[0], path.split("/")[-1]
        # beside the document only file names count: "frames/s" is a rate, `frames/store.py` a file
        if (top in ROOTS or (top in beside and "." in last)) and not path.startswith(NOT_KEPT):
            found.append(path)
    return found


def exists(doc: Path, path: str) -> bool:
    for base in (REPO_ROOT, doc.parent):
        if "*" in path and any(base.glob(path)):
            return True
        # a module with an attribute: tests/pipeline/model_factory.build_tiny_sensor_model
        if (base / path).exists() or (base / (path.split(".")[0] + ".py")).exists():
            return True
    return False


def package_names(doc: Path, text: str) -> list[tuple[str, bool]]:
    """In a package's own README, its modules named relative to it (`writer.BatchWriter.submit`, `sensors/` rooms'
    `sensors.model.SensorModel`, `consumer.py`), each with whether it exists."""
    package = doc.parent
    if not (package / "__init__.py").exists():
        return []
    modules = {path.stem for path in package.glob("*.py")}
    modules |= {path.name for path in package.iterdir() if (path / "__init__.py").exists()}
    prefix = package.relative_to(REPO_ROOT).as_posix().replace("/", ".")
    named = []
    for name in RELATIVE_MODULE.findall(text):
        if name.split(".")[0] not in modules:
            continue
        if name.endswith(".py"):
            named.append((name, (package / name).exists()))
        else:
            named.append((name, module_resolves(f"{prefix}.{name}")))
    return named


def module_resolves(dotted: str) -> bool:
    """Each part is a subpackage or module while there is one, then a name the package or module defines."""
    here = REPO_ROOT / dotted.split(".")[0]
    for part in dotted.split(".")[1:]:
        if here.is_dir() and (here / part).is_dir():
            here = here / part
        elif here.is_dir() and (here / f"{part}.py").exists():
            here = here / f"{part}.py"
        else:
            source = here / "__init__.py" if here.is_dir() else here
            return source.exists() and re.search(rf"\b{part}\b", source.read_text(encoding="utf-8")) is not None
    return True


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_links_and_named_paths_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    broken = [f"link {link}" for link in relative_links(text) if not (doc.parent / link).exists()]
    broken += [f"path {path}" for path in named_paths(doc, text) if not exists(doc, path)]
    broken += [f"module {name}" for name in MODULE.findall(text) if not module_resolves(name)]
    broken += [f"module {name}" for name, found in package_names(doc, text) if not found]
    assert not broken, f"{doc.relative_to(REPO_ROOT)} points at what does not exist: {sorted(set(broken))}"


def cli_reference() -> dict[str, set[str]]:
    """Each command path of docs/CLI.md (`defects list`) with the options its section lists."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in (REPO_ROOT / "docs" / "CLI.md").read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^#+ `lineguard ?([a-z -]*)`$", line)
        if heading:
            current = heading.group(1)
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {path: set(OPTION.findall("\n".join(lines))) for path, lines in sections.items()}


def shown_commands(text: str) -> list[tuple[str, str, bool]]:
    """(command path, the rest of its line, whether it is in code) for every `lineguard CMD [SUB] ...` in the text."""
    shown, in_block = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        for match in COMMAND.finditer(line):
            if line[: match.start()].endswith("--entrypoint "):
                continue  # `docker compose run --entrypoint lineguard train ...`: `train` is a compose service
            in_code = in_block or line[: match.start()].count("`") % 2 == 1
            command, sub = match.group(1), match.group(2)
            shown.append((f"{command} {sub}" if sub else command, f"{sub or ''} {match.group(3)}", in_code))
    return shown


@pytest.mark.parametrize(
    "doc", [doc for doc in DOCS if doc.name != "CLI.md"], ids=lambda path: str(path.relative_to(REPO_ROOT))
)
def test_commands_and_options_shown_exist(doc: Path) -> None:
    reference = cli_reference()
    wrong = []
    for path, rest, in_code in shown_commands(doc.read_text(encoding="utf-8")):
        command = path if path in reference else path.split()[0]
        if command not in reference:
            if in_code:
                wrong.append(f"lineguard {path}")
            continue
        unknown = [option for option in OPTION.findall(rest) if option not in reference[command]]
        wrong += [f"lineguard {command} {option}" for option in unknown]
    assert not wrong, f"{doc.relative_to(REPO_ROOT)} shows what docs/CLI.md does not have: {sorted(set(wrong))}"


def test_pipeline_readme_lists_every_module_and_room() -> None:
    package = REPO_ROOT / "pipeline"
    text = (package / "README.md").read_text(encoding="utf-8")
    layout = text.split("```")[1]  # the first code block: the package's layout
    modules = [path.name for path in package.glob("*.py") if path.stem not in ("__init__", "__main__")]
    rooms = [f"{path.name}/" for path in package.iterdir() if (path / "__init__.py").exists()]
    missing = [name for name in sorted(modules + rooms) if not re.search(rf"(?<![\w/]){re.escape(name)}", layout)]
    assert not missing, f"pipeline/README.md's layout does not name {missing}"
