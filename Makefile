# Shortcuts for scripts/dev.sh, which needs nothing but bash and Python (no make on a bare machine).
.PHONY: venv demo test lint bench-training clean

venv:
	bash scripts/dev.sh install

demo:
	bash scripts/dev.sh demo

test:
	bash scripts/dev.sh test

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports --no-cache

bench-training: venv
	.venv/bin/python bench/bench_training.py

clean:
	rm -rf .venv .pytest_cache .ruff_cache .import_linter_cache
