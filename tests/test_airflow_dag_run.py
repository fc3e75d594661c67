"""The whole DAG under real Airflow: `airflow dags test hep_pipeline` on a throw-away Airflow home
(SQLite) and data root, with every task a real spark-submit job: simulate -> ingest -> check ->
prepare -> check -> train -> evaluate -> check_model. Then the outputs, their quality records,
the report and the `latest` pointers are checked."""

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


def test_dag_runs_end_to_end(tmp_path):
    env = _airflow_env(tmp_path)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    conf = {
        "events_per_file": 60, "files_per_process": 1, "seed": 11, "test_fraction": 0.25, "isolated_leptons_only": True,
        "qcd_redecays": 25, "models": ["hlf", "inclusive"], "epochs": 8, "auc_floors": "*=0.5",
    }  # fmt: skip
    run = subprocess.run(
        [AIRFLOW, "dags", "test", "hep_pipeline", "--conf", json.dumps(conf)],
        env=env, capture_output=True, text=True, timeout=1500,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "state:success" in log or "success" in log.lower()

    store = DatasetStore(env["HEP_DATA_ROOT"])
    sim, ing, pre = (store.latest(s) for s in ("simulate", "ingest", "prepare"))
    assert sim and ing and pre
    sim_manifest = store.read_manifest("simulate", sim)
    assert {p: v["accepted"] for p, v in sim_manifest["processes"].items()} == {"qcd": 60, "ttbar": 60, "wjets": 60}
    ing_manifest = store.read_manifest("ingest", ing)
    assert ing_manifest["inputs"] == {"simulate": sim} and ing_manifest["quality"]["status"] == "passed"
    pre_manifest = store.read_manifest("prepare", pre)
    assert pre_manifest["inputs"] == {"ingest": [ing]} and pre_manifest["quality"]["status"] == "passed"
    # the models: trained on the prepared version, evaluated, published by check_model
    model, evaluation = store.latest("train"), store.latest("evaluate")
    assert model and evaluation
    train_manifest = store.read_manifest("train", model)
    assert train_manifest["inputs"] == {"prepare": pre} and set(train_manifest["models"]) == {"hlf", "inclusive"}
    eva_manifest = store.read_manifest("evaluate", evaluation)
    assert eva_manifest["inputs"]["train"] == model and eva_manifest["quality"]["status"] == "passed"
    metrics = json.loads(Path(store.path("evaluate", evaluation, "metrics.json")).read_text())
    for m in metrics.values():
        assert 0.5 <= m["auc_ttbar_vs_qcd"] <= 1.0 and 0.0 <= m["accuracy"] <= 1.0
    assert "data:image/png;base64," in Path(store.path("evaluate", evaluation, "report.html")).read_text()
    # each stage's task recorded its result for the operator (XCom and Asset-event extra come from these)
    records = [json.loads(p.read_text()) for p in (Path(env["HEP_DATA_ROOT"]) / "_runs").glob("*.json")]
    assert {r["version"] for r in records} == {sim, ing, pre, model, evaluation}
