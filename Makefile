# LineGuard developer tasks. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench-training clean

venv: $(STAMP)

# torch==2.13.0 first, explicitly: it is a CPU build that lies on disk here; letting pip resolve
# torch on its own pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/lineguard demo

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench-training: venv
	$(BIN)/python bench/bench_training.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
