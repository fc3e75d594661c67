"""Quality-check benchmark: seconds per Great Expectations suite (ingest, prepare, evaluate), cold and warm.

Data, made here once and cached under ``--workdir/quality/data``:

- *demo*: the demo's simulation (2 files x 100 events per process, its seed and QCD re-decays),
  ingested and prepared: about 600 events;
- *large*: the simulated files of ``bench/out/trainset`` (``bench/training_set.py``, 7,000 events
  per process) ingested ``--large-copies`` times over through hard links (about 42,000 events),
  and prepared;
- *model*: the newest evaluate version of ``bench/out/trainset`` with its model's manifest,
  copied here (its predictions: one model on the 4,152-event test split).

Each (data, suite) runs in a fresh Python process with its own Spark session ``local[N]``, as a
DAG task does: *cold* is the first check in that process, including the import of Great
Expectations; *warm* is the same check again (the manifest's quality field is reset in between).
Phases: ``gx_import``, ``gx_context`` (creating GX contexts), ``data_docs`` (rendering Data Docs),
``validate`` (the rest: reading the Parquet, Spark jobs, GX's metrics, the results JSON);
``spark_jobs`` counts the Spark jobs of the check.

*task* times the check as a DAG task runs it, the whole ``spark-submit`` process: the JVM's start,
with Great Expectations imported meanwhile (``hep_tasks.cli.prefetch``), the check, Spark's stop.

Goals (issue "Throughput"): a check of demo-size data within 10 s, of the 40,000-event ingest
version within 30 s. ``--quality-package DIR`` benchmarks another copy of ``hep_tasks/quality``
(e.g. the committed one: ``git archive HEAD hep_tasks/quality | tar -x -C /tmp/before``), to
compare before and after under the same load.
Run: ``.venv/bin/python bench/bench_quality.py [--cores 2] [--label after]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import PeakMemory, report, submit_stage, timed  # noqa: E402

from hep_tasks.localenv import local_environment  # noqa: E402

GOALS = {"demo": 10.0, "large": 30.0, "model": 10.0}
#: The demo's simulation (hep_tasks.localenv.DEMO_DEFAULTS and the simulate defaults).
DEMO_SIMULATION = {"events_per_file": 100, "files_per_process": 2, "seed": 20190101, "qcd_redecays": 25}
#: Which suites each data set is checked with.
SUITES = {"demo": ("ingest", "prepare"), "large": ("ingest", "prepare"), "model": ("evaluate",)}
#: Driver memory of the process making the data: preparing the large set needs more than Spark's
#: default 1g (the checks run with the default, as a DAG task does).
DATA_DRIVER_MEMORY = "3g"


def make_data(workdir: Path, trainset: Path, copies: int, cores: int) -> dict[str, dict[str, str]]:
    """The versions to check, per data set (cached in ``workdir/quality/versions.json``)."""
    from hep_tasks.config import IngestParams, PrepareParams, QualityParams, SimulateParams
    from hep_tasks.datasets import DatasetStore
    from hep_tasks.ingest import stage as ingest
    from hep_tasks.prepare import stage as prepare
    from hep_tasks.quality import stage as quality
    from hep_tasks.simulate import stage as simulate
    from hep_tasks.sparkjob import spark_session

    root = workdir / "quality"
    cache = root / "versions.json"
    store = DatasetStore(str(root / "data"))
    versions = json.loads(cache.read_text()) if cache.exists() else {}
    if all(store.exists(s, v) for data in versions.values() for s, v in data.items()) and versions:
        return versions

    submit_args = os.environ.get("PYSPARK_SUBMIT_ARGS")
    os.environ["PYSPARK_SUBMIT_ARGS"] = f"--driver-memory {DATA_DRIVER_MEMORY} pyspark-shell"
    spark = spark_session("bench-quality-data", f"local[{cores}]")

    def ingest_and_prepare(spec: str) -> dict[str, str]:
        ing = ingest.run(spark, store, IngestParams.from_values({"input": spec}))["version"]
        store.update_manifest("ingest", ing, quality={"status": "passed"})  # prepare accepts checked data only
        pre = prepare.run(spark, store, PrepareParams.from_values({"input": ing}))["version"]
        print(f"ingest {ing}, prepare {pre}", flush=True)
        return {"ingest": ing, "prepare": pre}

    try:
        sim = simulate.run(spark, store, SimulateParams.from_values(DEMO_SIMULATION))["version"]
        versions = {"demo": ingest_and_prepare(sim)}
        simulations = sorted((trainset / "simulate").glob("sim-*"))
        if simulations:
            simulated = simulations[-1]
            links = root / "copies"
            shutil.rmtree(links, ignore_errors=True)
            links.mkdir(parents=True)
            for process_dir in sorted(p for p in simulated.iterdir() if p.is_dir() and not p.name.startswith("_")):
                for copy in range(copies):
                    for file in sorted(process_dir.glob("*.root")):
                        os.link(file, links / f"{process_dir.name}_c{copy}_{file.name}")
            spec = ",".join(f"{p}={links}/{p}_c*.root" for p in sorted({f.name.split("_")[0] for f in links.iterdir()}))
            versions["large"] = ingest_and_prepare(spec)
        else:
            print(f"no simulated files under {trainset}/simulate: no 'large' data (run bench/training_set.py)")
        evaluations = sorted((trainset / "evaluate").glob("eva-*"), key=lambda p: p.stat().st_mtime)
        if evaluations:
            source = DatasetStore(str(trainset))
            evaluation = evaluations[-1].name
            model = source.read_manifest("evaluate", evaluation)["inputs"]["train"]
            shutil.copytree(evaluations[-1], store.path("evaluate", evaluation), dirs_exist_ok=True)
            Path(store.path("train", model)).mkdir(parents=True, exist_ok=True)
            shutil.copy(source.path("train", model, "_manifest.json"), store.path("train", model, "_manifest.json"))
            versions["model"] = {"evaluate": evaluation}
        # every version must pass its suite, or the timings measure a failure report
        for data in versions.values():
            for stage_name, version in data.items():
                quality.run(spark, store, QualityParams.from_values({"stage": stage_name, "version": version}))
    finally:
        spark.stop()
        if submit_args is None:
            del os.environ["PYSPARK_SUBMIT_ARGS"]
        else:
            os.environ["PYSPARK_SUBMIT_ARGS"] = submit_args
    cache.write_text(json.dumps(versions, indent=2))
    return versions


def load_quality_package(path: str) -> None:
    """Make ``hep_tasks.quality`` the package at ``path`` (another copy, e.g. the committed code)."""
    spec = importlib.util.spec_from_file_location(
        "hep_tasks.quality", os.path.join(path, "__init__.py"), submodule_search_locations=[path]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["hep_tasks.quality"] = module
    spec.loader.exec_module(module)


class Phases:
    """Seconds spent creating GX contexts and building Data Docs (patched into GX), Spark jobs run."""

    def __init__(self, spark) -> None:
        import great_expectations as gx
        from great_expectations.data_context import AbstractDataContext

        self.spark, self.seconds = spark, {"gx_context": 0.0, "data_docs": 0.0}
        self._patch(gx, "get_context", "gx_context")
        self._patch(AbstractDataContext, "build_data_docs", "data_docs")

    def _patch(self, owner, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - started

        setattr(owner, name, wrapper)

    def jobs(self) -> int:
        tracker = self.spark.sparkContext.statusTracker()
        return len(tracker.getJobIdsForGroup(None))

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)


def measure(root: str, data: str, stage_name: str, version: str, cores: int) -> list[dict]:
    """Check ``version`` twice in this (fresh) process: cold, then warm."""
    from hep_tasks.config import QualityParams
    from hep_tasks.datasets import DatasetStore
    from hep_tasks.quality import stage as quality
    from hep_tasks.sparkjob import spark_session

    store = DatasetStore(root)
    spark = spark_session("bench-quality", f"local[{cores}]")
    spark.sparkContext.parallelize(range(cores), cores).count()  # executors and Python workers up
    rows = []
    try:
        with timed() as gx_import:  # the cold run's import, timed apart, as the stage imports it
            if importlib.util.find_spec("hep_tasks.quality.gx"):
                import hep_tasks.quality.gx  # noqa: F401
            else:  # a --quality-package from before hep_tasks/quality/gx.py
                import great_expectations  # noqa: F401
        phases = Phases(spark)
        for run in ("cold", "warm"):
            store.update_manifest(stage_name, version, quality={"status": "pending"})
            phases.reset()
            jobs_before = phases.jobs()
            load = os.getloadavg()[0]
            with PeakMemory() as mem, timed() as t:
                quality.run(spark, store, QualityParams.from_values({"stage": stage_name, "version": version}))
            seconds = t["seconds"] + (gx_import["seconds"] if run == "cold" else 0.0)
            counts = store.read_manifest(stage_name, version)["counts"]
            goal = GOALS[data]
            rows.append({
                "data": data, "check": stage_name, "events": counts["total"], "run": run, "seconds": seconds,
                "goal_s": goal, "meets": "yes" if seconds <= goal else "NO",
                "gx_import": gx_import["seconds"] if run == "cold" else 0.0,
                "gx_context": phases.seconds["gx_context"], "data_docs": phases.seconds["data_docs"],
                "validate": t["seconds"] - phases.seconds["gx_context"] - phases.seconds["data_docs"],
                "spark_jobs": phases.jobs() - jobs_before, "load_1m": load, "peak_MiB": mem.peak_mib,
            })  # fmt: skip
    finally:
        spark.stop()
    return rows


def task(root: str, data: str, stage_name: str, version: str, cores: int) -> dict:
    """The check as a DAG task runs it: ``spark-submit ... hep_tasks/__main__.py quality``, the
    whole process timed (JVM start, Great Expectations' import, the check, Spark's stop)."""
    from hep_tasks.datasets import DatasetStore

    DatasetStore(root).update_manifest(stage_name, version, quality={"status": "pending"})
    load = os.getloadavg()[0]
    seconds, _ = submit_stage(cores, "quality", "--stage", stage_name, "--version", version, "--data-root", root)
    return {"data": data, "check": stage_name, "run": "task", "seconds": seconds, "load_1m": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", default=str(Path(__file__).resolve().parent / "out"))
    parser.add_argument("--trainset", default=None, help="data root of bench/training_set.py (default: WORKDIR/trainset)")
    parser.add_argument("--large-copies", type=int, default=2, help="copies of the trainset's simulated files")
    parser.add_argument("--data", default="demo,large,model", help="data sets to check, comma separated")
    parser.add_argument("--quality-package", default=None, help="benchmark this copy of hep_tasks/quality instead")
    parser.add_argument("--label", default="current", help="names the result file bench_quality_LABEL.json")
    parser.add_argument("--measure", nargs=3, metavar=("DATA", "STAGE", "VERSION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.update(local_environment())
    workdir = Path(args.workdir)
    if args.quality_package:
        load_quality_package(args.quality_package)
    if args.measure:  # the child process of one (data, suite): rows as JSON on the last line
        rows = measure(str(workdir / "quality" / "data"), *args.measure, args.cores)
        print(json.dumps(rows))
        return

    versions = make_data(workdir, Path(args.trainset or workdir / "trainset"), args.large_copies, args.cores)
    rows = []
    for data in args.data.split(","):
        for stage_name in SUITES[data] if data in versions else ():
            command = [sys.executable, __file__, "--measure", data, stage_name, versions[data][stage_name],
                       "--cores", str(args.cores), "--workdir", str(workdir)]
            if args.quality_package:
                command += ["--quality-package", args.quality_package]
            child = subprocess.run(command, capture_output=True, text=True)
            if child.returncode:
                sys.exit(f"checking {data} {stage_name} failed:\n{child.stderr[-4000:]}")
            rows += json.loads(child.stdout.strip().splitlines()[-1])
            if not args.quality_package:
                rows.append(task(str(workdir / "quality" / "data"), data, stage_name, versions[data][stage_name], args.cores))
            print(json.dumps(rows[-3:]), flush=True)
    report(f"quality checks ({args.label}): seconds per suite, goals <= 10 s demo-size, <= 30 s at 40,000 events",
           rows, str(workdir / f"bench_quality_{args.label}.json"))


if __name__ == "__main__":
    main()
