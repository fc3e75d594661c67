"""A round of trials as one Spark job: one partition, hence one task, per trial.

The trials of a round run in parallel on the application's task slots (a round never asks for
more trials than there are slots). Each task returns one small JSON result, so the driver
receives a list as long as the round, never data. A trial's Python exception is already a
failed result (``trial.trial_task``); when the Spark job itself fails (a Python worker killed,
a lost executor), every trial of the round that has no result is failed with that error, and the
search goes on with the next round.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hep_tasks.sparkjob import collect_small
from hep_tasks.tune.trial import TrialSpec, run_trial, trial_task

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def run_round(
    spark: SparkSession,
    specs: Sequence[TrialSpec],
    function: Callable[[TrialSpec], dict[str, Any]] = run_trial,
    description: str = "",
) -> list[dict[str, Any]]:
    """Run ``specs`` in parallel Spark tasks; their results, in the order of ``specs``."""
    sc = spark.sparkContext
    sc.setJobDescription(description or f"tune: {len(specs)} trials")
    rdd = sc.parallelize([s.to_json() for s in specs], len(specs)).mapPartitions(trial_task(function))
    error = "no result came back"
    try:
        results = [json.loads(text) for text in collect_small(rdd, len(specs))]  # one small JSON per trial
    except Exception as err:  # py4j wraps the task's failure
        error = _first_line(err)
        log.warning("tune: the Spark job of trials %s failed (%s); recording them as failed", [s.number for s in specs], error)
        results = []
    finally:
        sc.setJobDescription(None)
    by_number = {r["number"]: r for r in results}
    out = []
    for spec in specs:
        if spec.number in by_number:
            out.append(_finite(by_number[spec.number]))
        else:
            out.append({"model": spec.model, "number": spec.number, "state": "fail", "error": f"the Spark task of the trial failed: {error}"})
    return out


def _finite(value: Any) -> Any:
    """NaN and infinities as None (results go into JSON manifests)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _first_line(err: BaseException) -> str:
    text = str(err)
    for marker in ("PythonException:", "Exception: ", "Error: "):
        if marker in text:
            text = text[text.index(marker) + len(marker):]
            break
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:500] if lines else type(err).__name__
