# The two commands of the README quick start. Both set up .venv first (idempotent).
VENV ?= .venv
CORES ?= 2

.PHONY: setup demo test lint

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/snakemake --cores $(CORES)

test: setup
	$(VENV)/bin/python -m pytest -q

lint: setup
	$(VENV)/bin/ruff check omnifuse tests scripts
	$(VENV)/bin/ruff format --check omnifuse tests scripts
	$(VENV)/bin/snakefmt --check workflow
	$(VENV)/bin/python scripts/lint_workflow.py
