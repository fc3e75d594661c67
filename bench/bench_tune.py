"""Tuning benchmark: trials per minute with 1 and 2 Spark task slots on the same data (the speed-up).

Runs the real tune stage (Optuna on the driver, each round of trials one Spark job with one task
per trial, single-process TensorFlow training in the task) through ``spark-submit`` on a checked
prepared version, once with ``--master local[1]`` and once with ``local[2]`` (a fresh JVM each),
for each model. So that both runs do the same work, the search space varies only values that do
not change a trial's cost (dropout, learning rate; sizes and batch are the model's defaults) and
pruning is off: every trial trains the same network for the same epochs on the same subsample.
``--space default`` searches the model's default space instead (realistic, but then the two runs
draw different networks).

Reported per run: trials; the search's wall time (first trial start to last trial end) and the
whole ``spark-submit`` (JVM start, subsample, report included); trials per minute and the speed-up
of 2 slots over 1; the mean trial duration; the cores a trial keeps busy (CPU seconds of its
Python worker, TensorFlow's threads included, over its duration); the first trial of each Python
worker (it imports TensorFlow: what a process per trial would pay every time) against the median
of the later ones; the peak memory of the process tree; the machine's 1-minute load average
before and after (other work on a shared machine shows there).

The tune versions go to a fresh data root (``--work-root``, whose ``prepare/`` links to the one
of ``--data-root``), so a rerun measures again instead of finding its versions committed.

Run: ``.venv/bin/python bench/bench_tune.py --data-root bench/out/trainset [--prepared VERSION]
[--models hlf,inclusive] [--trials 8] [--epochs 2] [--subsample-fraction 0.2] [--space fixed|default]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import PeakMemory, report  # noqa: E402

from hep_tasks.localenv import local_environment  # noqa: E402

#: Values that leave a trial's cost unchanged: the benchmark searches only these.
COST_NEUTRAL = {"dropout": {"low": 0.0, "high": 0.3}, "learning_rate": {"low": 3e-4, "high": 1e-2, "log": True}}


def run_once(store, source: str, model: str, slots: int, args) -> dict:
    """One search through ``spark-submit --master local[<slots>]`` (a fresh JVM per run), as Airflow runs it."""
    import hep_tasks
    from hep_tasks.config import TuneParams

    space = "" if args.space == "default" else json.dumps({model: COST_NEUTRAL})
    params = TuneParams.from_values(
        {
            "input": source, "models": model, "trials": args.trials, "epochs": args.epochs, "pruning": False,
            "subsample_fraction": args.subsample_fraction, "search_space": space, "seed": args.seed,
            "time_budget_s": 24 * 3600, "parallel_trials": slots,
        }  # fmt: skip
    )
    entry = str(Path(hep_tasks.__file__).parent / "__main__.py")
    cmd = ["spark-submit", "--master", f"local[{slots}]", entry, "tune", *params.to_args(), "--data-root", store.root]
    load = os.getloadavg()[0]
    with PeakMemory() as mem:
        started = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        wall = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stderr[-3000:]}")
    version = json.loads(run.stdout.strip().splitlines()[-1])["version"]
    manifest = store.read_manifest("tune", version)
    trials = json.loads(Path(store.path("tune", version, "trials.json")).read_text())[model]
    span = max(t["ended_at"] for t in trials) - min(t["started_at"] for t in trials)
    first = {}
    for t in sorted(trials, key=lambda t: t["started_at"]):
        first.setdefault(t["pid"], t["number"])
    firsts = [t["duration_s"] for t in trials if first[t["pid"]] == t["number"]]
    later = [t["duration_s"] for t in trials if first[t["pid"]] != t["number"]]
    sub = manifest["counts"]["subsample"]
    return {
        "model": model,
        "task slots": slots,
        "trials": len(trials),
        "subsample events": sum(sub.values()),
        "search_s": span,
        "spark-submit_s": wall,
        "trials/min": 60.0 * len(trials) / span,
        "mean trial_s": statistics.mean(t["duration_s"] for t in trials),
        "cores per trial": sum(t["cpu_s"] for t in trials) / sum(t["duration_s"] for t in trials),
        "first trial/worker_s": statistics.mean(firsts),
        "later trials median_s": statistics.median(later) if later else None,
        "best val_loss": manifest["models"][model]["best"]["val_loss"],
        "best val AUC": manifest["models"][model]["best"]["val_auc"],
        "peak_MiB": mem.peak_mib,
        "load 1-min before/after": f"{load:.1f}/{os.getloadavg()[0]:.1f}",
        "version": version,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="data root holding a checked prepared version")
    parser.add_argument("--prepared", default="", help="prepared version (default: the latest checked one)")
    parser.add_argument("--models", default="hlf,inclusive")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subsample-fraction", type=float, default=0.2)
    parser.add_argument("--space", choices=["fixed", "default"], default="fixed",
                        help="fixed: only cost-neutral values vary (same work at 1 and 2 slots); default: the model's space")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work-root", default=str(Path(__file__).resolve().parent / "out" / "tune-work"),
                        help="data root for the tune versions (emptied first; prepare/ links to --data-root's)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "bench_tune.json"))
    args = parser.parse_args()
    os.environ.update(local_environment())

    from hep_tasks.datasets import DatasetStore

    source = DatasetStore(args.data_root).resolve("prepare", args.prepared)
    counts = DatasetStore(args.data_root).read_manifest("prepare", source)["counts"]
    print(f"prepared version {source}: {counts}", flush=True)
    # a fresh data root whose prepare/ is the given one: every run searches anew (no version to reuse)
    work = Path(args.work_root)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "prepare").symlink_to(Path(args.data_root).resolve() / "prepare", target_is_directory=True)
    store = DatasetStore(str(work))
    rows = []
    for model in args.models.split(","):
        for slots in (1, 2):
            rows.append(run_once(store, source, model, slots, args))
            print(rows[-1], flush=True)
        one, two = rows[-2], rows[-1]
        two["speed-up"] = two["trials/min"] / one["trials/min"]
        one["speed-up"] = 1.0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    title = (f"tune: trials per minute with 1 and 2 task slots, prepared {source} (train {counts['train']}), "
             f"{args.trials} trials x {args.epochs} epochs, subsample {args.subsample_fraction:g}, space {args.space}")
    report(title, rows, args.out)


if __name__ == "__main__":
    main()
