# hep-pipeline: two commands on a fresh machine.
#   make demo   set everything up and run the whole DAG on the embedded default
#   make test   set everything up and run the test suite
# and, for the deployed shape on one machine (README, "Airflow as a service" and "Spark cluster"):
#   make airflow / airflow-stop              Airflow service on 127.0.0.1:$(AIRFLOW_PORT), login required
#   make spark-cluster / spark-cluster-stop  Spark standalone master + 2 workers on 127.0.0.1
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= $(CURDIR)/.venv
BIN := $(VENV)/bin
# extras of a development machine; the Docker image takes `postgres` only
EXTRAS ?= test,postgres
AIRFLOW_PORT ?= 8080

export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(BIN)/python
export PYSPARK_DRIVER_PYTHON := $(BIN)/python
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export HEP_DATA_ROOT ?= $(CURDIR)/data
export PATH := $(BIN):$(PATH)

.PHONY: venv spark-archive lock system-deps airflow airflow-stop spark-cluster spark-cluster-stop compose-env demo test test-fast bench clean

venv: $(VENV)/.installed

# deploy/install-env.sh is the one install recipe (the Dockerfile runs it too): every package at its
# requirements.lock pin, and the pyspark-client workaround (pyspark reinstalled last). Then the
# class-data archive of the Spark driver JVM (hep_tasks/driverjvm.py, ~35 s): every Spark task
# starts faster with it, and runs as before without it.
$(VENV)/.installed: pyproject.toml requirements.lock deploy/install-env.sh
	PYTHON=$(PYTHON) deploy/install-env.sh $(VENV) $(EXTRAS)
	$(MAKE) --no-print-directory spark-archive
	touch $@

spark-archive:
	$(BIN)/python -m hep_tasks.localenv spark-archive || echo "warning: no Spark driver class-data archive; Spark jobs start slower"

# Re-resolve pyproject.toml (all extras) in a throw-away venv and rewrite requirements.lock; the next
# `make venv` installs it. Needs no project venv, so a lock that no longer installs can be redone.
lock:
	$(PYTHON) deploy/lock.py

# What the browser test needs from Debian (CI runs as root on a fresh machine); no-op when present.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
system-deps:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

airflow: venv
	$(BIN)/python -m hep_tasks.localenv airflow-start --port $(AIRFLOW_PORT)

airflow-stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m hep_tasks.localenv airflow-stop; fi

spark-cluster: venv
	$(BIN)/python -m hep_tasks.localenv spark-cluster-start

spark-cluster-stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m hep_tasks.localenv spark-cluster-stop; fi

# .env for docker-compose.yaml: generated secrets, kept when already set
compose-env: venv
	$(BIN)/python -m hep_tasks.localenv compose-env

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
	$(BIN)/python bench/bench_quality.py

clean:
	rm -rf $(VENV) .airflow .spark-cluster data .pytest_cache test-artifacts
