"""Shared fixtures: the local environment (Spark on 127.0.0.1 with the venv's Python, a throw-away
Airflow home) and one SparkSession for the tests that use Spark in-process."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

from hep_tasks.localenv import local_environment

_TEST_AIRFLOW_HOME = tempfile.mkdtemp(prefix="hep-test-airflow-")
atexit.register(shutil.rmtree, _TEST_AIRFLOW_HOME, ignore_errors=True)
os.environ.update(local_environment(base={**os.environ, "AIRFLOW_HOME": _TEST_AIRFLOW_HOME}))
os.environ.setdefault("HEP_SHUFFLE_PARTITIONS", "4")


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for the whole test session."""
    from hep_tasks.sparkjob import spark_session

    session = spark_session("hep-tests", "local[2]")
    yield session
    session.stop()
