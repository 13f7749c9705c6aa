#!/usr/bin/env bash
# Developer entry point that needs nothing but bash and Python 3.11 on Debian:
#   bash scripts/dev.sh demo    the whole job on embedded defaults, with a summary
#   bash scripts/dev.sh test    lint (ruff, the import contracts) + the test suite (real broker, SQLite and
#                               PostgreSQL, headless Chromium)
# The first call creates .venv through scripts/install.sh dev: torch==2.13.0 (a CPU build) is installed first and
# explicitly, because letting pip resolve torch on its own pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed
export PIP_DISABLE_PIP_VERSION_CHECK=1

ensure_venv_module() {
    if ! "$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && apt-get install -y -qq python3-venv
        else
            echo "error: $PYTHON lacks the venv module; install it (Debian: apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
}

# The review page's browser tests drive Debian's Chromium (Playwright, executable_path=/usr/bin/chromium). As root
# with apt it is installed here; otherwise, or if apt fails, those tests skip and say why.
ensure_chromium() {
    if [ -x /usr/bin/chromium ]; then
        return
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } ||
            echo "warning: apt-get could not install chromium; the browser tests will skip" >&2
    else
        echo "note: no /usr/bin/chromium (Debian: apt-get install chromium); the browser tests will skip" >&2
    fi
}

install() {
    if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt deploy/constraints.txt ]; then
        return
    fi
    ensure_venv_module
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    # the same recipe and pinned versions as the line and training images (torch==2.13.0 first)
    PIP="$VENV/bin/pip" bash scripts/install.sh dev
    touch "$STAMP"
}

case "${1:-}" in
    install) install ;;
    demo) install; shift; exec "$VENV/bin/lineguard" demo "$@" ;;
    # lint-imports: the architecture's contracts in pyproject.toml ([tool.importlinter])
    # A temp folder of its own: pytest's shared /tmp/pytest-of-$USER keeps only the last three sessions' folders,
    # so a second test session started meanwhile deletes the folders (PostgreSQL data included) of a running one.
    test) install; ensure_chromium; "$VENV/bin/ruff" check .; "$VENV/bin/lint-imports" --no-cache; shift
          exec "$VENV/bin/python" -m pytest -q --basetemp "$(mktemp -d -t lineguard-tests.XXXXXX)" "$@" ;;
    *) echo "usage: bash scripts/dev.sh install|demo|test" >&2; exit 2 ;;
esac
