# The two commands of the README quick start. Both set up .venv first (idempotent).
VENV ?= .venv
CORES ?= 2

.PHONY: setup demo test test-deps lint

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/snakemake --cores $(CORES)

test: setup test-deps
	$(VENV)/bin/python -m pytest -q

# System packages the cluster tests need (a local SLURM controller and node, Debian's slurmctld slurmd
# slurm-client munge): installed with apt-get when missing and when run as root; otherwise a note, and
# the cluster tests skip saying why (tests/workflow/test_cluster_slurm.py).
test-deps:
	@bash scripts/slurm_local.sh install --if-possible

lint: setup
	$(VENV)/bin/ruff check omnifuse tests scripts workflow/profiles
	$(VENV)/bin/ruff format --check omnifuse tests scripts workflow/profiles
	$(VENV)/bin/snakefmt --check workflow
	$(VENV)/bin/python scripts/lint_workflow.py
