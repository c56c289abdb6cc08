# Two commands on a fresh machine with Python 3.11 and make:
#   make demo   install everything, prepare the data, run the demo end to end
#   make test   run the test suite
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DVC_ENV := .tools/dvc
export DAGSTER_HOME := $(CURDIR)/.dagster
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install data demo demo-remote test test-wheel test-services lint typecheck ui bench clean
# Dagster's Celery and PostgreSQL libraries (see pyproject's `services` extra): 0.29.27, the newest
# published, installed without their dagster==1.13.27 pin (tests/services check them on this dagster).
DAGSTER_SERVICES := dagster-celery==0.29.27 dagster-postgres==0.29.27

install: $(VENV)/.installed $(DVC_ENV)/.installed

# skipwise with every extra the demo, the tests and the tools use, at the releases in constraints.txt.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,services,s3,torch,ui,demo]'
	$(BIN)/pip install -q --disable-pip-version-check --no-deps $(DAGSTER_SERVICES)
	touch $@

# DVC gets its own environment (its antlr runtime breaks Dagster's); its command is linked into .venv/bin.
$(DVC_ENV)/.installed: $(VENV)/.installed
	$(PY) -m venv $(DVC_ENV)
	$(DVC_ENV)/bin/pip install -q --disable-pip-version-check 'dvc[s3]==3.67.1'
	ln -sf $(CURDIR)/$(DVC_ENV)/bin/dvc $(BIN)/dvc
	touch $@

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME) && printf 'telemetry:\n  enabled: false\n' > $@

data: install
	$(BIN)/python -m assets.ingest
	$(BIN)/dvc add -q data/raw/flights data/raw/weather

demo: data $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dvc repro
	$(BIN)/skipwise status

# The demo with its raw data on a DVC remote in another region (moto_server on 127.0.0.1, started
# here unless SKIPWISE_S3_ENDPOINT names one running): three runs, bytes moved per class and dollars.
demo-remote: data $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m bench.demo_remote

test: install
	$(BIN)/python -m pytest -q

# The built wheel as a user installs it: a fresh environment outside the repository with skipwise's
# core dependencies only (no extra, no torch), running the example project's own test from a copy.
test-wheel: install
	PY=$(PY) BUILD_PY=$(BIN)/python tests/wheel/check.sh

# ruff: lint (pyflakes and syntax) and formatting, as configured in pyproject.toml; then mypy (typecheck).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# mypy, strict, on the packages pyproject's [tool.mypy] lists (the pure core and the formats, which need
# no third-party stubs): annotations that no longer match the code fail CI like a lint error.
typecheck: install
	$(BIN)/mypy

# The services profile against this machine's PostgreSQL (5432), RabbitMQ (5672) and Redis (6379):
# a fresh database per session, Celery workers and an S3 server (moto_server) started by the tests.
test-services: install
	$(BIN)/python -m pytest -q tests/services

# Dagster's webserver and daemon; `skipwise ui` lists partitions from the partitioning's end (2013), so
# the asset pages plot cost by partition (plain `dagster dev` counts the newest partitions back from today).
ui: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/skipwise ui -w workspace.yaml

clean:
	rm -rf data/features data/models data/predictions data/reports data/.skipwise .dagster
