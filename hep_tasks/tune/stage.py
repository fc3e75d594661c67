"""The tune stage: an Optuna search per model, its trials run in parallel Spark tasks, one version.

1. Check the prepared version (as train does) and write a seeded subsample of its ``train`` split
   (``subsample_fraction``, by a hash of each event's lineage) into the version's scratch
   directory, once; every trial reads it with the train stage's streaming input.
2. Per model, on the driver: load or create its study (``study.py``), then rounds until
   ``trials`` trials have finished or the model's share of ``time_budget_s`` is spent (every
   model gets at least one round): ask as many trials as there are task slots (or
   ``parallel_trials``), run them as one Spark job of one task each (``rounds.py``), tell the
   results back, upload the journal.
3. Commit the version::

       tune/<version>/best_hyperparameters.json   {model: hyper-parameters}, as train's JSON takes them
       tune/<version>/trials.json                 every trial of every model
       tune/<version>/study.journal               the Optuna studies (optuna.load_study reads it)
       tune/<version>/plots/<model>_{history,importance}.png, report.html
       tune/<version>/_manifest.json              lineage, parameters, best trials, per-model summary

   and return the summary with ``best_hyperparameters`` (the XCom the train task reads).

A failed trial is recorded with its error and the search goes on. When every trial of a model
fails, the stage fails naming the first error, after writing what it completed (trials, plots,
report) under ``tune/_tmp/<version>.scratch/report/``; the study stays there too, so nothing is
lost. A rerun of an interrupted version continues its studies.
"""

from __future__ import annotations

import logging
import os
import posixpath
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hep_tasks.config import TuneParams
from hep_tasks.datasets import DatasetStore, code_version, summary, version_id
from hep_tasks.errors import PipelineError
from hep_tasks.processes import LABELS, PROCESS_OF_LABEL
from hep_tasks.sparkjob import collect_small, task_slots
from hep_tasks.train.hyperparameters import MODELS, resolve
from hep_tasks.train.inputs import catalogue, shard_train_rows
from hep_tasks.train.stage import check_schema, checked_source
from hep_tasks.tune.rounds import run_round
from hep_tasks.tune.space import ModelSpace, parse_space, space_to_json, suggest
from hep_tasks.tune.study import JOURNAL, counted, journal, open_study, pruning_thresholds, recover_interrupted, storage, tell
from hep_tasks.tune.trial import TrialSpec, run_trial

if TYPE_CHECKING:
    import optuna
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

STAGE = "tune"
SOURCE = "prepare"
BEST_FILE = "best_hyperparameters.json"
TRIALS_FILE = "trials.json"
REPORT_FILE = "report.html"
#: Rows per Parquet row group of the subsample (the unit a trial's input pools and shuffles).
SUBSAMPLE_ROWS_PER_GROUP = 512


class TuneError(PipelineError):
    """The search produced no usable result for a model; the message names the first error."""


@dataclass(frozen=True)
class Subsample:
    """The trials' data: row groups of the subsample, its events per class, training events."""

    groups: list[dict[str, Any]]
    counts: dict[str, int]
    train_events: int


def run(
    spark: SparkSession, store: DatasetStore, params: TuneParams, trial_function: Callable[[TrialSpec], dict[str, Any]] = run_trial
) -> dict[str, Any]:
    """Search ``params.models`` on a checked prepared version; the version summary with the best
    hyper-parameters. ``trial_function`` runs one trial in a Spark task (tests replace it)."""
    source = checked_source(store, params.input)
    spaces = parse_space(params.search_space)
    version = version_id(STAGE, {SOURCE: source}, params.to_dict(), code_version(__name__))
    if store.exists(STAGE, version):
        log.info("tune version %s already exists: nothing to do", version)
        return result_summary(store, store.read_manifest(STAGE, version))

    train_dir = store.path(SOURCE, source, "train")
    groups = catalogue(store.fs, train_dir)
    check_schema(store, groups[0].path if groups else train_dir)
    slots = task_slots(spark)
    parallel = params.parallel_trials or slots
    if parallel > slots:
        log.warning("tune.parallel_trials=%d is above the application's %d task slots: the extra trials of a round wait", parallel, slots)
    threads = int(spark.sparkContext.getConf().get("spark.task.cpus", "1"))
    data = subsample(spark, store, source, version, params)
    attempt = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    deadline = started + params.time_budget_s
    log.info("tune %s on %s: models %s, %d trials each, %d per round (%d task slots), budget %d s, subsample %s",
             version, source, ",".join(params.models), params.trials, parallel, slots, params.time_budget_s, data.counts)

    searches: dict[str, dict[str, Any]] = {}
    with journal(store, store.scratch(STAGE, version, JOURNAL)) as journal_file:
        studies = storage(journal_file.local)
        for i, model in enumerate(params.models):
            now = time.monotonic()
            model_deadline = now + max(0.0, deadline - now) / (len(params.models) - i)
            study = open_study(studies, model, seed=params.seed + MODELS.index(model), trials=params.trials, parallel=parallel)
            searches[model] = search(
                spark, store, study, spaces[model], data, params, parallel=parallel, threads=threads,
                deadline=model_deadline, attempt=attempt, trial_function=trial_function, sync=journal_file.sync,
            )  # fmt: skip
        outcome = summarise(studies, spaces, params.models, searches)
        run_info = {
            "tune version": version, "prepare version": source, "attempt": attempt, "task slots": slots,
            "trials per round": parallel, "subsample events": data.counts, "parameters": params.to_dict(),
            "wall_s": time.monotonic() - started,
        }  # fmt: skip
        failed = [m for m in params.models if not outcome["models"][m].get("best")]
        if failed:
            where = store.scratch(STAGE, version, "report")
            write_outputs(store, where, outcome, run_info, version)
            first = failed[0]
            raise TuneError(
                f"no trial of model {first} completed ({len(outcome['trials'][first])} trials); the first error: "
                f"{first_error(outcome['trials'][first])}. What completed is in {store.url(STAGE, '_tmp', f'{version}.scratch', 'report')}"
            )
        journal_file.sync()
        with store.begin(STAGE, version) as pending:
            write_outputs(store, pending.path, outcome, run_info, version)
            store.fs.copy(store.scratch(STAGE, version, JOURNAL), posixpath.join(pending.path, JOURNAL))
            from hep_tasks.sparkjob import file_checksums

            manifest = pending.commit(
                {
                    "inputs": {SOURCE: source},
                    "parameters": params.to_dict(),
                    "code_version": code_version(__name__),
                    "counts": {"subsample": data.counts, "trials": outcome["states"]},
                    "best_hyperparameters": outcome["best_hyperparameters"],
                    "models": outcome["models"],
                    "task_slots": slots,
                    "trials_per_round": parallel,
                    "attempts": outcome["attempts"],
                    "wall_seconds": time.monotonic() - started,
                    "files": file_checksums(spark, pending.url),
                }
            )
    store.fs.rm(store.scratch(STAGE, version), recursive=True)
    return result_summary(store, manifest)


def result_summary(store: DatasetStore, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The version summary plus the best hyper-parameters per model (the XCom train reads)."""
    return summary(store, manifest) | {"best_hyperparameters": manifest["best_hyperparameters"]}


def subsample(spark: SparkSession, store: DatasetStore, source: str, version: str, params: TuneParams) -> Subsample:
    """The seeded subsample of the train split in the version's scratch directory (written once)."""
    from pyspark.sql import functions as F

    path = store.scratch(STAGE, version, "subsample")
    url = store.url(STAGE, "_tmp", f"{version}.scratch", "subsample")
    if not store.fs.exists(posixpath.join(path, "_SUCCESS")):
        events = spark.read.parquet(store.url(SOURCE, source, "train"))
        if params.subsample_fraction < 1.0:
            buckets = 1 << 24
            u = F.pmod(F.xxhash64("source_file", "entry", F.lit(params.seed), F.lit("tune")), F.lit(buckets)) / F.lit(buckets)
            events = events.filter(u < F.lit(params.subsample_fraction))
        spark.sparkContext.setJobDescription(f"tune: subsample {params.subsample_fraction:g} of {source} train")
        events.write.mode("overwrite").option("parquet.block.row.count.limit", SUBSAMPLE_ROWS_PER_GROUP).parquet(url)
        spark.sparkContext.setJobDescription(None)
    counts = dict.fromkeys(LABELS, 0)
    for row in collect_small(spark.read.parquet(url).groupBy("label").count(), len(LABELS)):
        counts[PROCESS_OF_LABEL[row["label"]]] = int(row["count"])
    groups = catalogue(store.fs, path)
    train_events = shard_train_rows(groups, params.validation_fraction)
    if not groups or train_events < 1:
        raise TuneError(
            f"the subsample of {SOURCE} version {source} ({params.subsample_fraction:g} of its train split) has "
            f"{sum(counts.values())} events, too few to tune on: raise tune.subsample_fraction"
        )
    return Subsample([g.to_dict() for g in groups], counts, train_events)


def search(
    spark: SparkSession,
    store: DatasetStore,
    study: optuna.Study,
    space: ModelSpace,
    data: Subsample,
    params: TuneParams,
    *,
    parallel: int,
    threads: int,
    deadline: float,
    attempt: str,
    trial_function: Callable[[TrialSpec], dict[str, Any]],
    sync: Callable[[], None],
) -> dict[str, Any]:
    """Rounds of trials of one model until its trials are done or its time is spent."""
    model = study.study_name
    recover_interrupted(study)
    earlier = len(counted(study.get_trials(deepcopy=False)))
    if earlier:
        log.info("%s: the study continues with %d trials finished by earlier attempts", model, earlier)
    rounds, started, stopped_by = 0, time.monotonic(), "trials"
    while True:
        left = params.trials - len(counted(study.get_trials(deepcopy=False)))
        if left <= 0:
            break
        if rounds and time.monotonic() >= deadline:
            stopped_by = "time_budget"
            log.info("%s: time budget spent after %d rounds, %d trials left undone", model, rounds, left)
            break
        thresholds = pruning_thresholds(study, params.epochs) if params.pruning else []
        asked = []
        for _ in range(min(parallel, left)):
            trial = study.ask()
            values = suggest(trial, space)
            trial.set_user_attr("attempt", attempt)
            trial.set_user_attr("round", rounds)
            asked.append((trial, resolve(model, {model: values})))
        specs = [
            TrialSpec(model=model, number=trial.number, hyperparameters=hp, data_root=store.root, groups=data.groups,
                      train_events=data.train_events, epochs=params.epochs, validation_fraction=params.validation_fraction,
                      seed=params.seed, thresholds=thresholds, threads=threads)
            for trial, hp in asked
        ]  # fmt: skip
        results = run_round(spark, specs, trial_function, f"tune {model}: trials {', '.join(str(s.number) for s in specs)}")
        for (trial, hp), result in zip(asked, results):
            attrs = {k: v for k, v in result.items() if k not in ("state", "value", "model", "number")}
            state = tell(study, trial, result, attrs | {"hyperparameters": hp})
            log.info(
                "%s trial %d %s: val_loss %s, val AUC %s, %s epochs, %.1f s on %s%s", model, trial.number, state,
                _fmt(result.get("value")), _fmt(result.get("val_auc")), result.get("epochs_run", "-"),
                result.get("duration_s") or 0.0, result.get("executor", "?"), f" ({result['error']})" if result.get("error") else "",
            )  # fmt: skip
        sync()
        rounds += 1
    return {"rounds": rounds, "stopped_by": stopped_by, "search_seconds": time.monotonic() - started}


def summarise(
    studies: Any, spaces: Mapping[str, ModelSpace], models: tuple[str, ...], searches: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Trials, best trials, importances and per-model figures of the finished searches."""
    import optuna

    from hep_tasks.tune.report import importances, trial_records

    out: dict[str, Any] = {"trials": {}, "models": {}, "best_hyperparameters": {}, "states": {}, "attempts": []}
    for model in models:
        study = optuna.load_study(study_name=model, storage=studies)
        records = trial_records(study, spaces[model])
        out["trials"][model] = records
        states: dict[str, int] = {}
        for r in records:
            states[r["state"]] = states.get(r["state"], 0) + 1
            out["states"][r["state"]] = out["states"].get(r["state"], 0) + 1
            if r.get("attempt") and r["attempt"] not in out["attempts"]:
                out["attempts"].append(r["attempt"])
        timed = [r for r in records if r.get("started_at") and r.get("ended_at")]
        span = (max(r["ended_at"] for r in timed) - min(r["started_at"] for r in timed)) if timed else 0.0
        info: dict[str, Any] = {
            "trials": states,
            **searches[model],
            "trial_seconds": sum(r.get("duration_s") or 0.0 for r in records),
            "trials_per_minute": round(60.0 * len(timed) / span, 3) if span else None,
            "search_space": space_to_json(spaces[model]),
            "importances": importances(study),
        }
        complete = [r for r in records if r["state"] == "complete"]
        if complete:
            best = min(complete, key=lambda r: r["val_loss"])
            info["best"] = {"trial": best["number"], "val_loss": best["val_loss"], "val_auc": best.get("val_auc"),
                            "params": best["params"], "best_epoch": best.get("best_epoch")}  # fmt: skip
            out["best_hyperparameters"][model] = best["hyperparameters"]
            info["best_hyperparameters"] = best["hyperparameters"]
        out["models"][model] = info
    return out


def write_outputs(store: DatasetStore, directory: str, outcome: Mapping[str, Any], run_info: Mapping[str, Any], version: str) -> None:
    """trials.json, best_hyperparameters.json, plots/ and report.html into ``directory`` (a store path)."""
    import json

    from hep_tasks.tune.report import plot_history, plot_importances, render_report

    with tempfile.TemporaryDirectory(prefix="hep-tune-report-") as tmp:
        os.makedirs(os.path.join(tmp, "plots"))
        plots = {}
        for model, records in outcome["trials"].items():
            plots[model] = [
                plot_history(model, records, os.path.join(tmp, "plots", f"{model}_history.png")),
                plot_importances(model, outcome["models"][model].get("importances"), os.path.join(tmp, "plots", f"{model}_importance.png")),
            ]
        with open(os.path.join(tmp, TRIALS_FILE), "w") as f:
            json.dump(outcome["trials"], f, indent=1, sort_keys=True)
        with open(os.path.join(tmp, BEST_FILE), "w") as f:
            json.dump(outcome["best_hyperparameters"], f, indent=2, sort_keys=True)
        page = render_report(title=f"Hyper-parameter search {version}", run_info=run_info, models=outcome["models"],
                             trials=outcome["trials"], plots=plots)  # fmt: skip
        with open(os.path.join(tmp, REPORT_FILE), "w") as f:
            f.write(page)
        store.fs.makedirs(posixpath.join(directory, "plots"), exist_ok=True)
        for root, _, files in os.walk(tmp):
            for name in files:
                local = os.path.join(root, name)
                store.fs.put_file(local, posixpath.join(directory, os.path.relpath(local, tmp)))
    log.info("wrote the tune report to %s", directory)


def first_error(records: list[Mapping[str, Any]]) -> str:
    """The first recorded error among ``records`` (trial number and message)."""
    for r in records:
        if r.get("error"):
            return f"trial {r['number']}: {r['error']}"
    states = sorted({r["state"] for r in records})
    return f"none recorded (states: {', '.join(states) or 'no trials'})"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
