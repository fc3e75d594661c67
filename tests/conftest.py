"""Shared fixtures: the local environment (Spark on 127.0.0.1 with the venv's Python, a throw-away
Airflow home) and one SparkSession for the tests that use Spark in-process."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile

import pytest

from hep_tasks.localenv import local_environment

_TEST_AIRFLOW_HOME = tempfile.mkdtemp(prefix="hep-test-airflow-")
atexit.register(shutil.rmtree, _TEST_AIRFLOW_HOME, ignore_errors=True)
os.environ.update(local_environment(base={**os.environ, "AIRFLOW_HOME": _TEST_AIRFLOW_HOME}))
os.environ.setdefault("HEP_SHUFFLE_PARTITIONS", "4")
logging.getLogger("py4j").setLevel(logging.WARNING)  # no "Closing down" lines at interpreter exit


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for the whole test session."""
    from hep_tasks.sparkjob import spark_session

    session = spark_session("hep-tests", "local[2]")
    yield session
    session.stop()


SAMPLES = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(scope="session")
def sample_files() -> dict[str, str]:
    """Small simulated ROOT files, one per process, made by our simulate stage (tests/data/make_samples.py)."""
    from hep_tasks.processes import PROCESSES

    files = {p: os.path.join(SAMPLES, f"{p}.root") for p in PROCESSES}
    missing = [f for f in files.values() if not os.path.exists(f)]
    assert not missing, f"run tests/data/make_samples.py: missing {missing}"
    return files


@pytest.fixture()
def input_dir(tmp_path, sample_files):
    """A directory of the sample files, named so that their process is recognised."""
    folder = tmp_path / "input"
    folder.mkdir()
    for process, path in sample_files.items():
        shutil.copy(path, folder / f"{process}_sample.root")
    return folder


@pytest.fixture(scope="session")
def prepared(spark, tmp_path_factory, sample_files):
    """The sample files ingested and prepared in a throw-away data root: (store, ingest version,
    prepare version), both marked as checked. Train and tune tests add their versions beside them."""
    from hep_tasks.config import IngestParams, PrepareParams
    from hep_tasks.datasets import DatasetStore
    from hep_tasks.ingest import stage as ingest
    from hep_tasks.prepare import stage as prepare

    store = DatasetStore(str(tmp_path_factory.mktemp("prepared") / "data"))
    spec = ",".join(f"{p}={path}" for p, path in sample_files.items())
    ingested = ingest.run(spark, store, IngestParams.from_values({"input": spec}, env={}))["version"]
    store.update_manifest("ingest", ingested, quality={"status": "passed"})
    params = PrepareParams.from_values({"input": ingested, "files_per_split": 2, "rows_per_row_group": 32}, env={})
    version = prepare.run(spark, store, params)["version"]
    store.update_manifest("prepare", version, quality={"status": "passed"})
    return store, ingested, version
