"""A real Spark standalone cluster on 127.0.0.1, as `make spark-cluster` starts it: a master and two
1-core workers, each its own JVM. Ingest and data-parallel training run on it through spark-submit,
with hep_tasks shipped as --py-files as a remote cluster needs, and the applications' event logs
show tasks on both workers. Also: the operator ships the code only when the master is a cluster."""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import urllib.request
import zipfile
from pathlib import Path

import pytest

import hep_tasks
from hep_tasks.config import PrepareParams
from hep_tasks.datasets import DatasetStore
from hep_tasks.localenv import REPO
from hep_tasks.services import pack_code, start_spark_cluster, stop_spark_cluster

ENTRY = str(Path(hep_tasks.__file__).parent / "__main__.py")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A master and two workers (1 core, 2 GiB each) on free ports; stopped afterwards, also on failure."""
    env = dict(os.environ, HEP_SPARK_CLUSTER_HOME=str(tmp_path_factory.mktemp("spark-cluster")))
    port, webui, *workers = _free_ports(4)
    try:
        yield start_spark_cluster(env, port=port, webui_port=webui, workers=2, cores=1, memory="2g", worker_webui_ports=workers)
    finally:
        stop_spark_cluster(env)


def _submit(master: str, events: Path, data_root: Path, *args: str) -> dict:
    cmd = [
        "spark-submit", "--master", master, "--py-files", str(pack_code()),
        "--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={events.as_uri()}",
        "--conf", "spark.eventLog.compress=false", "--conf", "spark.ui.enabled=false",
        ENTRY, *args, "--data-root", str(data_root),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def _applications(events: Path) -> dict[str, dict]:
    """Per application name: its executors' worker (web UI address) and the tasks each executor ran.

    ``barrier_tasks`` counts only tasks of barrier stages (the training workers)."""
    apps = {}
    for path in sorted(p for p in events.rglob("*") if p.is_file() and not p.name.startswith(".")):
        app = {"workers": {}, "tasks": collections.Counter(), "barrier_tasks": collections.Counter()}
        barrier_stages, name = set(), None
        for line in path.read_text().splitlines():
            event = json.loads(line)
            kind = event["Event"]
            if kind == "SparkListenerApplicationStart":
                name = event["App Name"]
            elif kind == "SparkListenerExecutorAdded":
                log_url = event["Executor Info"]["Log Urls"]["stderr"]
                app["workers"][event["Executor ID"]] = log_url.split("/logPage")[0]
            elif kind == "SparkListenerStageSubmitted":
                if any(rdd.get("Barrier") for rdd in event["Stage Info"]["RDD Info"]):
                    barrier_stages.add(event["Stage Info"]["Stage ID"])
            elif kind == "SparkListenerTaskEnd" and event["Task End Reason"]["Reason"] == "Success":
                executor = event["Task Info"]["Executor ID"]
                app["tasks"][executor] += 1
                if event["Stage ID"] in barrier_stages:
                    app["barrier_tasks"][executor] += 1
        if name:
            apps[name] = app
    return apps


@pytest.mark.slow
def test_ingest_and_training_run_on_both_workers(cluster, tmp_path, sample_files, spark):
    with urllib.request.urlopen(f"{cluster['webui']}/json/", timeout=10) as response:
        status = json.loads(response.read())
    alive = [w for w in status["workers"] if w["state"] == "ALIVE"]
    assert sorted(w["webuiaddress"] for w in alive) == sorted(cluster["workers"]) and [w["cores"] for w in alive] == [1, 1]

    data, events = tmp_path / "data", tmp_path / "events"
    events.mkdir()
    spec = ",".join(f"{p}={path}" for p, path in sample_files.items())
    ingested = _submit(cluster["master"], events, data, "ingest", "--input", spec, "--input-roots", str(Path(__file__).parent / "data"), "--entries-per-split", "20")
    assert ingested["rows"]["total"] > 0

    # prepare in this process (local[2]); its checks have their own tests, so mark both versions checked
    from hep_tasks.prepare import stage as prepare

    store = DatasetStore(str(data))
    store.update_manifest("ingest", ingested["version"], quality={"status": "passed"})
    params = PrepareParams.from_values({"input": ingested["version"], "files_per_split": 2, "rows_per_row_group": 32}, env={})
    prepared = prepare.run(spark, store, params)["version"]
    store.update_manifest("prepare", prepared, quality={"status": "passed"})

    args = ["train", "--input", prepared, "--models", "hlf", "--epochs", "1", "--workers", "2", "--batch-size", "16"]
    trained = _submit(cluster["master"], events, data, *args)
    model = store.read_manifest("train", trained["version"])["models"]["hlf"]
    assert len(model["worker_weights_sha256"]) == 2 and len(set(model["worker_weights_sha256"])) == 1

    apps = _applications(events)
    both = set(cluster["workers"])
    ingest_app, train_app = apps["hep-ingest"], apps["hep-train"]
    assert {ingest_app["workers"][e] for e in ingest_app["tasks"]} == both, ingest_app
    # the training barrier stage: one TensorFlow worker per Spark worker
    assert {train_app["workers"][e] for e in train_app["barrier_tasks"]} == both, train_app
    assert sorted(train_app["barrier_tasks"].values()) == [1, 1]


def test_the_operator_ships_the_code_only_to_a_cluster(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "plugins"))
    from hep_airflow.operators import HepStageOperator

    def operator(master: str) -> HepStageOperator:
        conn = {"conn_type": "spark", "host": master, "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"}}
        monkeypatch.setenv("AIRFLOW_CONN_HEP_SPARK", json.dumps(conn))
        op = HepStageOperator(task_id="ingest", stage="ingest")
        op._ship_code_to_cluster()
        return op

    assert operator("local[2]").py_files is None
    monkeypatch.delenv("HEP_SPARK_ENV_ARCHIVE", raising=False)
    shipped = operator("spark://master:7077")
    with zipfile.ZipFile(shipped.py_files) as archive:
        names = set(archive.namelist())
    assert {"hep_tasks/__init__.py", "hep_tasks/__main__.py", "hep_tasks/ingest/datasource.py"} <= names
    assert not any("__pycache__" in n for n in names)
    command = shipped._get_hook()._build_spark_submit_command(ENTRY)
    assert command[command.index("--py-files") + 1] == shipped.py_files
    assert pack_code() == Path(shipped.py_files)  # same code, same file

    monkeypatch.setenv("HEP_SPARK_ENV_ARCHIVE", "hdfs:///envs/hep-env.tar.gz")
    packed = operator("yarn")
    command = packed._get_hook()._build_spark_submit_command(ENTRY)
    assert command[command.index("--archives") + 1] == "hdfs:///envs/hep-env.tar.gz#environment"
    assert "spark.pyspark.python=./environment/bin/python" in command
