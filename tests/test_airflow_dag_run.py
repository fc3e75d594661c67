"""The DAGs under real Airflow (`airflow dags test`, SQLite, throw-away Airflow home and data root),
every task a real spark-submit job: `hep_simulation` makes a batch; `hep_pipeline` ingests it,
checks, prepares, tunes, trains, evaluates, checks the models and publishes; a second
`hep_pipeline` run with nothing new does no Spark work and publishes the same versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hep_tasks.datasets import DatasetStore
from hep_tasks.localenv import local_environment

pytestmark = pytest.mark.slow
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def _airflow_env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "HEP_DATA_ROOT"))}
    return local_environment(base=base | {"AIRFLOW_HOME": str(tmp_path / "airflow"), "HEP_DATA_ROOT": str(tmp_path / "data")})


def _dags_test(env: dict[str, str], dag_id: str, conf: dict) -> str:
    run = subprocess.run([AIRFLOW, "dags", "test", dag_id, "--conf", json.dumps(conf)],
                         env=env, capture_output=True, text=True, timeout=1500)  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "state=failed" not in log.replace(" ", ""), log[-5000:]
    return log


def _records(env: dict[str, str]) -> dict[str, dict]:
    """The run records the stage jobs wrote for the operator (XCom and Asset extras come from them)."""
    return {p.stem: json.loads(p.read_text()) for p in (Path(env["HEP_DATA_ROOT"]) / "_runs").glob("*.json")}


def test_a_simulated_batch_flows_through_the_pipeline_and_a_rerun_does_nothing(tmp_path):
    env = _airflow_env(tmp_path)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    store = DatasetStore(env["HEP_DATA_ROOT"])

    _dags_test(env, "hep_simulation", {"events_per_file": 120, "files_per_process": 1, "seed": 11, "qcd_redecays": 25})
    sim = store.latest("simulate")
    assert {p: v["accepted"] for p, v in store.read_manifest("simulate", sim)["processes"].items()} == {"qcd": 120, "ttbar": 120, "wjets": 120}

    # ~90 training events per class: the search space keeps learning rates that learn in 20 epochs of
    # 8 small batches (the default space starts lower, for full-size sets), so the model gate is not
    # at the mercy of two random trials; the floor on the sequence model is 0 for the same reason
    space = {m: {"learning_rate": {"low": 0.02, "high": 0.05, "log": True}} for m in ("hlf", "inclusive")}
    conf = {
        "simulation_versions": [sim], "test_fraction": 0.25, "models": ["hlf", "inclusive"], "epochs": 20,
        "auc_floors": "hlf=0.7,*=0", "tune_trials": 2, "tune_epochs": 2, "tune_subsample_fraction": 1.0,
        "search_space": json.dumps(space),
    }  # fmt: skip
    _dags_test(env, "hep_pipeline", conf)

    # publish moved every pointer to this run's versions, all checked
    ing, pre, model, evaluation = (store.latest(s) for s in ("ingest", "prepare", "train", "evaluate"))
    assert store.read_manifest("ingest", ing)["inputs"] == {"simulate": sim}
    assert store.read_manifest("prepare", pre)["inputs"] == {"ingest": [ing]}
    train = store.read_manifest("train", model)
    tune = store.versions("tune")[-1]
    assert train["inputs"] == {"prepare": pre, "tune": tune} and set(train["models"]) == {"hlf", "inclusive"}
    best = store.read_manifest("tune", tune)["best_hyperparameters"]
    assert all(train["hyperparameters"][m] == best[m] for m in ("hlf", "inclusive"))  # tuned, in the same run
    for stage, version in (("ingest", ing), ("prepare", pre), ("train", model), ("evaluate", evaluation)):
        assert store.read_manifest(stage, version)["quality"]["status"] == "passed", stage
    metrics = json.loads(Path(store.path("evaluate", evaluation, "metrics.json")).read_text())
    assert set(metrics) == {"hlf", "inclusive"} and metrics["hlf"]["auc_ttbar_vs_qcd"] >= 0.7
    for m in metrics.values():
        assert 0.0 <= m["auc_ttbar_vs_qcd"] <= 1.0 and 0.0 <= m["accuracy"] <= 1.0
    assert "data:image/png;base64," in Path(store.path("evaluate", evaluation, "report.html")).read_text()
    assert model in Path(store.path("index.html")).read_text()
    first = _records(env)
    assert {r.get("version") for r in first.values()} >= {sim, ing, pre, tune, model, evaluation}

    # nothing new: no ingest, every other stage finds its version and starts no Spark work
    log = _dags_test(env, "hep_pipeline", {k: v for k, v in conf.items() if k != "simulation_versions"})
    second = {k: r for k, r in _records(env).items() if k not in first}
    # record keys: <dag>__<run id, ending in the UTC offset _00_00>__<task>[__<map index>]__<try>
    by_task = {key.split("_00_00__", 1)[1].split("__")[0]: r for key, r in second.items()}
    assert set(by_task) == {"check_prepared", "prepare", "tune", "train", "evaluate", "check_model"}
    assert "ingest" not in by_task
    assert {t: r["version"] for t, r in by_task.items() if t in ("prepare", "tune", "train", "evaluate")} == {
        "prepare": pre, "tune": tune, "train": model, "evaluate": evaluation}
    assert all(r.get("spark_work") is False for t, r in by_task.items() if t in ("prepare", "tune", "train", "evaluate"))
    assert "nothing new" in log
    assert [store.latest(s) for s in ("ingest", "prepare", "train", "evaluate")] == [ing, pre, model, evaluation]
