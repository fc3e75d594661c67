"""Training benchmark: samples/s per core of each model and the test AUC it reaches.

Runs the real train stage (``hep_tasks.train.stage.run``: a Spark barrier stage of TensorFlow
workers under MultiWorkerMirroredStrategy) on a checked prepared version, for each model in
several configurations, then the real evaluate stage for the test AUC:

- ``padding=full``: every event padded to 801 particles, the 2019 way (the GRU pays 801 steps);
- ``padding=batch`` with length bucketing (``buckets``): each batch padded to its own longest event,
  events of similar length batched together; ``batch``: the same padding, random batches;
- on 1 worker (1 core) and on 2 workers (2 cores, gradients all-reduced every step).

Throughput is training events per second after the first epoch (which also traces the step
functions), divided by the cores used (workers x threads). Peak memory is the summed RSS of the
benchmark and all its children (Spark JVM, Python workers, TensorFlow workers).

Reference (``--reference``): the 2019 seed's method on the same data, a single Keras process with
``Model.fit`` on every event padded to 801 steps and no effective masking (the seed's per-event
standardisation turns padding into non-zero rows), on all cores of the machine.

CERN's published figures (Migliorini et al. 2020) are printed beside: inclusive model BigDL
15.7 samples/s/core, TensorFlow on CPU about 31 per core; HLF model BigDL 290-1,080 samples/s.

Run: ``.venv/bin/python bench/bench_train.py --data-root DIR [--prepared VERSION] [--epochs 3]
[--models hlf,particle_sequence,inclusive] [--configs buckets:2,buckets:1,full:2,full:1] [--reference]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import PeakMemory, report  # noqa: E402

from hep_tasks.localenv import local_environment  # noqa: E402

CERN = {"inclusive": "BigDL 15.7/core; TF CPU ~31/core", "particle_sequence": "-", "hlf": "BigDL 290-1,080 (whole run)"}
SEED_ON_THIS_MACHINE = {"inclusive": "~160-180/core (801 steps)", "particle_sequence": "-", "hlf": "~50,000/core"}


#: Input configurations: (padding, bucketing) and how the table names them.
CONFIGS = {
    "buckets": ("batch", True, "batch + buckets"),
    "batch": ("batch", False, "batch, random"),
    "full": ("full", False, "full (801)"),
}


def train_and_evaluate(spark, store, source: str, model: str, config: str, workers: int, args) -> dict:
    from hep_tasks.config import EvaluateParams, TrainParams
    from hep_tasks.evaluate import stage as evaluate
    from hep_tasks.train import stage as train

    padding, bucketing, name = CONFIGS[config]
    params = TrainParams.from_values(
        {
            "input": source, "models": model, "workers": workers, "epochs": args.epochs, "padding": padding,
            "bucketing": bucketing, "patience": args.patience, "threads_per_worker": 1,
        }  # fmt: skip
    )
    with PeakMemory() as mem:
        started = time.perf_counter()
        version = train.run(spark, store, params)["version"]
        wall = time.perf_counter() - started
    result = store.read_manifest("train", version)["models"][model]
    metrics = store.read_manifest("evaluate", evaluate.run(spark, store, EvaluateParams.from_values({"input": version}))["version"])["metrics"][model]
    return {
        "model": model,
        "padding": name,
        "workers": workers,
        "batch/worker": result["hyperparameters"]["batch_size"],
        "epochs": result["epochs"],
        "samples/s": result["steady_events_per_second"],
        "samples/s/core": result["steady_events_per_second_per_core"],
        "train_s": wall,
        "test AUC tt̄-QCD": f"{metrics['auc_ttbar_vs_qcd']:.4f}",
        "tt̄ eff @1% QCD": f"{metrics['ttbar_efficiency_at_qcd_acceptance']['0.01']:.3f}",
        "peak_MiB": mem.peak_mib,
        "CERN 2019": CERN[model],
        "seed here": SEED_ON_THIS_MACHINE[model],
    }


def seed_reference(store, source: str, model: str, cores: int, events: int) -> dict:
    """The 2019 method in one process: Keras ``fit`` on events padded to 801 steps, no masking."""
    import numpy as np

    from hep_tasks.train.loop import configure_threads

    configure_threads(cores)
    import keras

    from hep_tasks.train.hyperparameters import resolve
    from hep_tasks.train.inputs import BatchSpec, Block, ShardReader, catalogue
    from hep_tasks.train.models import build_model, model_inputs

    inputs = model_inputs(model)
    reader = ShardReader(store.fs, catalogue(store.fs, store.path("prepare", source, "train")), inputs)
    blocks, n = [], 0
    for group in reader.groups:
        block, _ = reader.read(group)
        blocks.append(block)
        n += len(block)
        if n >= events:
            break
    block = Block.concat(blocks).take(np.arange(min(n, events)))
    x = BatchSpec(inputs, len(block), padding="full").features(block)
    net = build_model(model, resolve(model))
    for layer in net.layers:  # the seed's padding rows were not zeros, so its mask hid nothing
        if isinstance(layer, keras.layers.Masking):
            layer.mask_value = float("nan")  # equal to no value: all 801 steps are computed
    net.compile(optimizer="adam", loss="categorical_crossentropy")
    batch = 128
    net.fit(x, block.onehot, batch_size=batch, epochs=1, verbose=0)  # warm-up: tracing
    started = time.perf_counter()
    net.fit(x, block.onehot, batch_size=batch, epochs=1, verbose=0)
    rate = len(block) / (time.perf_counter() - started)
    return {"model": model, "padding": "seed method: Keras fit, 801 steps", "workers": 1, "batch/worker": batch,
            "samples/s": rate, "samples/s/core": rate / cores, "CERN 2019": CERN[model]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="data root holding a checked prepared version")
    parser.add_argument("--prepared", default="", help="prepared version (default: the latest checked one)")
    parser.add_argument("--models", default="hlf,particle_sequence,inclusive")
    parser.add_argument("--configs", default="buckets:2,buckets:1,full:2,full:1",
                        help="input:workers, comma separated; input is buckets, batch (random batches) or full")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--patience", type=int, default=0)
    parser.add_argument("--reference", action="store_true", help="also time the 2019 seed's method")
    parser.add_argument("--reference-events", type=int, default=6000)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "bench_train.json"))
    args = parser.parse_args()
    os.environ.update(local_environment())

    from hep_tasks.datasets import DatasetStore
    from hep_tasks.sparkjob import spark_session

    store = DatasetStore(args.data_root)
    source = store.resolve("prepare", args.prepared)
    counts = store.read_manifest("prepare", source)["counts"]
    print(f"prepared version {source}: {counts}", flush=True)
    spark = spark_session("bench-train", "local[2]")
    rows = []
    try:
        for model in args.models.split(","):
            for config in args.configs.split(","):
                name, workers = config.split(":")
                if model == "hlf" and name != "buckets":
                    continue  # no particle sequence: padding and bucketing do not apply
                rows.append(train_and_evaluate(spark, store, source, model, name, int(workers), args))
                print(rows[-1], flush=True)
    finally:
        spark.stop()
    if args.reference:
        for model in args.models.split(","):
            rows.append(seed_reference(store, source, model, os.cpu_count() or 2, args.reference_events))
            print(rows[-1], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    report(f"train: samples/s per core and test AUC, prepared {source} (train {counts['train']})", rows, args.out)


if __name__ == "__main__":
    main()
