"""The train stage: the chosen Keras classifiers, trained data-parallel on Spark, one version.

For each model, in turn, :class:`~hep_tasks.train.distributor.TensorFlowDistributor` runs one
barrier stage of ``workers`` tasks; each task trains as a TensorFlow worker on its shard of the
prepared ``train`` split (row groups, balanced by rows), validates on a seeded slice of it, and
checkpoints every epoch (``checkpoints.py``). The stage then checks that every worker ended with
identical weights (proof that gradients were all-reduced), and commits the version::

    train/<version>/<model>/model.keras     the model with the best validation loss
    train/<version>/scalers.json            the prepared version's scalers (scoring needs them)
    train/<version>/_manifest.json          lineage, parameters, per-model history and timings

A rerun of the same version resumes: finished models are taken as they are, an interrupted one
continues from its last checkpoint.

With ``tune`` (a tune version id) the models start from that version's best hyper-parameters
(``best_hyperparameters`` in its manifest) instead of the defaults; the ``hyperparameters`` JSON
and the ``batch_size``/``learning_rate`` flags still override them, and the tune version is an
input of the train version (its id covers it).
"""

from __future__ import annotations

import logging
import posixpath
import time
from typing import TYPE_CHECKING, Any

from hep_tasks.config import TrainParams
from hep_tasks.datasets import DatasetError, DatasetStore, code_version, summary, version_id
from hep_tasks.prepare.scalers import ARTIFACT as SCALERS
from hep_tasks.train import worker
from hep_tasks.train.checkpoints import MODEL_FILE, CheckpointStore
from hep_tasks.train.distributor import TensorFlowDistributor, TrainingError
from hep_tasks.train.hyperparameters import MIN_STEPS_PER_EPOCH, parse_overrides, resolve
from hep_tasks.train.inputs import catalogue, shard_train_rows, shards
from hep_tasks.train.loop import WorkerSpec, fitted_batch
from hep_tasks.train.models import model_inputs

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

STAGE = "train"
SOURCE = "prepare"
TUNE = "tune"
#: Columns the train split must have, with their Arrow types.
REQUIRED_COLUMNS = {
    "label_onehot": "list<element: float>",
    "hlf": "list<element: float>",
    "particles": "list<element: list<element: float>>",
    "source_file": "string",
    "entry": "int64",
}


def run(spark: SparkSession, store: DatasetStore, params: TrainParams) -> dict[str, Any]:
    """Train ``params.models`` on a checked prepared version; returns the version summary."""
    source = checked_source(store, params.input)
    tuned = tuned_hyperparameters(store, params.tune, source)
    hyperparameters = model_hyperparameters(params, tuned)
    inputs = {SOURCE: source} | ({TUNE: params.tune} if params.tune else {})
    version = version_id(STAGE, inputs, params.to_dict(), code_version(__name__))
    if store.exists(STAGE, version):
        log.info("train version %s already exists: nothing to do", version)
        return summary(store, store.read_manifest(STAGE, version))

    train_dir = store.path(SOURCE, source, "train")
    groups = catalogue(store.fs, train_dir)
    check_schema(store, groups[0].path if groups else train_dir)
    parts = shards(groups, params.workers)
    if not all(parts):
        raise DatasetError(
            f"{SOURCE} version {source}: its train split has {len(groups)} Parquet row groups, fewer than "
            f"train.workers={params.workers}; use fewer workers, or prepare with more files_per_split or a "
            "smaller rows_per_row_group"
        )
    distributor = TensorFlowDistributor(spark, params.workers, params.threads_per_worker, params.max_restarts)
    results = {}
    for model in params.models:
        results[model] = train_model(store, distributor, version, model, hyperparameters[model], parts, params)

    with store.begin(STAGE, version) as pending:
        for model in params.models:
            store.fs.makedirs(posixpath.join(pending.path, model), exist_ok=True)
            store.fs.copy(store.scratch(STAGE, version, model, MODEL_FILE), posixpath.join(pending.path, model, MODEL_FILE))
        store.fs.copy(store.path(SOURCE, source, SCALERS), posixpath.join(pending.path, SCALERS))
        from hep_tasks.sparkjob import file_checksums

        manifest = pending.commit(
            {
                "inputs": inputs,
                "parameters": params.to_dict(),
                "hyperparameters": hyperparameters,
                "tuned_hyperparameters": tuned,
                "code_version": code_version(__name__),
                "counts": {
                    "train_split": sum(g.rows for g in groups),
                    "validation": int(max(r["history"]["validation_events"][-1] for r in results.values())),
                },
                "workers": params.workers,
                "threads_per_worker": distributor.threads,
                "models": results,
                "scalers": SCALERS,
                "files": file_checksums(spark, pending.url),
            }
        )
    store.fs.rm(store.scratch(STAGE, version), recursive=True)
    return summary(store, manifest)


def checked_source(store: DatasetStore, version: str) -> str:
    """The prepared version to train on; it must exist and have passed its quality check."""
    version = store.resolve(SOURCE, version)
    status = store.read_manifest(SOURCE, version).get("quality", {}).get("status", "pending")
    if status != "passed":
        raise DatasetError(f"{SOURCE} version {version} has not passed its quality check (status: {status})")
    return version


def check_schema(store: DatasetStore, path: str) -> None:
    """The train split has the columns training reads (checked on one file's footer)."""
    import pyarrow.parquet as pq

    try:
        with store.fs.open(path, "rb") as f:
            schema = pq.ParquetFile(f).schema_arrow
    except (FileNotFoundError, IsADirectoryError):
        raise DatasetError(f"no Parquet files in {path}") from None
    found = {f.name: str(f.type) for f in schema}
    wrong = [f"{c} ({found.get(c, 'missing')}, expected {t})" for c, t in REQUIRED_COLUMNS.items() if found.get(c) != t]
    if wrong:
        raise DatasetError(f"the train split {path} has the wrong schema: {', '.join(wrong)} (columns: {', '.join(found)})")


def tuned_hyperparameters(store: DatasetStore, tune: str, source: str) -> dict[str, dict[str, Any]]:
    """The best hyper-parameters of tune version ``tune`` for the models it tuned (``{}`` when empty)."""
    if not tune:
        return {}
    manifest = store.read_manifest(TUNE, tune)  # raises naming the versions that exist
    best = manifest.get("best_hyperparameters")
    if not isinstance(best, dict) or not best:
        raise DatasetError(f"{TUNE} version {tune} has no best_hyperparameters in its manifest")
    try:
        parse_overrides(best)
    except ValueError as err:
        raise DatasetError(f"{TUNE} version {tune}: its best_hyperparameters are not usable: {err}") from None
    tuned_on = manifest.get("inputs", {}).get(SOURCE)
    if tuned_on != source:
        log.warning("tune version %s was tuned on %s version %s, not on %s, the one being trained on", tune, SOURCE, tuned_on, source)
    log.info("hyper-parameters from tune version %s for %s", tune, ", ".join(best))
    return best


def model_hyperparameters(params: TrainParams, tuned: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Per model: defaults < ``tuned`` (a tune version's best) < ``hyperparameters`` JSON < the
    stage's batch_size/learning_rate flags."""
    overrides = parse_overrides(params.hyperparameters)
    out = {}
    for model in params.models:
        hp = resolve(model, {model: {**(tuned or {}).get(model, {}), **overrides.get(model, {})}})
        if params.batch_size:
            hp["batch_size"] = params.batch_size
        if params.learning_rate:
            hp["learning_rate"] = params.learning_rate
        out[model] = hp
    return out


def train_model(
    store: DatasetStore,
    distributor: TensorFlowDistributor,
    version: str,
    model: str,
    hp: dict[str, Any],
    parts: list[list[Any]],
    params: TrainParams,
) -> dict[str, Any]:
    """Train one model (or take it from an earlier attempt); its manifest entry."""
    checkpoints = CheckpointStore(store.fs, store.scratch(STAGE, version, model))
    done = checkpoints.finished()
    if done:
        log.info("%s: finished by an earlier attempt of %s", model, version)
        return done
    smallest = min(shard_train_rows(p, params.validation_fraction) for p in parts)
    batch, steps_per_epoch = fitted_batch(hp["batch_size"], smallest)
    if batch < hp["batch_size"]:
        log.info("%s: batch %d per worker instead of %d, so that an epoch has at least %d steps on %d events per worker",
                 model, batch, hp["batch_size"], MIN_STEPS_PER_EPOCH, smallest)
    hp = hp | {"batch_size": batch}
    spec = WorkerSpec(
        model=model,
        hyperparameters=hp,
        data_root=store.root,
        scratch=checkpoints.directory,
        shards=[[g.to_dict() for g in p] for p in parts],
        workers=params.workers,
        threads=distributor.threads,
        epochs=params.epochs,
        steps_per_epoch=steps_per_epoch,
        patience=params.patience,
        validation_fraction=params.validation_fraction,
        max_particles=params.max_particles,
        padding=params.padding,
        bucketing=params.bucketing,
        seed=params.seed,
    )
    log.info(
        "%s: %d workers x %d threads, batch %d per worker, %d steps per epoch, up to %d epochs, inputs %s",
        model, spec.workers, spec.threads, spec.batch_size, spec.steps_per_epoch, spec.epochs, ", ".join(model_inputs(model)),
    )  # fmt: skip
    started = time.perf_counter()
    workers = distributor.run(worker.__name__, spec.to_json())
    digests = {r["weights_sha256"] for r in workers}
    if len(digests) != 1:
        raise TrainingError(f"{model}: the workers ended with different weights ({len(digests)} distinct): gradients were not all-reduced")
    chief = workers[0]
    history = chief["history"]
    cores = spec.workers * spec.threads
    rate, steady = throughput(history, chief["start_epoch"])
    result = {
        "file": posixpath.join(model, MODEL_FILE),
        "hyperparameters": hp,
        "learning_rate_scaled": spec.learning_rate,
        "global_batch": spec.global_batch,
        "steps_per_epoch": spec.steps_per_epoch,
        "epochs": chief["epochs"],
        "best_epoch": chief["best_epoch"],
        "best_val_loss": chief["best_val_loss"],
        "stopped_early": chief["stopped_early"],
        "resumed_from_epoch": chief["start_epoch"],
        "parameters": chief["parameters"],
        "history": history,
        "worker_weights_sha256": [r["weights_sha256"] for r in workers],
        "saved_weights_sha256": chief["best_weights_sha256"],
        "train_seconds": sum(history["seconds"][chief["start_epoch"]:]),
        "wall_seconds": time.perf_counter() - started,
        "cores": cores,
        "events_per_second": rate,
        "steady_events_per_second": steady,
        "steady_events_per_second_per_core": steady / cores,
        "padding": spec.padding,
    }
    checkpoints.finish(result)
    log.info("%s: %d epochs (best %d), %.0f events/s after the first epoch (%.0f per core)",
             model, result["epochs"], result["best_epoch"], steady, steady / cores)
    return result


def throughput(history: dict[str, list[float]], start_epoch: int) -> tuple[float, float]:
    """Training events per second over this attempt's epochs: all of them, and without the first
    (which also traces and compiles the step functions) when there are several.

    >>> throughput({"train_events": [100, 100, 100], "seconds": [10, 1, 1]}, 0)
    (25.0, 100.0)
    """
    events, seconds = history["train_events"][start_epoch:], history["seconds"][start_epoch:]
    rate = sum(events) / sum(seconds)
    if len(events) > 1:
        events, seconds = events[1:], seconds[1:]
    return rate, sum(events) / sum(seconds)
