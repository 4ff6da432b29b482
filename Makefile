# Two commands do all the set-up on a machine with Python 3.11+ and make:
#   make demo   - create .venv, install, run the whole pipeline offline
#   make test   - create/update .venv with the test extras; lint, type-check, run the suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean bench-tracker bench-broadcast bench-report

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/outreach demo

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff format --check --quiet .
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy

bench-tracker: $(VENV)/.installed-test
	$(BIN)/python bench/tracker.py

bench-broadcast: $(VENV)/.installed-test
	$(BIN)/python bench/broadcast.py

bench-report: $(VENV)/.installed-test
	$(BIN)/python bench/report.py

clean:
	rm -rf $(VENV) *.egg-info
