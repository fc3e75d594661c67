"""Prepare benchmark: output events/s per core and peak memory, beside CERN's 2019 figure.

Input: an ingest version made here from the files ``bench_ingest.py`` simulated (run that first),
with 10 times more copies of the QCD file than of the others, since only ~10 % of the QCD events
have an isolated lepton and balancing cuts every class down to the smallest. It is marked as
checked (prepare only accepts checked data; the suite's own cost is ``bench_quality.py``'s). Then:

1. *kernel*: the per-batch work (ΔR sort, scaling, one-hot; ``prepare/transform.py``) on one core
   over the ingested Parquet, in Arrow batches;
2. *stage*: the whole prepare stage on Spark ``local[N]`` (split and counts, exact balancing,
   scatter with the scaler fit, gather with the transform and the writes, commit); output events
   (train + test) per second per core, with the time of each phase;
3. *task*: the stage as a DAG task runs it, ``spark-submit ... hep_tasks/__main__.py prepare``,
   the whole process (the JVM's start and Spark's stop included) against the cold goal.

CERN (Migliorini et al. 2020): about 2.8 output events/s/core for feature preparation.
Run: ``.venv/bin/python bench/bench_prepare.py [--cores 2]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ingest  # noqa: E402
from benchlib import PeakMemory, Phases, report, submit_stage, timed  # noqa: E402

from hep_tasks.localenv import local_environment  # noqa: E402

CERN = 2.8
#: Whole-stage goals, output events/s/core (throughput issue).
GOALS = {"cold": 2000, "warm": 5000}


def kernel(events_dir: str, scalers) -> dict:
    import pyarrow.dataset as ds

    from hep_tasks.prepare.transform import transform_batch

    batches = list(ds.dataset(events_dir, format="parquet").to_batches(batch_size=4096))
    with PeakMemory() as mem, timed() as t:
        n = sum(transform_batch(b, scalers).num_rows for b in batches)
    rate = n / t["seconds"]
    return {"measure": "kernel, 1 core", "output_events": n, "events/s/core": rate, "x CERN 2.8": rate / CERN,
            "peak_MiB": mem.peak_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--copies", type=int, default=6, help="copies of the tt̄ and W+jets files (QCD: 10x)")
    parser.add_argument("--workdir", default=str(Path(__file__).resolve().parent / "out"))
    args = parser.parse_args()
    os.environ.update(local_environment())

    from hep_tasks.config import PrepareParams
    from hep_tasks.datasets import DatasetStore, PendingVersion
    from hep_tasks.prepare import stage as prepare
    from hep_tasks.prepare.scalers import FeatureScalers
    from hep_tasks.sparkjob import spark_session

    workdir = Path(args.workdir)
    files = {p: (workdir / "sim" / f"{p}_1000.root") for p in ("qcd", "ttbar", "wjets")}
    files = {p: f if f.exists() else None for p, f in files.items()}
    if not all(files.values()):
        sys.exit("no 1000-event simulated files in the workdir: run bench/bench_ingest.py first")
    ingested = bench_ingest.stage(files, workdir, {"qcd": 10 * args.copies, "ttbar": args.copies, "wjets": args.copies}, args.cores)
    print(f"ingested {ingested[-1]['input_events']} events, {ingested[-1]['written']} written", flush=True)
    store = DatasetStore(str(workdir / "data"))
    source = store.versions("ingest")[-1]
    spark = spark_session("bench-prepare", f"local[{args.cores}]")
    stage_rows = []
    try:
        store.update_manifest("ingest", source, quality={"status": "passed"})  # checks: bench_quality.py
        for old in store.versions("prepare"):
            store.fs.rm(store.path("prepare", old), recursive=True)
        # cold: first Python workers and JVM code paths; warm: a second version (other seed), as in a long job
        for run, seed in (("cold", 42), ("warm", 43)):
            phases = Phases()
            phases.watch(prepare, "rank_census", "split+counts")
            phases.watch(prepare, "balancing_cutoffs", "balance")
            phases.watch(prepare, "scatter_files", "scatter+fit")
            phases.watch(prepare, "write_splits", "gather+transform+write")
            phases.watch(PendingVersion, "commit")
            try:
                with PeakMemory() as mem, timed() as t:
                    result = prepare.run(spark, store, PrepareParams.from_values({"input": source, "seed": seed}))
            finally:
                phases.restore()
            n = store.read_manifest("prepare", result["version"])["counts"]["total"]
            rate = n / t["seconds"] / args.cores
            stage_rows.append({"measure": f"stage, Spark local[{args.cores}], {run}", "output_events": n,
                               "events/s/core": rate, "goal": GOALS[run], "x CERN 2.8": rate / CERN,
                               "peak_MiB": mem.peak_mib, "seconds": t["seconds"],
                               **{f"{k}_s": v for k, v in phases.seconds.items()},
                               "plan_s": t["seconds"] - sum(phases.seconds.values())})
    finally:
        spark.stop()
    # task: the stage as a DAG task runs it, a fresh spark-submit (JVM start and stop included; a third seed)
    seconds, task = submit_stage(args.cores, "prepare", "--input", source, "--seed", "44", "--data-root", store.root)
    n = task["rows"]["total"]
    stage_rows.append({"measure": f"task, spark-submit local[{args.cores}]", "output_events": n,
                       "events/s/core": n / seconds / args.cores, "goal": GOALS["cold"],
                       "x CERN 2.8": n / seconds / args.cores / CERN, "seconds": seconds})
    manifest = store.read_manifest("prepare", result["version"])
    with store.fs.open(store.path("prepare", result["version"], manifest["scalers"])) as f:
        scalers = FeatureScalers.loads(f.read())
    rows = [kernel(store.path("ingest", source, "events"), scalers), *stage_rows]
    report("prepare: output events/s per core (CERN 2019: about 2.8)", rows,
           str(Path(args.workdir) / "bench_prepare.json"))


if __name__ == "__main__":
    main()
