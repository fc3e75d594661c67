"""Ingest benchmark: input events/s per core and peak memory, beside CERN's 2019 figures.

Three measurements on simulated files (made here with the simulate code, cached in --workdir):

1. *kernel*: one Python process reads every file with uproot and computes the §3 features
   (exactly the per-split code the Spark tasks run), on one core;
2. *stage*: the whole ingest stage on Spark ``local[N]`` (inspect, read, features, Parquet write,
   cut-flow, checksums) over ``--copies`` copies of each file; events/s divided by N cores;
3. *task*: the stage as a DAG task runs it (``spark-submit ... hep_tasks/__main__.py ingest``, the
   JVM's start and Spark's stop included), against the cold goal.

CERN (Migliorini et al. 2020): 11.7 input events/s/core, 17.3 with Spark SQL filters.
Run: ``.venv/bin/python bench/bench_ingest.py [--events 1000] [--copies 8] [--cores 2]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import PeakMemory, Phases, report, submit_stage, timed  # noqa: E402

from hep_tasks.localenv import local_environment  # noqa: E402

CERN = {"ingest": 11.7, "ingest_sql_filters": 17.3}
#: Whole-stage goals, input events/s/core on the 40,000-event tt̄/W+jets benchmark (throughput issue).
GOALS = {"cold": 2500, "warm": 5000}


def simulated_files(workdir: Path, events: int, processes: list[str]) -> dict[str, Path]:
    """One cached simulated file per process (``events`` accepted events each)."""
    from hep_tasks.processes import PROCESSES
    from hep_tasks.simulate import SimulationSettings, simulate_file

    files = {}
    for i, process in enumerate(p for p in PROCESSES if p in processes):
        path = workdir / "sim" / f"{process}_{events}.root"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            print(f"simulating {events} {process} events -> {path}", flush=True)
            # every event with a PT > 23 GeV lepton, so ingest sees its whole cut-flow
            simulate_file(process, events, 1000 + i, str(path), SimulationSettings(isolated_leptons_only=False))
        files[process] = path
    return files


def kernel(files: dict[str, Path]) -> list[dict]:
    from hep_tasks.ingest.datasource import Split, read_split
    from hep_tasks.ingest.rootfile import inspect_file

    rows = []
    for process, path in files.items():
        layout = inspect_file(str(path))
        split = Split(0, str(path), process, 0, 0, layout.entries, layout.branches)
        list(read_split(split, 2000, "fail", None))  # warm-up: numba compilation, page cache
        with PeakMemory() as mem, timed() as t:
            written = sum(b.num_rows for b in read_split(split, 2000, "fail", None))
        rate = layout.entries / t["seconds"]
        rows.append({"measure": "kernel, 1 core", "process": process, "input_events": layout.entries,
                     "written": written, "events/s/core": rate, "x CERN 11.7": rate / CERN["ingest"],
                     "peak_MiB": mem.peak_mib})
    return rows


def stage(files: dict[str, Path], workdir: Path, copies: dict[str, int], cores: int) -> list[dict]:
    """Ingest ``copies[process]`` hard links of each file into a fresh ``workdir/data``, twice.

    The first (cold) run pays the Python workers' start, imports and numba cache loads; the second
    (warm) run, a new version because its split size differs, shows the rate of a long job. Phases:
    *read+compute* and *write* (task time summed over the tasks, divided by the cores: the wall time
    they account for), *inspect+sched* (the rest of the Spark work: file headers, scheduling, task
    start, imbalance), *commit* (manifest + rename), *plan* (inputs, version id).
    """
    from hep_tasks.config import IngestParams
    from hep_tasks.datasets import DatasetStore, PendingVersion
    from hep_tasks.ingest import stage as ingest
    from hep_tasks.sparkjob import spark_session

    inputs = workdir / "copies"
    shutil.rmtree(inputs, ignore_errors=True)
    inputs.mkdir(parents=True)
    for process, path in files.items():
        for c in range(copies[process]):
            os.link(path, inputs / f"{process}_{c:03d}.root")
    root = workdir / "data"
    shutil.rmtree(root, ignore_errors=True)
    spark = spark_session("bench-ingest", f"local[{cores}]")
    rows = []
    try:
        for run, split in (("cold", 20000), ("warm", 20001)):
            params = IngestParams.from_values({"input": f"{inputs}/*.root", "entries_per_split": split})
            phases = Phases()
            phases.watch(ingest, "read_inputs")
            phases.watch(PendingVersion, "commit")
            try:
                with PeakMemory() as mem, timed() as t:
                    result = ingest.run(spark, DatasetStore(str(root)), params)
            finally:
                phases.restore()
            manifest = DatasetStore(str(root)).read_manifest("ingest", result["version"])
            read = sum(c["read"] for c in manifest["cutflow"].values())
            rate = read / t["seconds"] / cores
            tasks = phases.results["read_inputs"][1]
            write = sum(r["file"]["write_seconds"] for r in tasks) / cores
            compute = sum(r["task_seconds"] for r in tasks) / cores - write
            rows.append({"measure": f"stage, Spark local[{cores}], {run}", "process": "all", "input_events": read,
                         "written": manifest["counts"]["total"], "events/s/core": rate,
                         "goal": GOALS[run], "x CERN 11.7": rate / CERN["ingest"], "peak_MiB": mem.peak_mib,
                         "seconds": t["seconds"], "read+compute_s": compute, "write_s": write,
                         "inspect+sched_s": phases.seconds["read_inputs"] - compute - write,
                         "commit_s": phases.seconds["commit"],
                         "plan_s": t["seconds"] - phases.seconds["read_inputs"] - phases.seconds["commit"]})
    finally:
        spark.stop()
    return rows


def task(workdir: Path, cores: int) -> dict:
    """The stage as a DAG task runs it, on the input of :func:`stage` (a third split size, so a new
    version): ``spark-submit ... hep_tasks/__main__.py ingest``, the whole process timed (the JVM's
    start and Spark's stop included), against the cold goal."""
    from hep_tasks.datasets import DatasetStore

    inputs, root = workdir / "copies", workdir / "data"
    seconds, summary = submit_stage(cores, "ingest", "--input", f"{inputs}/*.root", "--input-roots", str(inputs),
                                    "--entries-per-split", "20002", "--data-root", str(root))
    manifest = DatasetStore(str(root)).read_manifest("ingest", summary["version"])
    read = sum(c["read"] for c in manifest["cutflow"].values())
    rate = read / seconds / cores
    return {"measure": f"task, spark-submit local[{cores}]", "process": "all", "input_events": read,
            "written": manifest["counts"]["total"], "events/s/core": rate, "goal": GOALS["cold"],
            "x CERN 11.7": rate / CERN["ingest"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000, help="accepted events simulated per process")
    parser.add_argument("--copies", type=int, default=24, help="copies of each file for the stage run")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--processes", default="qcd,ttbar,wjets", help="comma-separated processes")
    parser.add_argument("--workdir", default=str(Path(__file__).resolve().parent / "out"))
    args = parser.parse_args()
    os.environ.update(local_environment())
    workdir = Path(args.workdir)
    files = simulated_files(workdir, args.events, args.processes.split(","))
    rows = kernel(files) + stage(files, workdir, dict.fromkeys(files, args.copies), args.cores)
    rows.append(task(workdir, args.cores))
    report("ingest: input events/s per core (CERN 2019: 11.7, 17.3 with Spark SQL filters)", rows,
           str(workdir / "bench_ingest.json"))


if __name__ == "__main__":
    main()
