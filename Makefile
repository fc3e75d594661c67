# hep-pipeline: two commands on a fresh machine.
#   make demo   set everything up and run the whole DAG on the embedded default
#   make test   set everything up and run the test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin

export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(BIN)/python
export PYSPARK_DRIVER_PYTHON := $(BIN)/python
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export HEP_DATA_ROOT ?= $(CURDIR)/data
export PATH := $(BIN):$(PATH)

.PHONY: venv airflow demo test test-fast bench clean

venv: $(VENV)/.installed

# The Spark provider depends on pyspark-client, which ships pyspark's Python files at another
# release and overwrites those of pyspark; reinstalling pyspark last puts the matching files back.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --force-reinstall --no-deps pyspark==4.3.0
	$(BIN)/python -c "import pyspark, sys; sys.exit(pyspark.__version__ != '4.3.0')"
	touch $@

airflow: venv
	$(BIN)/python -m hep_tasks.localenv setup

# DEMO_CONF: DAG run conf as JSON, e.g. make demo DEMO_CONF='{"events_per_file": 30}'
demo: venv
	$(BIN)/python -m hep_tasks.localenv demo $(if $(DEMO_CONF),--conf '$(DEMO_CONF)')

test: venv
	$(BIN)/python -m pytest

test-fast: venv
	$(BIN)/python -m pytest -m "not slow"

bench: venv
	$(BIN)/python bench/bench_simulate.py
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_prepare.py

clean:
	rm -rf $(VENV) .airflow data .pytest_cache
