"""Training as Airflow runs it (`spark-submit ... train`), then evaluate, check_model and score.

Small data: the sample files (60 events per process), ingested and prepared once (conftest).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import hep_tasks
from hep_tasks.config import EvaluateParams, QualityParams, ScoreParams, TrainParams
from hep_tasks.datasets import DatasetError, DatasetStore
from hep_tasks.errors import PipelineError

pytestmark = pytest.mark.slow
ENTRY = str(Path(hep_tasks.__file__).parent / "__main__.py")
# small batches so that even this small train split gives several steps per epoch
TRAIN_ARGS = ["--workers", "2", "--batch-size", "16", "--learning-rate", "0.05", "--patience", "0"]


def _submit(store: DatasetStore, *args: str, master: str = "local[2]", **popen) -> subprocess.Popen:
    cmd = ["spark-submit", "--master", master, ENTRY, *args, "--data-root", store.root]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ, **popen)


def _finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-4000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(prepared):
    store, _, source = prepared
    summary = _finish(_submit(store, "train", "--input", source, "--epochs", "3", *TRAIN_ARGS))
    return store, summary["version"]


def test_each_model_trains_on_two_workers_with_all_reduced_gradients(trained, prepared):
    store, version = trained
    manifest = store.read_manifest("train", version)
    assert manifest["inputs"] == {"prepare": prepared[2]} and manifest["workers"] == 2
    for name in ("hlf", "particle_sequence", "inclusive"):
        model = manifest["models"][name]
        history = model["history"]
        assert model["epochs"] == 3 and len(history["loss"]) == 3
        assert history["loss"][-1] < history["loss"][0], f"{name}: the training loss did not fall: {history['loss']}"
        # both workers end with identical weights: gradients were all-reduced every step
        assert len(model["worker_weights_sha256"]) == 2 and len(set(model["worker_weights_sha256"])) == 1
        assert history["validation_events"][0] > 0 and model["steady_events_per_second"] > 0
        assert store.fs.exists(store.path("train", version, model["file"]))
    assert store.fs.exists(store.path("train", version, "scalers.json"))
    assert not store.fs.exists(store.scratch("train", version))  # checkpoints dropped after the commit


def test_evaluate_report_check_model_and_a_reloaded_model_predicting_the_same(spark, trained, tmp_path):
    from hep_tasks.evaluate import stage as evaluate
    from hep_tasks.quality import stage as quality

    store, version = trained
    result = evaluate.run(spark, store, EvaluateParams.from_values({"input": version}, env={}))
    manifest = store.read_manifest("evaluate", result["version"])
    assert store.fs.exists(store.path("evaluate", result["version"], "report.html"))
    metrics = json.loads(Path(store.path("evaluate", result["version"], "metrics.json")).read_text())
    assert set(metrics) == {"hlf", "particle_sequence", "inclusive"}
    for m in metrics.values():
        values = [m["auc_ttbar_vs_qcd"], m["accuracy"], *m["auc_one_vs_rest"].values(),
                  *m["ttbar_efficiency_at_qcd_acceptance"].values()]  # fmt: skip
        assert all(0.0 <= v <= 1.0 for v in values), m
    report = Path(store.path("evaluate", result["version"], "report.html")).read_text()
    assert "data:image/png;base64," in report and version in report
    assert manifest["counts"]["total"] == sum(store.read_manifest("prepare", store.read_manifest("train", version)["inputs"]["prepare"])["counts"]["test"].values())

    # nothing is published before check_model passes
    from hep_tasks.catalog import publish

    prepared = store.read_manifest("train", version)["inputs"]["prepare"]
    with pytest.raises(DatasetError, match=rf"not every check passed: train {version} \(pending\), evaluate {result['version']} \(pending\)"):
        publish(store, {"prepare": prepared, "train": version, "evaluate": result["version"]})
    assert store.latest("prepare") is None

    # check_model: passes with a floor of 0 and marks the models passed; publish lists them in the index
    checked = quality.run(spark, store, QualityParams.from_values({"stage": "evaluate", "version": result["version"], "auc_floors": "*=0"}, env={}))
    assert checked["quality"] == "passed" and store.read_manifest("train", version)["quality"]["status"] == "passed"
    published = publish(store, {"prepare": prepared, "train": version, "evaluate": result["version"]})
    assert store.latest("train") == version and store.latest("evaluate") == result["version"]
    index = Path(published["index"]).read_text()
    assert version in index and f"{metrics['inclusive']['auc_ttbar_vs_qcd']:.4f}" in index and "data:image/png" in index

    # a fresh process loads the saved inclusive model (safe mode) and predicts as evaluate did
    model = store.read_manifest("train", version)["models"]["inclusive"]
    predictions = spark.read.parquet(store.url("evaluate", result["version"], "predictions")).filter("model = 'inclusive'").toPandas()
    test_dir = store.path("prepare", store.read_manifest("train", version)["inputs"]["prepare"], "test")
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import json, sys, glob, numpy as np, keras, pyarrow.parquet as pq, pyarrow as pa\n"
        "from hep_tasks.train.inputs import BatchSpec, block_from_table\n"
        "from hep_tasks.train.loop import weights_digest\n"
        "m = keras.saving.load_model(sys.argv[1], safe_mode=True)\n"
        "t = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(sys.argv[2] + '/*.parquet'))])\n"
        "b = block_from_table(t, ('hlf', 'particles'))\n"
        "p = m.predict_on_batch(BatchSpec(('hlf', 'particles'), len(b)).features(b))\n"
        "print(json.dumps({'digest': weights_digest([w.numpy() for w in m.weights]), 'keys': list(zip(t['source_file'].to_pylist(), t['entry'].to_pylist())), 'p': p.tolist()}))\n"
    )
    run = subprocess.run([sys.executable, str(probe), store.path("train", version, model["file"]), test_dir],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    fresh = json.loads(run.stdout.strip().splitlines()[-1])
    assert fresh["digest"] == model["saved_weights_sha256"]
    by_event = {(r.source_file, r.entry): r.probabilities for r in predictions.itertuples()}
    for key, p in zip(fresh["keys"], fresh["p"]):
        np.testing.assert_allclose(p, by_event[tuple(key)], rtol=1e-4, atol=1e-5)

    failing = QualityParams.from_values({"stage": "evaluate", "version": result["version"], "auc_floors": "inclusive=1"}, env={})
    store.update_manifest("evaluate", result["version"], quality={"status": "pending"})
    with pytest.raises(PipelineError, match=r"inclusive"):
        quality.run(spark, store, failing)


def test_score_applies_the_published_model_to_ingested_events(spark, trained, prepared):
    from hep_tasks.score import stage as score

    store, version = trained
    _, ingested, _ = prepared
    result = score.run(spark, store, ScoreParams.from_values({"input": ingested, "model": version, "models": "hlf,inclusive"}, env={}))
    manifest = store.read_manifest("score", result["version"])
    assert manifest["inputs"] == {"ingest": ingested, "train": version}
    ingested_counts = store.read_manifest("ingest", ingested)["counts"]
    assert manifest["counts"] == ingested_counts
    scores = spark.read.parquet(store.url("score", result["version"], "scores"))
    assert scores.count() == 2 * ingested_counts["total"]
    assert scores.select("source_file", "entry").distinct().count() == ingested_counts["total"]
    for row in scores.limit(20).collect():
        assert abs(sum(row.probabilities) - 1.0) < 1e-4
    models = store.read_manifest("train", version)["models"]
    store.update_manifest("train", version, models={"hlf": models["hlf"]})
    try:
        with pytest.raises(DatasetError, match=rf"train version {version} has no model particle_sequence \(it holds: hlf\)"):
            score.checked_models(store, version, ("particle_sequence",))
    finally:
        store.update_manifest("train", version, models=models)


def test_a_killed_training_resumes_from_its_last_checkpoint(prepared):
    store, _, source = prepared
    args = ["train", "--input", source, "--models", "particle_sequence", "--epochs", "12", "--seed", "99", *TRAIN_ARGS]
    first = _submit(store, *args, start_new_session=True)
    states = Path(store.path("train", "_tmp"))
    deadline = time.monotonic() + 600
    state = None
    while time.monotonic() < deadline and first.poll() is None:
        found = list(states.glob("*.scratch/particle_sequence/state.json"))
        if found and json.loads(found[0].read_text())["epoch"] >= 1:
            state = found[0]
            break
        time.sleep(0.1)
    assert state is not None, "no checkpoint appeared"
    os.killpg(first.pid, signal.SIGKILL)  # spark-submit, its JVM, Python workers and TF workers
    first.communicate()
    saved = json.loads(state.read_text())["epoch"]
    assert 1 <= saved < 12

    summary = _finish(_submit(store, *args))
    model = store.read_manifest("train", summary["version"])["models"]["particle_sequence"]
    assert model["resumed_from_epoch"] >= saved  # not from scratch
    assert model["epochs"] == 12 and len(model["history"]["loss"]) == 12


def test_bad_inputs_are_refused_before_training(spark, prepared, tmp_path):
    from hep_tasks.train import stage as train

    store, _, source = prepared
    with pytest.raises(PipelineError, match=r"train.workers=3 needs 3 Spark task slots at once, but the application on master local\[2\] has 2"):
        train.run(spark, store, TrainParams.from_values({"input": source, "workers": 3}, env={}))
    with pytest.raises(DatasetError, match=r"prepare version 'pre-0000000000000000' does not exist"):
        train.run(spark, store, TrainParams.from_values({"input": "pre-0000000000000000"}, env={}))
    store.update_manifest("prepare", source, quality={"status": "failed"})
    try:
        with pytest.raises(DatasetError, match=rf"prepare version {source} has not passed its quality check \(status: failed\)"):
            train.run(spark, store, TrainParams.from_values({"input": source}, env={}))
    finally:
        store.update_manifest("prepare", source, quality={"status": "passed"})
    # a prepared version whose train split lacks the particle column
    bad = DatasetStore(str(tmp_path / "bad"))
    with bad.begin("prepare", "pre-bad") as pending:
        table = pq.read_table(sorted(Path(store.path("prepare", source, "train")).glob("*.parquet"))[0]).drop(["particles"])
        os.makedirs(f"{pending.path}/train")
        pq.write_table(table, f"{pending.path}/train/part-0.parquet")
        pending.commit({"quality": {"status": "passed"}})
    with pytest.raises(DatasetError, match=r"wrong schema: particles \(missing, expected list<element: list<element: float>>\)"):
        train.run(spark, bad, TrainParams.from_values({"input": "pre-bad"}, env={}))
