"""The quality stage: run a stage's Great Expectations suite on one of its versions and publish it.

Suites: ``ingest`` (ingested events), ``prepare`` (train/test), ``evaluate`` (the models' test-split
predictions and AUC floors; this is ``check_model``, and passing it publishes the model version).

Results go next to the data (``<version>/_quality/<suite>.json`` and ``_quality/data_docs/``) and
the manifest's ``quality`` field records the outcome; a passing evaluate version also marks its
model (train) version as passed. ``latest`` pointers are moved later, by ``publish``
(:mod:`hep_tasks.catalog`), once every check of a run has passed. A failing suite fails the job
with every failed expectation listed and the Data Docs path. A version that already passed is
not checked again.
"""

from __future__ import annotations

import logging
import os
import posixpath
import tempfile
from typing import TYPE_CHECKING, Any

from hep_tasks.config import QualityParams
from hep_tasks.datasets import DatasetStore, summary
from hep_tasks.processes import PROCESSES
from hep_tasks.quality.report import Check, raise_for_failures
from hep_tasks.quality.runner import run_checks

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

RESULTS = "_quality"


def run(spark: SparkSession, store: DatasetStore, params: QualityParams) -> dict[str, Any]:
    stage = params.stage
    version = store.resolve(stage, params.version)
    manifest = store.read_manifest(stage, version)
    if manifest.get("quality", {}).get("status") == "passed":
        log.info("%s version %s already passed its checks", stage, version)
        _mark_model(store, stage, version, manifest)
        return summary(store, manifest)

    # Spark starts here, before the suites import Great Expectations, which the CLI prefetches meanwhile
    log.info("checking %s version %s (Spark application %s)", stage, version, spark.sparkContext.applicationId)
    checks = CHECKS[stage](spark, store, version, manifest, params)  # run_checks reads each batch once
    results = store.path(stage, version, RESULTS)
    if store.is_local:
        report = run_checks(stage, checks, results)
    else:  # GX renders into a local directory; upload it next to the data
        with tempfile.TemporaryDirectory(prefix="hep-quality-") as tmp:
            report = run_checks(stage, checks, tmp)
            store.fs.put(tmp + "/", results, recursive=True)
    outcome = report.to_dict() | {
        "results_path": posixpath.join(RESULTS, os.path.basename(report.results_path)),
        "data_docs_index": posixpath.join(RESULTS, "data_docs", "index.html"),
    }
    manifest = store.update_manifest(stage, version, quality=outcome)
    log.info("%s version %s: quality %s (%s)", stage, version, outcome["status"], report.statistics)
    if report.success:
        _mark_model(store, stage, version, manifest)
    raise_for_failures(report)
    return summary(store, manifest)


def _mark_model(store: DatasetStore, stage: str, version: str, manifest: dict[str, Any]) -> None:
    """An evaluation that passed ``check_model`` marks its model (train) version as passed."""
    if stage == "evaluate":
        store.update_manifest("train", manifest["inputs"]["train"], quality={"status": "passed", "evaluate": version})


def _ingest_checks(spark: SparkSession, store: DatasetStore, version: str, manifest: dict[str, Any], params: QualityParams) -> list[Check]:
    from hep_tasks.ingest.stage import EVENTS
    from hep_tasks.quality.ingest_suite import ingest_checks

    total = manifest["input_files"]["total"]
    quarantined = len({q["url"] for q in manifest["quarantine"]})
    metrics = spark.createDataFrame(
        [(total, quarantined, quarantined / total if total else 1.0)],
        "files_total long, files_quarantined long, quarantined_fraction double",
    )
    events = spark.read.parquet(store.url("ingest", version, EVENTS))
    return ingest_checks(
        events, metrics, max_quarantined_fraction=manifest["parameters"]["max_quarantined_fraction"]
    )


def _prepare_checks(spark: SparkSession, store: DatasetStore, version: str, manifest: dict[str, Any], params: QualityParams) -> list[Check]:
    from hep_tasks.prepare.scalers import FeatureScalers
    from hep_tasks.prepare.transform import ETA, PHI
    from hep_tasks.quality.prepare_suite import prepared_checks

    with store.fs.open(store.path("prepare", version, manifest["scalers"]), "r") as f:
        particles = FeatureScalers.loads(f.read()).particles
    return prepared_checks(
        spark.read.parquet(store.url("prepare", version, "train")),
        spark.read.parquet(store.url("prepare", version, "test")),
        eta_mean=float(particles.mean[ETA]),
        eta_std=float(particles.std[ETA]),
        phi_mean=float(particles.mean[PHI]),
        phi_std=float(particles.std[PHI]),
    )


def _evaluate_checks(spark: SparkSession, store: DatasetStore, version: str, manifest: dict[str, Any], params: QualityParams) -> list[Check]:
    from hep_tasks.evaluate.stage import PREDICTIONS
    from hep_tasks.quality.model_suite import model_checks

    rows = [
        (model, *(float("nan") if m["auc_one_vs_rest"][p] is None else float(m["auc_one_vs_rest"][p]) for p in PROCESSES),
         float("nan") if m["auc_ttbar_vs_qcd"] is None else float(m["auc_ttbar_vs_qcd"]))
        for model, m in manifest["metrics"].items()
    ]  # fmt: skip
    metrics = spark.createDataFrame(rows, "model string, " + ", ".join(f"auc_{p} double" for p in PROCESSES) + ", auc_ttbar_vs_qcd double")
    predictions = spark.read.parquet(store.url("evaluate", version, PREDICTIONS))
    return model_checks(predictions, metrics, auc_floors=params.floors())


CHECKS = {"ingest": _ingest_checks, "prepare": _prepare_checks, "evaluate": _evaluate_checks}
