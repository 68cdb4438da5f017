# Every target creates .venv first if it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run dev-install test test-cov lint format bench docs soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev-install: $(STAMP)

run: $(STAMP)
	$(BIN)/routilux-daemon run --config config/daemon.toml

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-cov: $(STAMP)
	$(BIN)/python -m pytest -q --cov=routilux --cov=daemon --cov-report=term-missing

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

docs: $(STAMP)
	$(BIN)/python docs/gen_reference.py

soak: $(STAMP)
	$(BIN)/python tests/fault/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
