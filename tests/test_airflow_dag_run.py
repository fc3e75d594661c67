"""The DAGs under real Airflow (`airflow dags test`, SQLite, throw-away Airflow home and data root),
every task a real spark-submit job: `hep_simulation` makes a batch; `hep_pipeline` ingests it,
checks, prepares, tunes, trains, evaluates, checks the models and publishes; a second
`hep_pipeline` run with nothing new does no Spark work and publishes the same versions; a third,
on a batch whose ingested data was corrupted before its check, stops at `check_ingested` and
publishes nothing. XComs, Asset events and task states are read from Airflow's metadata database."""

from __future__ import annotations

import json
import os
import sqlite3
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


class Metadata:
    """Airflow's metadata database (SQLite here), read as the UI and the REST API read it."""

    def __init__(self, env: dict[str, str]):
        self.path = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")

    def _query(self, sql: str, *args) -> list[tuple]:
        with sqlite3.connect(self.path) as db:
            return db.execute(sql, args).fetchall()

    def last_run(self, dag_id: str) -> tuple[str, str]:
        """(run id, state) of the DAG's newest run."""
        return self._query("SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", dag_id)[0]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, list[str]]:
        """task -> states of its instances (several for a mapped task)."""
        out: dict[str, list[str]] = {}
        rows = self._query("SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ? ORDER BY map_index",
                           dag_id, run_id)  # fmt: skip
        for task, state in rows:
            out.setdefault(task, []).append(state)
        return out

    def xcoms(self, dag_id: str, run_id: str) -> dict[str, list]:
        """task -> its return values, in map-index order."""
        out: dict[str, list] = {}
        rows = self._query("SELECT task_id, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value' "
                           "ORDER BY map_index", dag_id, run_id)  # fmt: skip
        for task, value in rows:
            out.setdefault(task, []).append(_json(value))
        return out

    def asset_events(self, dag_id: str, run_id: str) -> dict[str, dict]:
        """Asset name -> the ``extra`` of the event the run emitted for it."""
        rows = self._query("SELECT a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                           "WHERE e.source_dag_id = ? AND e.source_run_id = ?", dag_id, run_id)  # fmt: skip
        return {name: _json(extra) for name, extra in rows}


def _json(value):
    """A JSON column's value, as SQLite returns it (JSON text; numbers as numbers)."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _records(env: dict[str, str]) -> dict[str, dict]:
    """The run records the stage jobs wrote for the operator (XCom and Asset extras come from them)."""
    return {p.stem: json.loads(p.read_text()) for p in (Path(env["HEP_DATA_ROOT"]) / "_runs").glob("*.json")}


def test_a_simulated_batch_flows_through_the_pipeline_and_a_rerun_does_nothing(tmp_path):
    env = _airflow_env(tmp_path)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    store = DatasetStore(env["HEP_DATA_ROOT"])

    metadata = Metadata(env)
    _dags_test(env, "hep_simulation", {"events_per_file": 120, "files_per_process": 1, "seed": 11, "qcd_redecays": 25})
    sim = store.latest("simulate")
    assert {p: v["accepted"] for p, v in store.read_manifest("simulate", sim)["processes"].items()} == {"qcd": 120, "ttbar": 120, "wjets": 120}
    sim_run, state = metadata.last_run("hep_simulation")
    announced = metadata.asset_events("hep_simulation", sim_run)["hep_simulated_events"]
    assert state == "success" and announced["version"] == sim and announced["rows"]["total"] == 360
    assert metadata.xcoms("hep_simulation", sim_run)["simulate"][0]["version"] == sim

    # ~90 training events per class, one small model (test_train_stage trains the sequence models):
    # the search space keeps learning rates that learn in 20 epochs of 8 small batches (the default
    # space starts lower, for full-size sets), so the model gate is not at the mercy of two random trials
    space = {"hlf": {"learning_rate": {"low": 0.02, "high": 0.05, "log": True}}}
    conf = {
        "simulation_versions": [sim], "test_fraction": 0.25, "models": ["hlf"], "epochs": 20,
        "auc_floors": "hlf=0.7", "tune_trials": 2, "tune_epochs": 2, "tune_subsample_fraction": 1.0,
        "search_space": json.dumps(space),
    }  # fmt: skip
    _dags_test(env, "hep_pipeline", conf)

    # publish moved every pointer to this run's versions, all checked
    ing, pre, model, evaluation = (store.latest(s) for s in ("ingest", "prepare", "train", "evaluate"))
    assert store.read_manifest("ingest", ing)["inputs"] == {"simulate": sim}
    assert store.read_manifest("prepare", pre)["inputs"] == {"ingest": [ing]}
    train = store.read_manifest("train", model)
    tune = store.versions("tune")[-1]
    assert train["inputs"] == {"prepare": pre, "tune": tune} and set(train["models"]) == {"hlf"}
    best = store.read_manifest("tune", tune)["best_hyperparameters"]
    assert train["hyperparameters"]["hlf"] == best["hlf"]  # tuned, in the same run
    for stage, version in (("ingest", ing), ("prepare", pre), ("train", model), ("evaluate", evaluation)):
        assert store.read_manifest(stage, version)["quality"]["status"] == "passed", stage
    metrics = json.loads(Path(store.path("evaluate", evaluation, "metrics.json")).read_text())
    assert set(metrics) == {"hlf"} and 0.7 <= metrics["hlf"]["auc_ttbar_vs_qcd"] <= 1.0
    assert 0.0 <= metrics["hlf"]["accuracy"] <= 1.0
    assert "data:image/png;base64," in Path(store.path("evaluate", evaluation, "report.html")).read_text()
    assert model in Path(store.path("index.html")).read_text()
    first = _records(env)
    assert {r.get("version") for r in first.values()} >= {sim, ing, pre, tune, model, evaluation}

    # what Airflow recorded: every task succeeded, each stage's XCom is its version, and publish
    # emitted the four Asset events with the versions in their extra
    run, state = metadata.last_run("hep_pipeline")
    assert state == "success", metadata.task_states("hep_pipeline", run)
    assert all(s == ["success"] for t, s in metadata.task_states("hep_pipeline", run).items()), metadata.task_states("hep_pipeline", run)
    xcoms = metadata.xcoms("hep_pipeline", run)
    assert [item["input"] for item in xcoms["new_inputs"][0]] == [sim]
    assert [x["version"] for x in xcoms["ingest"]] == [ing] and xcoms["check_ingested"][0]["quality"] == "passed"
    assert {t: xcoms[t][0]["version"] for t in ("prepare", "tune", "train", "evaluate")} == {
        "prepare": pre, "tune": tune, "train": model, "evaluate": evaluation}
    events = metadata.asset_events("hep_pipeline", run)
    assert [v["version"] for v in events["hep_ingested_events"]["versions"]] == [ing]
    assert {name: events[name]["version"] for name in ("hep_prepared_datasets", "hep_models", "hep_evaluation_reports")} == {
        "hep_prepared_datasets": pre, "hep_models": model, "hep_evaluation_reports": evaluation}

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

    # bad data between stages: a second batch is ingested, then one HLF value of its Parquet turns
    # NaN before the pipeline checks it; the run stops at check_ingested and publishes nothing
    _dags_test(env, "hep_simulation", {"events_per_file": 20, "files_per_process": 1, "seed": 12, "qcd_redecays": 25})
    sim2 = store.latest("simulate")
    ingest = subprocess.run([sys.executable, "-m", "hep_tasks", "ingest", "--input", sim2, "--data-root", env["HEP_DATA_ROOT"]],
                            env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    [corrupted] = set(store.versions("ingest")) - {ing}
    _put_nan_in_an_hlf_value(Path(store.path("ingest", corrupted, "events")))
    index = Path(store.path("index.html")).read_text()
    run = subprocess.run([AIRFLOW, "dags", "test", "hep_pipeline", "--conf", json.dumps(conf | {"simulation_versions": [sim2]})],
                         env=env, capture_output=True, text=True, timeout=1500)  # fmt: skip
    bad_run, state = metadata.last_run("hep_pipeline")
    states = metadata.task_states("hep_pipeline", bad_run)
    assert state == "failed" and states["ingest"] == ["success"] and states["check_ingested"] == ["failed"], states
    assert all(s == ["upstream_failed"] for t, s in states.items() if t in ("prepare", "train", "evaluate", "publish")), states
    assert "hlf: elements are finite" in run.stdout + run.stderr  # the failed expectation, in the task log
    assert store.read_manifest("ingest", corrupted)["quality"]["status"] == "failed"
    assert [store.latest(s) for s in ("ingest", "prepare", "train", "evaluate")] == [ing, pre, model, evaluation]
    assert metadata.asset_events("hep_pipeline", bad_run) == {} and Path(store.path("index.html")).read_text() == index


def _put_nan_in_an_hlf_value(events: Path) -> None:
    """Rewrite the first Parquet file of ``events`` with HLF value 0 of its first event NaN."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    part = sorted(events.glob("*.parquet"))[0]
    table = pq.read_table(part)
    hlf = table.column("hlf").to_pylist()
    hlf[0][0] = float("nan")
    table = table.set_column(table.schema.get_field_index("hlf"), "hlf", pa.array(hlf, type=table.schema.field("hlf").type))
    pq.write_table(table, part)
    (part.parent / f".{part.name}.crc").unlink(missing_ok=True)  # Hadoop's checksum of the old bytes
