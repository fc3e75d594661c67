"""The evaluate stage: score the test split with each model, compute metrics, write the report.

1. The prepared ``test`` split of the model version's input (untouched by training and
   validation) is scored on Spark by every model of the version (:mod:`hep_tasks.score.predict`);
   the predictions are kept in the version (``predictions/``) for the ``check_model`` suite.
2. Score histograms and confusion counts are aggregated on Spark (:mod:`.histograms`); only
   those small arrays reach the driver, where :mod:`.metrics` turns them into ROC curves, AUCs,
   tt̄ efficiencies at fixed QCD acceptance and confusion matrices.
3. ``metrics.json``, PNG plots (``plots/``) and one self-contained ``report.html`` are written, and
   the version is committed; ``check_model`` then decides whether the models are published.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import tempfile
import time
from typing import TYPE_CHECKING, Any

from hep_tasks.config import EvaluateParams
from hep_tasks.datasets import DatasetStore, code_version, summary, version_id
from hep_tasks.evaluate.histograms import confusion_counts, score_histograms
from hep_tasks.evaluate.metrics import model_metrics
from hep_tasks.evaluate.plots import write_plots
from hep_tasks.evaluate.report import render_report
from hep_tasks.score.predict import predict_dataframe
from hep_tasks.score.stage import checked_models
from hep_tasks.sparkjob import file_checksums

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

STAGE = "evaluate"
PREDICTIONS = "predictions"
METRICS = "metrics.json"
REPORT = "report.html"
PLOTS = "plots"
#: The headline numbers of each model copied into the manifest (the rest is in metrics.json).
HEADLINE = ("auc_ttbar_vs_qcd", "auc_one_vs_rest", "ttbar_efficiency_at_qcd_acceptance", "accuracy", "events")


def run(spark: SparkSession, store: DatasetStore, params: EvaluateParams) -> dict[str, Any]:
    """Evaluate every model of a train version on its prepared test split."""
    train_version, model_paths, train = checked_models(store, params.input, ())
    prepared = train["inputs"]["prepare"]
    version = version_id(STAGE, {"train": train_version}, params.to_dict(), code_version(__name__))
    if store.exists(STAGE, version):
        log.info("evaluate version %s already exists: nothing to do", version)
        return summary(store, store.read_manifest(STAGE, version))

    started = time.perf_counter()
    test = spark.read.parquet(store.url("prepare", prepared, "test"))
    predictions = predict_dataframe(
        test.select("label", "label_onehot", "hlf", "particles", "source_file", "entry"),
        data_root=store.root,
        model_paths=model_paths,
        max_particles=train["parameters"]["max_particles"],
        rows_per_batch=params.rows_per_batch,
    )
    with store.begin(STAGE, version) as pending:
        url = posixpath.join(pending.url, PREDICTIONS)
        predictions.write.parquet(url)
        scored = spark.read.parquet(url).persist()
        try:
            histograms, confusion = score_histograms(scored), confusion_counts(scored)
        finally:
            scored.unpersist()
        scoring_s = time.perf_counter() - started
        metrics = {m: model_metrics(histograms[m], confusion[m]) for m in model_paths}
        histories = {m: train["models"][m]["history"] for m in model_paths}
        run_info = {
            "datasets": {"train (models)": train_version, "prepare": prepared, "evaluate": version},
            "parameters": train["parameters"] | {"hyperparameters": train["hyperparameters"]},
            "timings": {
                **{f"{m} training_s": train["models"][m]["train_seconds"] for m in model_paths},
                **{f"{m} events_per_second_per_core": train["models"][m]["steady_events_per_second_per_core"] for m in model_paths},
                "scoring and metrics_s": scoring_s,
            },
        }
        write_outputs(store, pending.path, metrics, histories, run_info)
        first = next(iter(metrics.values()))
        manifest = pending.commit(
            {
                "inputs": {"train": train_version, "prepare": prepared},
                "parameters": params.to_dict(),
                "code_version": code_version(__name__),
                "counts": first["events_per_class"] | {"total": first["events"]},
                "metrics": {m: {k: v[k] for k in HEADLINE} for m, v in metrics.items()},
                "report": REPORT,
                "metrics_file": METRICS,
                "files": file_checksums(spark, pending.url),
            }
        )
    for m, v in metrics.items():
        log.info("%s: tt̄-vs-QCD AUC %.4f, accuracy %.3f on %d test events", m, v["auc_ttbar_vs_qcd"] or float("nan"),
                 v["accuracy"] or float("nan"), v["events"])
    log.info("report: %s", store.path(STAGE, version, REPORT))
    return summary(store, manifest) | {"report": store.url(STAGE, version, REPORT)}


def write_outputs(store: DatasetStore, directory: str, metrics: dict, histories: dict, run_info: dict) -> None:
    """metrics.json, plots/*.png and report.html into ``directory`` of the store (rendered locally)."""
    with tempfile.TemporaryDirectory(prefix="hep-evaluate-") as tmp:
        plots = write_plots(metrics, histories, os.path.join(tmp, PLOTS))
        html = render_report(title="hep-pipeline: classifier evaluation", metrics=metrics, histories=histories,
                             plots=plots, run_info=run_info)  # fmt: skip
        with open(os.path.join(tmp, REPORT), "w") as f:
            f.write(html)
        with open(os.path.join(tmp, METRICS), "w") as f:
            json.dump(metrics, f, indent=1, sort_keys=True)
        store.fs.put(tmp + "/", directory, recursive=True)
