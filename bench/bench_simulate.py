"""Benchmark of the simulate stage on one core: ``simulate_file`` for each process, one after the other,
in this single process.

Prints, per process: accepted and generated events per second (wall clock, and per CPU-second of this
process, which is the per-core rate even when other work shares the machine), the filter efficiency,
the weighted efficiency Σ event weights / generated (the fraction of generated events that has an
accepted event; equal to the filter efficiency without ``--qcd-redecays``), the written events whose
generated event had several accepted decay trials, and the peak RSS of the process
(``resource.getrusage``). The target is >= 50 accepted events/s per
core for tt̄ and W+jets.

    python bench/bench_simulate.py                      # 200 tt̄, 200 W+jets, 40 QCD events
    python bench/bench_simulate.py --events 500 --qcd-events 100 --out simulate.json
    python bench/bench_simulate.py --isolated --processes qcd --qcd-events 20   # only isolated-lepton events
    python bench/bench_simulate.py --isolated --processes qcd --qcd-events 200 --qcd-redecays 25  # 25 decay trials
    python bench/bench_simulate.py --profile ttbar      # cProfile's top functions for one process
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchlib import report  # noqa: E402

from hep_tasks.processes import PROCESSES  # noqa: E402
from hep_tasks.simulate import SimulationSettings, simulate_file  # noqa: E402


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def bench_process(process: str, n_events: int, seed: int, directory: str, settings: SimulationSettings) -> dict:
    path = os.path.join(directory, f"{process}.root")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    stats = simulate_file(process, n_events, seed, path, settings)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "process": process,
        "accepted": stats.accepted,
        "generated": stats.generated,
        "filter_eff_%": 100 * stats.filter_efficiency,
        "redecays": stats.redecays,
        "weighted_eff_%": 100 * stats.event_weight_sum / stats.generated,
        "multi_accepted": stats.multi_accepted,
        "accepted/s wall": stats.accepted / wall,
        "accepted/s/core": stats.accepted / cpu,
        "generated/s/core": stats.generated / cpu,
        "wall_s": wall,
        "cpu_s": cpu,
        "file_MiB": os.path.getsize(path) / 2**20,
        "peak_rss_MiB": _peak_rss_mib(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="accepted events for ttbar and wjets (default 200)")
    parser.add_argument("--qcd-events", type=int, default=40, help="accepted events for qcd (default 40)")
    parser.add_argument("--processes", default=",".join(PROCESSES), help="comma-separated processes (default all)")
    parser.add_argument("--seed", type=int, default=12345, help="seed of every file (default 12345)")
    parser.add_argument("--isolated", action="store_true", help="accept only isolated-lepton events (isolated_leptons_only)")
    parser.add_argument(
        "--qcd-redecays", type=int, default=0, metavar="N",
        help="decay the b/c hadrons of each QCD event N times, write the first accepted trial (default 0: off)",
    )
    parser.add_argument("--out", help="also write the results as JSON to this file")
    parser.add_argument("--keep-dir", help="write the ROOT files into this directory and keep them (default: a temporary one)")
    parser.add_argument("--profile", choices=PROCESSES, help="profile one process with cProfile instead")
    args = parser.parse_args(argv)
    settings = SimulationSettings(isolated_leptons_only=args.isolated, qcd_redecays=args.qcd_redecays)
    with tempfile.TemporaryDirectory(prefix="bench-simulate-") as temporary:
        directory = args.keep_dir or temporary
        os.makedirs(directory, exist_ok=True)
        if args.profile:
            n = args.qcd_events if args.profile == "qcd" else args.events
            profiler = cProfile.Profile()
            profiler.runcall(simulate_file, args.profile, n, args.seed, os.path.join(directory, "profile.root"), settings)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
            return
        rows = []
        for process in args.processes.split(","):
            n = args.qcd_events if process == "qcd" else args.events
            rows.append(bench_process(process, n, args.seed, directory, settings))
    title = "simulate_file, one process on one core" + (", isolated leptons only" if args.isolated else "")
    title += f", QCD with {args.qcd_redecays} decay trials per event" if args.qcd_redecays else ""
    report(title, rows, args.out)


if __name__ == "__main__":
    main()
