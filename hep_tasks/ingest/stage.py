"""The ingest stage: ROOT files -> Parquet events with the §3 features, a cut-flow and a quarantine.

Steps: resolve the inputs (a simulate version or user paths) -> inspect every file in Spark tasks
(header, tree, collections) -> one Spark task per (file, entry range) split reads it with uproot,
computes the features and writes its own Parquet file into the pending version with pyarrow
(``hep_tasks.partfiles``: atomic per attempt, checksummed while written), returning its cut-flow
-> manifest with per-class cut-flow, quarantined files, events rejected for invalid values
(NaN/inf, negative momenta, |Eta| > 10: per event, so the rest of the file is kept) and file
checksums -> atomic commit. Two Spark jobs in all; the JVM only schedules. The ``latest`` pointer
moves only when every check of the run passed (``publish``).

Output version layout::

    <version>/events/part-<split>.parquet   the events (schema in hep_tasks.ingest.schema)
    <version>/_manifest.json
"""

from __future__ import annotations

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
from hep_tasks.sparkjob import collect_small

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

STAGE = "ingest"
EVENTS = "events"
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
    readable, quarantined = inspect_inputs(spark, inputs)
    log.info("inspected the inputs in %.1f s: %d readable, %d quarantined, %d events",
             time.perf_counter() - started, len(readable), len(quarantined), sum(r.get("entries", 0) for r in readable))
    if quarantined and params.on_bad_file == "fail":
        raise InputFileError(quarantined[0]["url"], quarantined[0]["reason"])
    if not readable:
        listed = "; ".join(f"{q['url']}: {q['reason']}" for q in quarantined[:MAX_LISTED])
        more = f"; and {len(quarantined) - MAX_LISTED} more (see the log)" if len(quarantined) > MAX_LISTED else ""
        for q in quarantined[MAX_LISTED:]:
            log.error("unreadable %s: %s", q["url"], q["reason"])
        raise PipelineError(f"none of the {len(inputs)} input files is readable: {listed}{more}")
    for q in quarantined:
        log.warning("quarantined %s: %s", q["url"], q["reason"])

    splits = plan_splits(readable, params.entries_per_split)
    with store.begin(STAGE, version) as pending:
        results = write_events(spark, splits, params, posixpath.join(pending.url, EVENTS))
        write_seconds = sum(r["file"]["write_seconds"] for r in results)
        log.info("read and wrote %d splits in %.1f s (task time: %.1f s reading and computing, %.1f s writing)",
                 len(splits), time.perf_counter() - started, sum(r["task_seconds"] for r in results) - write_seconds,
                 write_seconds)
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
                "input_files": {"total": len(inputs), "readable": len(readable), "splits": len(splits)},
                "quarantine": quarantined,
                "invalid_values": invalid,
                "files": [
                    {"path": posixpath.join(EVENTS, r["file"]["name"]), "size": r["file"]["size"], "sha256": r["file"]["sha256"]}
                    for r in results
                ],
            }
        )
    for process, row in manifest["cutflow"].items():
        log.info("cut-flow %s: %s", process, ", ".join(f"{step} {n}" for step, n in row.items()))
    return summary(store, manifest)


def inspect_inputs(spark: SparkSession, inputs: list[InputFile]) -> tuple[list[dict], list[dict]]:
    """Open every input's header in Spark tasks; (readable file records, quarantined records)."""
    rdd = spark.sparkContext.parallelize(inputs, max(1, min(len(inputs), 256))).map(_inspect_one)
    results = collect_small(rdd, len(inputs))
    readable = [r for r in results if "reason" not in r]
    quarantined = [r for r in results if "reason" in r]
    return readable, quarantined


def write_events(spark: SparkSession, splits: list[Split], params: IngestParams, url: str) -> list[dict[str, Any]]:
    """Read, select and write every split in its own Spark task, as ``url/part-<split>.parquet``
    written with pyarrow by the task; per split: its cut-flow record, its file's checksum and the
    task's time (``task_seconds``, of which ``file.write_seconds`` writing)."""
    on_bad_file = params.on_bad_file

    def ingest_split(split: Split) -> dict[str, Any]:
        started, tally = time.perf_counter(), SplitTally()
        batches = read_split(split, CHUNK_ENTRIES, on_bad_file, tally)
        written = write_part(batches, url, f"part-{split.index:05d}.parquet", ARROW_SCHEMA)
        return {"split": tally.record(split), "file": written, "task_seconds": time.perf_counter() - started}

    rdd = spark.sparkContext.parallelize(splits, max(1, len(splits))).map(ingest_split)
    try:
        results = collect_small(rdd, len(splits))
    except Exception as err:  # a Spark task failed; show the user our message, not a JVM trace
        raise _from_spark_failure(err) from None
    drop_attempts(url)
    return sorted(results, key=lambda r: r["split"]["index"])


def _inspect_one(f: InputFile) -> dict[str, Any]:
    from hep_tasks.ingest.rootfile import inspect_file

    try:
        return file_record(f.url, f.process, inspect_file(f.url))
    except InputFileError as err:
        return {"url": f.url, "process": f.process, "reason": err.problem}


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
