"""Spark side of the evaluation: per-model score histograms and confusion counts.

Each function is one Spark aggregation over the scored test split; only the aggregate (at most
:data:`MAX_MODELS` models × 3 × 3 × (bins + 1) rows) comes to the driver, through
:func:`~hep_tasks.sparkjob.collect_small`. No per-row Python.

The input, ``predictions``, has one row per (model, event): ``model`` string, ``label`` int (true
class, 0 = QCD, 1 = tt̄, 2 = W+jets), ``probabilities`` array<float> (softmax, index = class) and
``log_odds`` array<float> (log(p_k / (1 − p_k)) per class, the ROC score). Rows whose score is
NULL or NaN are not counted (their number is logged); the quality suite
(:mod:`hep_tasks.quality.model_suite`) fails such predictions.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from hep_tasks.evaluate.metrics import N_CLASSES, SCORE_BINS, SCORE_HIGH, SCORE_LOW

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

#: Most models one evaluation aggregates (bounds what comes to the driver).
MAX_MODELS = 32


def score_histograms(
    predictions: DataFrame, *, bins: int = SCORE_BINS, low: float = SCORE_LOW, high: float = SCORE_HIGH
) -> dict[str, np.ndarray]:
    """Per model, counts of events by true label, class and log-odds bin.

    Args:
        predictions: the scored events (module docstring).
        bins, low, high: ``bins`` equal bins over [``low``, ``high``] of log-odds
            (dimensionless); bin b holds low + b·w ≤ score < low + (b + 1)·w, w = (high − low) / bins.
            Scores are clipped into [low, high] first, so underflow lands in bin 0 and overflow
            (including +inf, and exactly ``high``) in bin ``bins - 1``.

    Returns:
        model -> int64 array of shape (3 true labels, 3 classes, ``bins``); ``[j, k, b]`` counts
        events of label j whose ``log_odds[k]`` falls in bin b.
    """
    from pyspark.sql import functions as F

    if bins < 1 or not low < high:
        raise ValueError(f"need bins >= 1 and low < high, got bins={bins}, low={low}, high={high}")
    _check_columns(predictions, ("model", "label", "log_odds"))
    score = F.col("score").cast("double")
    clipped = F.least(F.greatest(score, F.lit(float(low))), F.lit(float(high)))
    index = F.least(F.floor((clipped - float(low)) * (bins / (high - low))), F.lit(bins - 1)).cast("int")
    counts = (
        predictions.select("model", "label", F.posexplode("log_odds").alias("k", "score"))
        .groupBy("model", "label", "k", F.when(score.isNotNull() & ~F.isnan(score), index).alias("bin"))
        .count()
    )
    rows = _collect(counts, MAX_MODELS * N_CLASSES * N_CLASSES * (bins + 1))
    out: dict[str, np.ndarray] = {}
    skipped: dict[str, int] = {}
    for row in rows:
        model = _model(row)
        hist = out.setdefault(model, np.zeros((N_CLASSES, N_CLASSES, bins), dtype=np.int64))
        _check_index(row, "label", model)
        _check_index(row, "k", model, what="log_odds index")
        if row["bin"] is None:
            skipped[model] = skipped.get(model, 0) + row["count"]
        else:
            hist[row["label"], row["k"], row["bin"]] += row["count"]
    for model, n in sorted(skipped.items()):
        log.warning("model %s: %d log-odds values are NULL or NaN, left out of the score histograms", model, n)
    log.info("score histograms: %d models, %d bins over [%g, %g] log-odds", len(out), bins, low, high)
    return dict(sorted(out.items()))


def confusion_counts(predictions: DataFrame) -> dict[str, np.ndarray]:
    """Per model, a (3, 3) int64 matrix: rows = true label, columns = predicted class.

    The predicted class is the argmax of ``probabilities`` (the first one on ties). Rows with a
    NULL or NaN probability are not counted (their number is logged).
    """
    from pyspark.sql import functions as F

    _check_columns(predictions, ("model", "label", "probabilities"))
    bad = "exists(probabilities, x -> x IS NULL OR isnan(x)) OR probabilities IS NULL"
    predicted = F.expr(f"CASE WHEN NOT coalesce({bad}, true) "
                       f"THEN array_position(probabilities, array_max(probabilities)) - 1 END")
    counts = predictions.groupBy("model", "label", predicted.cast("int").alias("predicted")).count()
    rows = _collect(counts, MAX_MODELS * N_CLASSES * (N_CLASSES + 1))
    out: dict[str, np.ndarray] = {}
    skipped: dict[str, int] = {}
    for row in rows:
        model = _model(row)
        matrix = out.setdefault(model, np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64))
        _check_index(row, "label", model)
        if row["predicted"] is None:
            skipped[model] = skipped.get(model, 0) + row["count"]
            continue
        _check_index(row, "predicted", model, what="probabilities index")
        matrix[row["label"], row["predicted"]] += row["count"]
    for model, n in sorted(skipped.items()):
        log.warning("model %s: %d events with NULL or NaN probabilities, left out of the confusion matrix", model, n)
    return dict(sorted(out.items()))


def _check_columns(df: DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"predictions lack columns {missing} (columns: {', '.join(df.columns)})")


def _collect(df: DataFrame, max_rows: int) -> list:
    from hep_tasks.sparkjob import collect_small

    return collect_small(df, max_rows)


def _model(row) -> str:
    if row["model"] is None:
        raise ValueError("predictions have rows with a NULL model name")
    return row["model"]


def _check_index(row, column: str, model: str, what: str | None = None) -> None:
    value = row[column]
    if value is None or not 0 <= value < N_CLASSES:
        raise ValueError(
            f"model {model}: {what or column} {value!r} outside the classes 0..{N_CLASSES - 1} ({row['count']} rows)"
        )
