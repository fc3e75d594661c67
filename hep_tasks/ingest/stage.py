"""The ingest stage: ROOT files -> Parquet events with the §3 features, a cut-flow and a quarantine.

Steps: resolve the inputs (a simulate version or user paths) -> inspect every file in Spark tasks
(header, tree, collections) -> read (file, entry range) splits through the ``delphes`` data source
-> write Parquet into the pending version -> manifest with per-class cut-flow, quarantined files,
events rejected for invalid values (NaN/inf, negative momenta, |Eta| > 10: per event, so the rest
of the file is kept) and file checksums -> atomic commit. The ``latest`` pointer moves only when
every check of the run passed (``publish``).

Output version layout::

    <version>/events/part-*.parquet   the events (schema in hep_tasks.ingest.schema)
    <version>/_splits/split-*.json    per-split cut-flow and errors (read back by the driver)
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
from hep_tasks.ingest.datasource import FORMAT, DelphesDataSource, file_record
from hep_tasks.ingest.inputs import InputFile, resolve_inputs
from hep_tasks.physics import CUTFLOW_STEPS
from hep_tasks.processes import PROCESS_OF_LABEL
from hep_tasks.sparkjob import collect_small, file_checksums

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

STAGE = "ingest"
EVENTS = "events"
SPLITS = "_splits"
CUTFLOW = ("read", *CUTFLOW_STEPS, "written")
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

    with store.begin(STAGE, version) as pending:
        stats_dir = posixpath.join(pending.path, SPLITS)
        events = (
            spark.read.format(FORMAT)
            .option("files", json.dumps(readable))
            .option("entriesPerSplit", params.entries_per_split)
            .option("onBadFile", params.on_bad_file)
            .option("statsDir", store.fs.unstrip_protocol(stats_dir) if not store.is_local else stats_dir)
            .load()
        )
        try:
            # float features do not dictionary-encode well; zstd is smaller and faster here than snappy
            events.write.option("compression", "zstd").option("parquet.enable.dictionary", "false").parquet(
                posixpath.join(pending.url, EVENTS)
            )
        except Exception as err:  # a Spark task failed; show the user our message, not a JVM trace
            raise _from_spark_failure(err) from None
        splits = _read_split_stats(store, stats_dir)
        log.info("read and wrote %d splits in %.1f s", len(splits), time.perf_counter() - started)
        quarantined += [
            {"url": s["url"], "entries": [s["start"], s["stop"]], "reason": s["error"]} for s in splits if s["error"]
        ]
        invalid = _invalid_values(splits)
        for url, record in invalid.items():
            log.warning("%s: %d events rejected for invalid values (%s)", url, record["events"],
                        ", ".join(f"{problem}: {n}" for problem, n in record["problems"].items()))
        written = spark.read.parquet(posixpath.join(pending.url, EVENTS)).groupBy("label").count()
        per_class = {PROCESS_OF_LABEL[r["label"]]: r["count"] for r in collect_small(written, 3)}
        manifest = pending.commit(
            {
                "inputs": input_versions,
                "parameters": params.to_dict(),
                "code_version": code_version(__name__),
                "counts": {"total": sum(per_class.values())} | per_class,
                "cutflow_steps": list(CUTFLOW),
                "cutflow": _cutflow(splits),
                "input_files": {"total": len(inputs), "readable": len(readable), "splits": len(splits)},
                "quarantine": quarantined,
                "invalid_values": invalid,
                "files": file_checksums(spark, pending.url),
            }
        )
    for process, row in manifest["cutflow"].items():
        log.info("cut-flow %s: %s", process, ", ".join(f"{step} {n}" for step, n in row.items()))
    return summary(store, manifest)


def inspect_inputs(spark: SparkSession, inputs: list[InputFile]) -> tuple[list[dict], list[dict]]:
    """Open every input's header in Spark tasks; (readable file records, quarantined records)."""
    spark.dataSource.register(DelphesDataSource)
    rdd = spark.sparkContext.parallelize(inputs, max(1, min(len(inputs), 256))).map(_inspect_one)
    results = collect_small(rdd, len(inputs))
    readable = [r for r in results if "reason" not in r]
    quarantined = [r for r in results if "reason" in r]
    return readable, quarantined


def _inspect_one(f: InputFile) -> dict[str, Any]:
    from hep_tasks.ingest.rootfile import inspect_file

    try:
        return file_record(f.url, f.process, inspect_file(f.url))
    except InputFileError as err:
        return {"url": f.url, "process": f.process, "reason": err.problem}


def _read_split_stats(store: DatasetStore, stats_dir: str) -> list[dict[str, Any]]:
    records = []
    for path in sorted(store.fs.glob(posixpath.join(stats_dir, "split-*.json"))):
        with store.fs.open(path, "r") as f:
            records.append(json.load(f))
    return records


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
