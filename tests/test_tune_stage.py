"""The tune stage as Airflow runs it (`spark-submit ... tune`) on 2 task slots, its hand-over to
train, an interrupted search that resumes, and bad outcomes (failed and crashed trials, the time
budget, every trial failing).

Small data: the sample files (60 events per process), ingested and prepared once (conftest). The
tests of bad outcomes replace the trial function (no TensorFlow), so they exercise the search
itself: rounds of Spark tasks, ask/tell, what is recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import hep_tasks
from hep_tasks.config import TuneParams
from hep_tasks.datasets import DatasetStore

pytestmark = pytest.mark.slow
ENTRY = str(Path(hep_tasks.__file__).parent / "__main__.py")
# the whole small train split (~100 events), a quarter of it validates; two short epochs per trial
SMALL = ["--models", "hlf", "--epochs", "2", "--subsample-fraction", "1", "--validation-fraction", "0.25"]


def _submit(store: DatasetStore, *args: str, **popen) -> subprocess.Popen:
    cmd = ["spark-submit", "--master", "local[2]", ENTRY, *args, "--data-root", store.root]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ, **popen)


def _finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-4000:]
    return json.loads(out.strip().splitlines()[-1])


def _trials(store: DatasetStore, version: str) -> dict[str, list[dict]]:
    return json.loads(Path(store.path("tune", version, "trials.json")).read_text())


def test_trials_run_in_parallel_and_the_best_reach_the_train_stage(prepared):
    import optuna

    from hep_tasks.tune.study import storage

    store, _, source = prepared
    summary = _finish(_submit(store, "tune", "--input", source, "--trials", "4", *SMALL))
    version = summary["version"]
    manifest = store.read_manifest("tune", version)
    assert manifest["inputs"] == {"prepare": source} and manifest["task_slots"] == 2 and manifest["trials_per_round"] == 2
    trials = _trials(store, version)["hlf"]
    assert len(trials) == 4 and {t["state"] for t in trials} <= {"complete", "pruned"}
    for round_ in (0, 1):  # the two trials of a round ran at the same time, in two Python workers
        a, b = [t for t in trials if t["round"] == round_]
        assert max(a["started_at"], b["started_at"]) < min(a["ended_at"], b["ended_at"]), (a, b)
        assert a["pid"] != b["pid"] and {a["partition"], b["partition"]} == {0, 1}
    for t in trials:
        assert t["executor"] and t["duration_s"] > 0 and t["val_loss"] > 0 and 0 <= t["val_auc"] <= 1
        assert set(t["params"]) == {"units", "dropout", "learning_rate", "batch_size"}
    best = min((t for t in trials if t["state"] == "complete"), key=lambda t: t["val_loss"])
    assert manifest["models"]["hlf"]["best"]["trial"] == best["number"]
    assert summary["best_hyperparameters"] == manifest["best_hyperparameters"] == {"hlf": best["hyperparameters"]}
    assert json.loads(Path(store.path("tune", version, "best_hyperparameters.json")).read_text()) == summary["best_hyperparameters"]
    for name in ("plots/hlf_history.png", "plots/hlf_importance.png"):
        assert store.fs.size(store.path("tune", version, name)) > 1000
    assert "data:image/png;base64," in Path(store.path("tune", version, "report.html")).read_text()
    study = optuna.load_study(study_name="hlf", storage=storage(store.path("tune", version, "study.journal")))
    assert len(study.trials) == 4 and study.best_trial.number == best["number"]
    assert not store.fs.exists(store.scratch("tune", version))  # subsample and journal dropped after the commit

    # train, as the DAG runs it next: the tune version from the tune task's XCom
    trained = _finish(_submit(store, "train", "--input", source, "--tune", version, "--models", "hlf", "--workers", "1",
                              "--epochs", "1"))  # fmt: skip
    train_manifest = store.read_manifest("train", trained["version"])
    assert train_manifest["inputs"] == {"prepare": source, "tune": version}
    assert train_manifest["hyperparameters"]["hlf"] == best["hyperparameters"]
    assert train_manifest["tuned_hyperparameters"] == summary["best_hyperparameters"]


def _completed(journal: Path) -> list:
    import optuna

    from hep_tasks.tune.study import storage

    try:
        study = optuna.load_study(study_name="hlf", storage=storage(str(journal)))
        return [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    except Exception:  # noqa: BLE001 - not created yet, or a line being written
        return []


def test_an_interrupted_search_continues_its_stored_study(prepared):
    store, _, source = prepared
    args = ["tune", "--input", source, "--trials", "4", "--seed", "11", *SMALL]
    started = time.time()
    first = _submit(store, *args, start_new_session=True)
    scratch = Path(store.path("tune", "_tmp"))
    deadline, done = time.monotonic() + 600, []
    while time.monotonic() < deadline and first.poll() is None and len(done) < 2:
        found = [p for p in scratch.glob("*.scratch/study.journal") if p.stat().st_mtime >= started]
        done = _completed(found[0]) if found else []
        time.sleep(0.2)
    assert len(done) >= 2 and first.poll() is None, f"{len(done)} trials completed, search still running: {first.poll() is None}"
    os.killpg(first.pid, signal.SIGKILL)  # spark-submit, its JVM and the Python workers running trials
    first.communicate()
    kept = {t.number: t.value for t in done}

    summary = _finish(_submit(store, *args))
    manifest = store.read_manifest("tune", summary["version"])
    trials = _trials(store, summary["version"])["hlf"]
    assert len(manifest["attempts"]) == 2
    # the trials of the first attempt are still there, with their results: the study was continued
    assert {t["number"]: t["val_loss"] for t in trials if t["number"] in kept} == pytest.approx(kept)
    assert {t["attempt"] for t in trials if t["number"] in kept} == {manifest["attempts"][0]}
    finished = [t for t in trials if t["state"] != "interrupted"]
    assert len(finished) == 4
    assert len([t for t in finished if t["attempt"] == manifest["attempts"][1]]) <= 4 - len(kept)
    for lost in (t for t in trials if t["state"] == "interrupted"):  # a trial cut short is evaluated again
        assert any(t.get("retry_of") == lost["number"] and t["params"] == lost["params"] for t in finished)


def test_failed_and_crashed_trials_are_recorded_and_the_search_goes_on(spark, prepared):
    from hep_tasks.tune import stage as tune

    store, _, source = prepared

    def trial(spec):  # sent to the executors by value
        import os

        if spec.number == 1:
            raise RuntimeError("bad luck in trial 1")
        if spec.number == 3:
            os._exit(3)  # the Python worker dies: the round's Spark job fails
        loss = 0.5 + spec.hyperparameters["dropout"]
        return {"state": "complete", "value": loss, "val_auc": 0.9, "history": {"val_loss": [loss + 0.1, loss]}, "epochs_run": 2}

    params = TuneParams.from_values({"input": source, "models": "hlf", "trials": 4, "subsample_fraction": 0.5}, env={})
    summary = tune.run(spark, store, params, trial_function=trial)
    trials = {t["number"]: t for t in _trials(store, summary["version"])["hlf"]}
    assert {n: t["state"] for n, t in trials.items()} == {0: "complete", 1: "fail", 2: "fail", 3: "fail"}
    assert trials[1]["error"].startswith("RuntimeError: bad luck in trial 1")
    for lost in (2, 3):  # trial 3 killed its Python worker, which failed the round's job, trial 2 with it
        assert trials[lost]["error"].startswith("the Spark task of the trial failed: "), trials[lost]["error"]
    manifest = store.read_manifest("tune", summary["version"])
    assert manifest["models"]["hlf"]["best"]["trial"] == 0 and manifest["counts"]["trials"] == {"complete": 1, "fail": 3}
    assert manifest["counts"]["subsample"]["ttbar"] > 0


def test_the_time_budget_ends_the_search_after_a_round_per_model(spark, prepared):
    from hep_tasks.tune import stage as tune

    store, _, source = prepared

    def trial(spec):
        import time

        time.sleep(1.0)
        return {"state": "complete", "value": spec.hyperparameters["dropout"], "history": {"val_loss": [1.0]}}

    params = TuneParams.from_values({"input": source, "models": "hlf,inclusive", "trials": 10, "time_budget_s": 1}, env={})
    summary = tune.run(spark, store, params, trial_function=trial)
    manifest = store.read_manifest("tune", summary["version"])
    for model in ("hlf", "inclusive"):
        info = manifest["models"][model]
        assert info["stopped_by"] == "time_budget" and info["rounds"] == 1 and info["trials"] == {"complete": 2}
    assert set(summary["best_hyperparameters"]) == {"hlf", "inclusive"}


def test_every_trial_failing_fails_the_stage_naming_the_first_error_and_keeps_what_completed(spark, prepared):
    from hep_tasks.tune import stage as tune

    store, _, source = prepared

    def trial(spec):
        raise ValueError(f"no usable events for trial {spec.number}")

    params = TuneParams.from_values({"input": source, "models": "hlf", "trials": 2, "seed": 5}, env={})
    with pytest.raises(tune.TuneError, match=r"no trial of model hlf completed \(2 trials\); the first error: trial 0: "
                       r"ValueError: no usable events for trial 0.*What completed is in file://.*/report"):  # fmt: skip
        tune.run(spark, store, params, trial_function=trial)
    (report,) = Path(store.path("tune", "_tmp")).glob("*.scratch/report")
    recorded = json.loads((report / "trials.json").read_text())["hlf"]
    assert [t["state"] for t in recorded] == ["fail", "fail"] and "trial 1" in recorded[1]["error"]
    assert (report / "report.html").exists() and (report.parent / "study.journal").exists()
    assert not [v for v in store.versions("tune") if store.read_manifest("tune", v)["parameters"]["seed"] == 5]
    store.fs.rm(str(report.parent), recursive=True)
