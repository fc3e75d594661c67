"""An Airflow task killed and retried: the retry runs the same stage command line again.

HepStageOperator runs ``hep_tasks/__main__.py <stage>`` through spark-submit and the DAGs retry a
failed task once (``default_args={"retries": 1}``); the retry computes the same content-derived
version id. Here the killed attempt is the ingest command line killed with its whole process group
(driver, JVM, Python workers) while Spark writes the pending version, and the retry is the same
command again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ingest_runs import StageRun, assert_intact, assert_no_attempt_left, start_ingest

from hep_tasks.datasets import DatasetStore

pytestmark = pytest.mark.slow


def _wait_for(found: Callable[[], list[Path]], run: StageRun, timeout: float) -> list[Path]:
    """Poll until ``found()`` is not empty; fails if ``run`` ends or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not (result := found()):
        assert run.process.poll() is None, f"the job ended before it was killed: {run.error_tail()}"
        assert time.monotonic() < deadline, "the job never started writing"
        time.sleep(0.05)
    return result


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the job's whole process group and wait until none of it is left."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _group_alive(proc.pid):
        assert time.monotonic() < deadline, "processes of the killed job are still running"
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_an_ingest_killed_while_writing_and_rerun_commits_one_complete_version(tmp_path, sample_files):
    data = tmp_path / "data"
    store = DatasetStore(str(data))
    inputs = f"ttbar={sample_files['ttbar']},qcd={sample_files['qcd']}"
    killed = start_ingest(data, inputs, logs=tmp_path / "killed", start_new_session=True)
    writing = _wait_for(lambda: list((data / "ingest" / "_tmp").glob("ing-*/events/*")), killed, timeout=300)
    _kill_group(killed.process)
    attempt = writing[0].parent.parent
    assert attempt.is_dir() and store.versions("ingest") == []  # half-written, and invisible

    version = start_ingest(data, inputs, logs=tmp_path / "retry").finish()["version"]
    assert attempt.name.startswith(f"{version}-")  # the same content-derived version id
    assert store.versions("ingest") == [version]
    assert store.latest("ingest") is None  # only publish moves it
    assert_intact(store, version)
    assert_no_attempt_left(store)  # the killed attempt's files were removed by the retry
