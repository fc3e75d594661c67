"""The ingest stage: ROOT files -> Parquet events with the §3 features, a cut-flow and a quarantine.

Steps: resolve the inputs (a simulate version or user paths) -> in Spark tasks, inspect every
file (header, tree, collections, branch types) and read each (file, entry range) split with
uproot, compute the features and write the split's own Parquet file into the pending version
with pyarrow (``hep_tasks.partfiles``: atomic per attempt, checksummed while written), returning
its cut-flow -> manifest with per-class cut-flow, quarantined files, events rejected for invalid
values (NaN/inf, negative momenta, |Eta| > 10: per event, so the rest of the file is kept) and
file checksums -> atomic commit. With many files one task does whole files, one after another
(one Spark job); with few, inspection comes first and every split is a task (two jobs). The JVM
only schedules. The ``latest`` pointer moves only when every check of the run passed (``publish``).

Output version layout::

    <version>/events/part-<file digest>-<first entry>.parquet   the events (hep_tasks.ingest.schema)
    <version>/_manifest.json
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
import time
from typing import TYPE_CHECKING, Any

from hep_tasks.config import IngestParams
from hep_tasks.datasets import DatasetStore, code_version, summary, version_id
from hep_tasks.errors import InputFileError, PipelineError
from hep_tasks.ingest.datasource import CHUNK_ENTRIES, CUTFLOW, Split, SplitTally, file_record, plan_splits, read_split
from hep_tasks.ingest.inputs import InputFile, resolve_inputs
from hep_tasks.ingest.schema import ARROW_SCHEMA
from hep_tasks.partfiles import drop_attempts, write_part
from hep_tasks.sparkjob import collect_small, task_slots

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

STAGE = "ingest"
EVENTS = "events"
#: Tasks per task slot when every task ingests whole files (an interleaved share of them each).
TASKS_PER_SLOT = 4
#: Unreadable files named in the error when none is readable (the rest go to the log).
MAX_LISTED = 5


def run(spark: SparkSession, store: DatasetStore, params: IngestParams) -> dict[str, Any]:
    """Ingest the input ROOT files into a new (or the existing identical) ingest version."""
    inputs, input_versions = resolve_inputs(store, params.input)
    version = version_id(STAGE, input_versions, params.to_dict(), code_version(__name__))
    if store.exists(STAGE, version):
        log.info("ingest version %s already exists: nothing to do", version)
        return summary(store, store.read_manifest(STAGE, version))

    started = time.perf_counter()
    log.info("ingest version %s: %d input files (%s)", version, len(inputs), json.dumps(input_versions))
    with store.begin(STAGE, version) as pending:
        files, results = read_inputs(spark, inputs, params, posixpath.join(pending.url, EVENTS))
        readable = [f for f in files if "reason" not in f]
        quarantined = [{"url": f["url"], "process": f["process"], "reason": f["reason"]} for f in files if "reason" in f]
        _refuse_if_unreadable(inputs, readable, quarantined)
        write_seconds = sum(r["file"]["write_seconds"] for r in results)
        log.info("read and wrote %d files, %d splits, %d events in %.1f s (task time: %.1f s reading and computing, "
                 "%.1f s writing)", len(readable), len(results), sum(f["entries"] for f in readable),
                 time.perf_counter() - started, sum(r["task_seconds"] for r in results) - write_seconds, write_seconds)
        for q in quarantined:
            log.warning("quarantined %s: %s", q["url"], q["reason"])
        records = [r["split"] for r in results]
        quarantined += [
            {"url": s["url"], "entries": [s["start"], s["stop"]], "reason": s["error"]} for s in records if s["error"]
        ]
        invalid = _invalid_values(records)
        for url, record in invalid.items():
            log.warning("%s: %d events rejected for invalid values (%s)", url, record["events"],
                        ", ".join(f"{problem}: {n}" for problem, n in record["problems"].items()))
        cutflow = _cutflow(records)
        per_class = {process: row["written"] for process, row in cutflow.items()}
        manifest = pending.commit(
            {
                "inputs": input_versions,
                "parameters": params.to_dict(),
                "code_version": code_version(__name__),
                "counts": {"total": sum(per_class.values())} | per_class,
                "cutflow_steps": list(CUTFLOW),
                "cutflow": cutflow,
                "input_files": {"total": len(inputs), "readable": len(readable), "splits": len(results)},
                "quarantine": quarantined,
                "invalid_values": invalid,
                "files": sorted(
                    ({"path": posixpath.join(EVENTS, r["file"]["name"]), "size": r["file"]["size"],
                      "sha256": r["file"]["sha256"]} for r in results),
                    key=lambda f: f["path"],
                ),
            }
        )
    for process, row in manifest["cutflow"].items():
        log.info("cut-flow %s: %s", process, ", ".join(f"{step} {n}" for step, n in row.items()))
    return summary(store, manifest)


def read_inputs(spark: SparkSession, inputs: list[InputFile], params: IngestParams, url: str) -> tuple[list[dict], list[dict]]:
    """Inspect, read, select and write every input in Spark tasks; each split's events become
    ``url/part-<file digest>-<first entry>.parquet``, written with pyarrow by its task. Returns the
    file records (inspected, or with the ``reason`` it is unreadable) and per split: its cut-flow
    record, its file's checksum and the task's time (``task_seconds``, of which
    ``file.write_seconds`` writing).

    With at least two input files per task slot, a task inspects a file and then reads and
    writes its splits in turn, file after file: up to :data:`TASKS_PER_SLOT` tasks per slot, each
    given every n-th file (one Spark job; a Python task costs ≈ 0.1 s beyond its work on 2 cores,
    most of a small file's time). With fewer files, the files are inspected first and each split
    is a task of its own, so that a few large files still use every slot.
    """
    if len(inputs) >= 2 * task_slots(spark):
        n = min(len(inputs), TASKS_PER_SLOT * task_slots(spark))
        numbered = list(enumerate(inputs))
        per_task = _run_tasks(spark, [numbered[i::n] for i in range(n)],
                              lambda files: [(i, _ingest_file(f, params, url)) for i, f in files])  # fmt: skip
        per_file = [r for _, r in sorted((pair for pairs in per_task for pair in pairs), key=lambda pair: pair[0])]
        files, results = [r["file"] for r in per_file], [s for r in per_file for s in r["splits"]]
    else:
        files = _run_tasks(spark, inputs, _inspect_one)
        for f in files:
            if "reason" in f and params.on_bad_file == "fail":
                raise InputFileError(f["url"], f["reason"])
        splits = plan_splits([f for f in files if "reason" not in f], params.entries_per_split)
        results = _run_tasks(spark, splits, lambda split: _ingest_split(split, params, url))
    drop_attempts(url)
    return files, results


def _run_tasks(spark: SparkSession, items: list[Any], task: Any) -> list[Any]:
    """``task`` of every item, one Spark task each; a failure shows our message, not a JVM trace."""
    if not items:
        return []
    try:
        return collect_small(spark.sparkContext.parallelize(items, len(items)).map(task), len(items))
    except Exception as err:
        raise _from_spark_failure(err) from None


def _ingest_file(f: InputFile, params: IngestParams, url: str) -> dict[str, Any]:
    record = _inspect_one(f)
    if "reason" in record:
        if params.on_bad_file == "fail":
            raise InputFileError(f.url, record["reason"])
        return {"file": record, "splits": []}
    return {"file": record, "splits": [_ingest_split(s, params, url) for s in plan_splits([record], params.entries_per_split)]}


def _ingest_split(split: Split, params: IngestParams, url: str) -> dict[str, Any]:
    started, tally = time.perf_counter(), SplitTally()
    batches = read_split(split, CHUNK_ENTRIES, params.on_bad_file, tally)
    written = write_part(batches, url, part_name(split), ARROW_SCHEMA)
    return {"split": tally.record(split), "file": written, "task_seconds": time.perf_counter() - started}


def part_name(split: Split) -> str:
    """The Parquet file of a split's events: named by its input file and first entry, so a task
    retried, or the same split read by another plan, writes the same file.

    >>> part_name(Split(0, "/data/tt.root", "ttbar", 1, 20000, 40000, {}))
    'part-c1e8c617fd1948af9bd5-0000020000.parquet'
    """
    return f"part-{hashlib.sha1(split.url.encode()).hexdigest()[:20]}-{split.start:010d}.parquet"


def _inspect_one(f: InputFile) -> dict[str, Any]:
    from hep_tasks.ingest.rootfile import inspect_file

    try:
        return file_record(f.url, f.process, inspect_file(f.url))
    except InputFileError as err:
        return {"url": f.url, "process": f.process, "reason": err.problem}


def _refuse_if_unreadable(inputs: list[InputFile], readable: list[dict], quarantined: list[dict]) -> None:
    """Raise, naming each file (the first few) with its problem, when no input is readable."""
    if readable:
        return
    listed = "; ".join(f"{q['url']}: {q['reason']}" for q in quarantined[:MAX_LISTED])
    more = f"; and {len(quarantined) - MAX_LISTED} more (see the log)" if len(quarantined) > MAX_LISTED else ""
    for q in quarantined[MAX_LISTED:]:
        log.error("unreadable %s: %s", q["url"], q["reason"])
    raise PipelineError(f"none of the {len(inputs)} input files is readable: {listed}{more}")


def _cutflow(splits: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per-class cut-flow: events read, with a lepton PT > 23 GeV, with an isolated lepton, written."""
    table: dict[str, dict[str, int]] = {}
    for s in splits:
        row = table.setdefault(s["process"], dict.fromkeys(CUTFLOW, 0))
        for step in CUTFLOW:
            row[step] += s["counts"][step]
    return table


def _invalid_values(splits: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per input file with such events: the events rejected for invalid values (the cut-flow's
    ``read`` − ``valid_values``) and the events per problem (an event may have several)."""
    files: dict[str, dict[str, Any]] = {}
    for s in splits:
        rejected = s["counts"]["read"] - s["counts"]["valid_values"]
        if rejected:
            record = files.setdefault(s["url"], {"process": s["process"], "events": 0, "problems": {}})
            record["events"] += rejected
            for problem, n in s["invalid_values"].items():
                record["problems"][problem] = record["problems"].get(problem, 0) + n
    return files


_INPUT_FILE_ERROR = re.compile(r"InputFileError: (.+)")


def _from_spark_failure(err: Exception) -> Exception:
    match = _INPUT_FILE_ERROR.search(str(err))
    if match:
        return PipelineError(match.group(1).strip())
    return PipelineError(f"the ingest Spark job failed: {str(err).strip().splitlines()[0]}")
