"""Shared benchmark plumbing: peak memory of a whole process tree, timing, the result table."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass
class PeakMemory:
    """Samples the summed RSS of this process and all its descendants (Spark JVM, Python workers)."""

    interval: float = 0.2
    peak_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20


@contextmanager
def timed():
    box = {}
    start = time.perf_counter()
    yield box
    box["seconds"] = time.perf_counter() - start


#: The command line a DAG task runs under spark-submit.
STAGE_MAIN = Path(__file__).resolve().parents[1] / "hep_tasks" / "__main__.py"


def submit_stage(cores: int, *args: str) -> tuple[float, dict]:
    """A stage as a DAG task runs it: ``spark-submit --master local[cores] hep_tasks/__main__.py
    ARGS``, the whole process timed (the JVM's start, imports, the stage, Spark's stop).
    Returns (seconds, the stage's summary: the JSON line it prints last)."""
    command = ["spark-submit", "--master", f"local[{cores}]", str(STAGE_MAIN), *args]
    with timed() as t:
        run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"{' '.join(command)} failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    return t["seconds"], json.loads(run.stdout.strip().splitlines()[-1])


class Phases:
    """Wall time spent in chosen functions while a stage runs: ``watch(module, "name")`` replaces
    ``module.name`` by a timed wrapper until :meth:`restore` (the stage looks them up at call time)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.results: dict[str, object] = {}
        self._patched: list[tuple[object, str, object]] = []

    def watch(self, owner: object, name: str, label: str | None = None) -> None:
        original = getattr(owner, name)
        label = label or name

        def timed_call(*args, **kwargs):
            start = time.perf_counter()
            try:
                result = original(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start
            self.results[label] = result
            return result

        setattr(owner, name, timed_call)
        self._patched.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def report(title: str, rows: list[dict], out: str | None = None) -> None:
    """Print the rows as an aligned table (and save them as JSON when ``out`` is given)."""
    print(f"\n== {title} ({machine()})")
    if rows:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys}
        print("  ".join(k.ljust(widths[k]) for k in keys))
        for r in rows:
            print("  ".join(_fmt(r.get(k)).ljust(widths[k]) for k in keys))
    if out:
        with open(out, "w") as f:
            json.dump({"title": title, "machine": machine(), "rows": rows}, f, indent=2)


def _fmt(v) -> str:
    return f"{v:,.1f}" if isinstance(v, float) else "" if v is None else str(v)
