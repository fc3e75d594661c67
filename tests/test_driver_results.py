"""No stage brings events to the driver: what ingest and prepare collect is a record per input file,
split, task or class, and it does not grow with the number of events.

Every result the stages bring back goes through ``collect_small``; the test records each call and
runs ingest + prepare on one copy and on four copies of the sample files (4× the events, still one
Spark task per file).
"""

from __future__ import annotations

import json
import os

import pytest

from hep_tasks import sparkjob
from hep_tasks.config import IngestParams, PrepareParams
from hep_tasks.datasets import DatasetStore
from hep_tasks.ingest import stage as ingest
from hep_tasks.prepare import stage as prepare

pytestmark = pytest.mark.slow


def _collected(monkeypatch, spark, root, files: list[str]) -> tuple[list[int], list[int], int]:
    """Ingest and prepare ``files``: (rows per collect, largest row in JSON bytes, events written)."""
    calls: list[list] = []

    def recording(data, max_rows):
        rows = sparkjob.collect_small(data, max_rows)
        calls.append(rows)
        return rows

    for module in (ingest, prepare):
        monkeypatch.setattr(module, "collect_small", recording)
    store = DatasetStore(str(root))
    spec = ",".join(files)
    ingested = ingest.run(spark, store, IngestParams.from_values({"input": spec, "entries_per_split": 10_000}, env={}))
    store.update_manifest("ingest", ingested["version"], quality={"status": "passed"})
    prepare.run(spark, store, PrepareParams.from_values({"input": ingested["version"], "files_per_split": 2}, env={}))
    sizes = [len(json.dumps(row.asDict() if hasattr(row, "asDict") else row, default=str)) for rows in calls for row in rows]
    return [len(rows) for rows in calls], max(sizes), ingested["rows"]["total"]


def test_ingest_and_prepare_collect_per_file_and_per_task_records_only(monkeypatch, spark, tmp_path, sample_files):
    copies = tmp_path / "copies"
    copies.mkdir()
    one = [f"{p}={path}" for p, path in sample_files.items()]
    four = []
    for process, path in sample_files.items():
        for c in range(4):
            os.link(path, copies / f"{process}_{c}.root")
            four.append(f"{process}={copies / f'{process}_{c}.root'}")

    rows_1, largest_1, events_1 = _collected(monkeypatch, spark, tmp_path / "one", one)
    rows_4, largest_4, events_4 = _collected(monkeypatch, spark, tmp_path / "four", four)
    assert events_4 == 4 * events_1 > 0
    # ingest: one record per file inspected and per split written; prepare: counts per (split, class),
    # balancing cut-offs, one scaler-moments row per ingest file, rows per output file (twice)
    assert sum(rows_1) <= 2 * len(one) + 12 + 2 * 2 + 32, rows_1
    assert sum(rows_4) <= 2 * len(four) + 12 + 2 * 2 + 32, rows_4
    assert max(largest_1, largest_4) < 4_000  # a record, not events (one event's particles alone are ~8 kB)
