"""Make a training set large enough for a meaningful AUC: simulate -> ingest -> check -> prepare -> check.

The same stage functions the pipeline runs, in one Spark application (``local[N]``), into
``--data-root``. QCD uses the ``qcd_redecays`` option (several decays of the heavy-flavour
hadrons of each generated QCD event; see README "Simulation"), without which the isolated-lepton
QCD class costs about 0.4 events per CPU-second and 5,000 events take hours.

Prints the time of each stage and the versions, to be used by ``bench_train.py --data-root``.
Run: ``.venv/bin/python bench/training_set.py --data-root bench/out/trainset --events 7000``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import report  # noqa: E402

from hep_tasks.localenv import local_environment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--events", type=int, default=7000, help="simulated events per process")
    parser.add_argument("--files", type=int, default=8, help="files per process (Spark tasks)")
    parser.add_argument("--qcd-redecays", type=int, default=25)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    os.environ.update(local_environment())

    from hep_tasks.config import IngestParams, PrepareParams, QualityParams, SimulateParams
    from hep_tasks.datasets import DatasetStore
    from hep_tasks.ingest import stage as ingest
    from hep_tasks.prepare import stage as prepare
    from hep_tasks.quality import stage as quality
    from hep_tasks.simulate import stage as simulate
    from hep_tasks.sparkjob import spark_session

    store = DatasetStore(args.data_root)
    spark = spark_session("bench-training-set", f"local[{args.cores}]")
    rows = []

    def timed_stage(name, function, params):
        started = time.perf_counter()
        result = function(spark, store, params)
        rows.append({"stage": name, "version": result["version"], "seconds": time.perf_counter() - started,
                     "rows": str(result["rows"])})  # fmt: skip
        print(rows[-1], flush=True)
        return result["version"]

    try:
        sim = timed_stage("simulate", simulate.run, SimulateParams.from_values({
            "events_per_file": math.ceil(args.events / args.files), "files_per_process": args.files,
            "seed": args.seed, "qcd_redecays": args.qcd_redecays}))  # fmt: skip
        ing = timed_stage("ingest", ingest.run, IngestParams.from_values({"input": sim}))
        timed_stage("check ingest", quality.run, QualityParams.from_values({"stage": "ingest", "version": ing}))
        pre = timed_stage("prepare", prepare.run, PrepareParams.from_values({"input": ing, "files_per_split": 4}))
        timed_stage("check prepare", quality.run, QualityParams.from_values({"stage": "prepare", "version": pre}))
    finally:
        spark.stop()
    report(f"training set under {args.data_root}", rows, str(Path(args.data_root) / "training_set.json"))


if __name__ == "__main__":
    main()
