"""The score stage: apply a trained model version to an ingested version, on Spark.

The ingested events get the model's own preprocessing (its prepared version's ``scalers.json``,
copied into the model version, and the ΔR sort) per Arrow batch, then every chosen model's
probabilities (:mod:`hep_tasks.score.predict`). Output, one row per (model, event)::

    score/<version>/scores/   model, label, source_file, entry, probabilities[3], log_odds[3]

This is how a trigger study applies a classifier to new simulations (``hep_scoring`` DAG).
"""

from __future__ import annotations

import logging
import posixpath
from typing import TYPE_CHECKING, Any

from hep_tasks.config import ScoreParams
from hep_tasks.datasets import DatasetError, DatasetStore, code_version, summary, version_id
from hep_tasks.processes import PROCESS_OF_LABEL
from hep_tasks.score.predict import predict_dataframe
from hep_tasks.sparkjob import collect_small, file_checksums

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

STAGE = "score"
SCORES = "scores"


def run(spark: SparkSession, store: DatasetStore, params: ScoreParams) -> dict[str, Any]:
    from hep_tasks.ingest.stage import EVENTS
    from hep_tasks.prepare.stage import check_schema, input_files
    from hep_tasks.prepare.stage import checked_source as checked_ingest

    source = checked_ingest(store, params.input)
    model_version, model_paths, train = checked_models(store, params.model, params.models)
    version = version_id(STAGE, {"ingest": source, "train": model_version}, params.to_dict(), code_version(__name__))
    if store.exists(STAGE, version):
        log.info("score version %s already exists: nothing to do", version)
        return summary(store, store.read_manifest(STAGE, version))

    check_schema([source], input_files(store, [source]))
    events = spark.read.parquet(store.url("ingest", source, EVENTS))
    with store.fs.open(store.path("train", model_version, train["scalers"]), "r") as f:
        scalers_json = f.read()
    predictions = predict_dataframe(
        events.select("label", "hlf", "particles", "source_file", "entry"),
        data_root=store.root,
        model_paths=model_paths,
        max_particles=train["parameters"]["max_particles"],
        rows_per_batch=params.rows_per_batch,
        scalers_json=scalers_json,
    )
    with store.begin(STAGE, version) as pending:
        url = posixpath.join(pending.url, SCORES)
        predictions.write.parquet(url)
        per_class = mean_probabilities(spark.read.parquet(url))
        first = next(iter(per_class.values()))
        manifest = pending.commit(
            {
                "inputs": {"ingest": source, "train": model_version},
                "parameters": params.to_dict(),
                "code_version": code_version(__name__),
                "models": sorted(model_paths),
                "counts": {p: v["events"] for p, v in first.items()} | {"total": sum(v["events"] for v in first.values())},
                "mean_probabilities": per_class,
                "files": file_checksums(spark, pending.url),
            }
        )
    return summary(store, manifest)


def checked_models(store: DatasetStore, version: str, wanted: tuple[str, ...]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(train version, {model: path of its .keras file}, train manifest); the version must have
    passed ``check_model`` unless named explicitly, and hold every wanted model."""
    version = store.resolve("train", version)
    manifest = store.read_manifest("train", version)
    held = manifest.get("models", {})
    missing = [m for m in wanted if m not in held]
    if missing:
        raise DatasetError(f"train version {version} has no model {', '.join(missing)} (it holds: {', '.join(held) or 'none'})")
    return version, {m: store.path("train", version, held[m]["file"]) for m in (wanted or tuple(held))}, manifest


def mean_probabilities(predictions: DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """Per model and true process: events and the mean probability of each class."""
    from pyspark.sql import functions as F

    rows = collect_small(
        predictions.groupBy("model", "label").agg(
            F.count(F.lit(1)).alias("events"),
            *[F.avg(F.col("probabilities")[k]).alias(f"p{k}") for k in sorted(PROCESS_OF_LABEL)],
        ),
        10_000,
    )
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["model"], {})[PROCESS_OF_LABEL[r["label"]]] = {
            "events": int(r["events"]),
            **{f"mean_p_{PROCESS_OF_LABEL[k]}": float(r[f"p{k}"]) for k in sorted(PROCESS_OF_LABEL)},
        }
    return out
