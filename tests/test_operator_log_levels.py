"""The Spark hook forwards every line of spark-submit's output; ours logs each at its own level."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins"))

from hep_airflow.operators import LineLevels  # noqa: E402


class Recorder:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level):
        return lambda message, *args, **kwargs: self.lines.append((level, message))


def test_lines_keep_their_level_and_tracebacks_follow_their_header():
    out = Recorder()
    levels = LineLevels(out)
    for line in (
        "26/11/25 21:52:02 WARN Utils: Service 'SparkUI' could not bind on port 4040.",
        "2026-11-25 21:53:44,295 INFO hep_tasks.ingest.stage: cut-flow qcd: read 60, written 60",
        "2026-11-25 21:53:45,000 ERROR hep_tasks: ingest failed: missing collections Electron",
        "Traceback (most recent call last):",
        '  File "/x.py", line 1, in <module>',
        "hep_tasks ingest: error: missing collections Electron in file /data/x.root",
        '{"stage": "ingest", "version": "ing-1"}',
        "26/11/25 21:52:02 ERROR Executor: Exception in task 0.0",
    ):
        levels.info(line)
    assert [level for level, _ in out.lines] == ["warning", "info", "error", "error", "error", "error", "info", "error"]
