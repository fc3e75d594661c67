"""Helpers for the tests that run the ingest command line as separate processes, as Airflow does."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads

from hep_tasks.datasets import DatasetStore

SAMPLES = str(Path(__file__).parent / "data")


@dataclass
class StageRun:
    """A stage's command line running in its own process, its output going to files."""

    process: subprocess.Popen
    stdout: Path
    stderr: Path

    def error_tail(self) -> str:
        return self.stderr.read_text()[-3000:]

    def finish(self) -> dict[str, Any]:
        """Wait for the stage to succeed; the version summary it prints as its last line."""
        assert self.process.wait(timeout=600) == 0, self.error_tail()
        return json.loads(self.stdout.read_text().strip().splitlines()[-1])


def start_ingest(data_root: Path, inputs: str, *, logs: Path, **popen: Any) -> StageRun:
    """Start ``python -m hep_tasks ingest`` of ``inputs`` (sample files) into ``data_root`` on one
    local Spark core; its output goes to ``<logs>.out`` and ``<logs>.err``."""
    command = [
        sys.executable, "-m", "hep_tasks", "ingest",
        "--data-root", str(data_root), "--input", inputs, "--spark-master", "local[1]",
    ]  # fmt: skip
    stdout, stderr = logs.with_suffix(".out"), logs.with_suffix(".err")
    env = os.environ | {"HEP_INPUT_ROOTS": SAMPLES}  # the sample files are outside the data root
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, **popen)
    return StageRun(process, stdout, stderr)


def assert_intact(store: DatasetStore, version: str) -> None:
    """The committed ingest version holds exactly the data files its manifest lists, with their
    checksums, and every input event (source_file, entry) exactly once."""
    manifest = store.read_manifest("ingest", version)
    root = Path(store.path("ingest", version))
    on_disk = {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
    }
    assert on_disk == {f["path"]: f["sha256"] for f in manifest["files"]}
    events = pads.dataset(root / "events", format="parquet").to_table(columns=["source_file", "entry"])
    keys = set(zip(events["source_file"].to_pylist(), events["entry"].to_pylist(), strict=True))
    assert len(keys) == events.num_rows == manifest["counts"]["total"] > 0


def assert_no_attempt_left(store: DatasetStore) -> None:
    """Nothing of any attempt (temporary directory or lock) is left under ``ingest/_tmp``."""
    tmp = Path(store.path("ingest", "_tmp"))
    assert not tmp.exists() or list(tmp.iterdir()) == []
