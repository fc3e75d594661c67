"""A Spark executor's Python worker killed (SIGKILL) while ingest runs: Spark retries the task, and
the committed version has exactly the events of a clean read, each once.

The ingest stage runs as its CLI in its own Spark application (``local[2,4]``: two slots, a task
may fail three times), split into one task per few entries so the job lasts seconds. A watcher
thread waits until a task is writing its part file (a file under ``events/_attempts/``), finds the
Python worker holding it open and kills it, mid-task.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from hep_tasks.datasets import DatasetStore
from hep_tasks.ingest.datasource import CHUNK_ENTRIES, file_record, plan_splits, read_split
from hep_tasks.ingest.inputs import expand_item
from hep_tasks.ingest.rootfile import inspect_file

pytestmark = pytest.mark.slow


def _holder(path: str) -> int | None:
    """The pid of a process that has ``path`` open, if any."""
    for fd_dir in glob.glob("/proc/[0-9]*/fd"):
        try:
            if any(os.readlink(os.path.join(fd_dir, fd)) == path for fd in os.listdir(fd_dir)):
                return int(fd_dir.split("/")[2])
        except OSError:  # the process or descriptor went away meanwhile
            continue
    return None


class WorkerKiller(threading.Thread):
    """Kills the first Python worker seen writing an ingest part file under ``root``."""

    def __init__(self, root: Path):
        super().__init__(daemon=True)
        self.pattern = str(root / "ingest" / "_tmp" / "*" / "events" / "_attempts" / "*")
        self.killed: list[tuple[int, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and not self.killed:
            for path in glob.glob(self.pattern):
                pid = _holder(path)
                if pid and pid != os.getpid():
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append((pid, os.path.basename(path)))
                    break


def _expected_lineage(spec: str) -> set[tuple[str, int]]:
    """(source_file, entry) of every selected event of the input ``spec``, read without Spark."""
    keys = set()
    for f in (f for item in spec.split(",") for f in expand_item(item)):
        split = plan_splits([file_record(f.url, f.process, inspect_file(f.url))], 10**9)[0]
        for batch in read_split(split, CHUNK_ENTRIES, "fail"):
            keys |= set(zip(batch.column("source_file").to_pylist(), batch.column("entry").to_pylist()))
    return keys


def test_a_python_worker_killed_mid_ingest_is_retried_with_exact_counts_and_no_duplicates(tmp_path, sample_files):
    root = tmp_path / "data"
    spec = ",".join(f"{p}={path}" for p, path in sample_files.items())
    env = {**os.environ, "HEP_SPARK_MASTER": "local[2,4]"}
    command = [sys.executable, "-m", "hep_tasks", "ingest", "--data-root", str(root), "--input", spec,
               "--entries-per-split", "5", "--input-roots", os.path.dirname(sample_files["ttbar"])]
    killer = WorkerKiller(root)
    killer.start()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    finally:
        killer.stop.set()
        killer.join()
    assert done.returncode == 0, done.stderr[-3000:]
    assert killer.killed, "no Python worker was seen writing a part file"
    assert "Python worker exited unexpectedly" in done.stderr or "Lost task" in done.stderr, done.stderr[-3000:]

    store = DatasetStore(str(root))
    (version,) = store.versions("ingest")
    manifest = store.read_manifest("ingest", version)
    table = ds.dataset(str(root / "ingest" / version / "events"), format="parquet").to_table(columns=["source_file", "entry"])
    lineage = list(zip(table.column("source_file").to_pylist(), table.column("entry").to_pylist()))
    assert len(lineage) == len(set(lineage)), "duplicated events"
    assert set(lineage) == _expected_lineage(spec)
    assert manifest["counts"]["total"] == len(lineage)
    assert not os.path.exists(root / "ingest" / version / "events" / "_attempts")
