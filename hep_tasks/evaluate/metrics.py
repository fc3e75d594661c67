"""Classifier metrics from binned scores: ROC, AUC, efficiency at fixed background acceptance.

Pure NumPy; the counts come from :mod:`hep_tasks.evaluate.histograms`.

Conventions:

- A *score histogram* counts events per score bin, bins in increasing score. A model's
  histograms have shape ``(3, 3, bins)``: ``h[j, k, b]`` is the number of events of true label
  ``j`` whose log-odds of class ``k`` fall in bin ``b`` (labels 0 = QCD, 1 = tt̄, 2 = W+jets).
- ROC: the threshold is scanned from the highest bin down; after each bin, the background
  acceptance (false-positive rate, FPR) is the fraction of background events at or above the
  threshold, the signal efficiency (true-positive rate, TPR) likewise for signal. Curves start at
  (0, 0) and end at (1, 1); bins empty in both samples add no point.
- Ties: events in the same bin cannot be ordered, so the curve runs straight through a bin and
  the trapezoid rule gives each signal–background pair in one bin half credit, as the
  Mann–Whitney U statistic does for ties.
- Resolution: AUC and efficiencies are exact up to the bin width, (high − low) / bins = 0.015 in
  log-odds with the defaults (2000 bins over [−15, 15]); scores outside the range share the edge
  bins, so the curve is coarse only beyond a probability of about 1 − 3e-7 (or below 3e-7).
- Efficiency at a fixed acceptance: linear interpolation on the curve; where the curve is
  vertical (signal only in a bin), the higher efficiency is taken.

>>> fpr, tpr = roc_curve([1, 3], [3, 1])     # signal mostly in the high bin
>>> fpr.tolist(), tpr.tolist()
([0.0, 0.25, 1.0], [0.0, 0.75, 1.0])
>>> auc(fpr, tpr)
0.75
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from hep_tasks.processes import LABELS, PROCESS_OF_LABEL

log = logging.getLogger(__name__)

#: Default binning of the log-odds scores: bins over [low, high].
SCORE_BINS = 2000
SCORE_LOW = -15.0
SCORE_HIGH = 15.0
#: QCD acceptances at which the tt̄ efficiency is quoted (ARCHITECTURE §4).
BACKGROUND_RATES: tuple[float, ...] = (0.01, 0.025, 0.05, 0.10)
#: Most points of a ROC curve kept in the metrics (for plotting).
MAX_CURVE_POINTS = 500
#: Significant digits of the ROC points stored in the metrics.
CURVE_DIGITS = 6

N_CLASSES = len(PROCESS_OF_LABEL)
SIGNAL, BACKGROUND = LABELS["ttbar"], LABELS["qcd"]


def roc_curve(
    signal: Sequence[int] | np.ndarray, background: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr)`` of two score histograms with the same bins (see module docstring).

    Args:
        signal, background: event counts per score bin, bins in increasing score.

    Returns:
        Background acceptance and signal efficiency (float64 arrays, both non-decreasing), from
        (0, 0) to (1, 1).

    >>> [a.tolist() for a in roc_curve([0, 2], [2, 0])]   # perfectly separated
    [[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]]
    """
    s, b = _counts(signal, "signal"), _counts(background, "background")
    if s.shape != b.shape:
        raise ValueError(f"signal and background histograms differ in bins: {s.shape} vs {b.shape}")
    if s.sum() == 0 or b.sum() == 0:
        empty = "signal" if s.sum() == 0 else "background"
        raise ValueError(f"{empty} histogram is empty ({s.size} bins): no ROC curve")
    s, b = s[::-1], b[::-1]  # highest score first
    moves = (s + b) > 0
    tpr = np.cumsum(s)[moves] / s.sum()
    fpr = np.cumsum(b)[moves] / b.sum()
    return np.concatenate(([0.0], fpr)), np.concatenate(([0.0], tpr))


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under the ROC curve by the trapezoid rule (ties within a bin count half)."""
    fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    return float(np.trapezoid(tpr, fpr))


def efficiency_at(fpr: np.ndarray, tpr: np.ndarray, rates: Sequence[float]) -> np.ndarray:
    """Signal efficiency at each background acceptance of ``rates`` (fractions in [0, 1]).

    Linear interpolation on the ROC curve; at an acceptance where the curve is vertical the
    highest efficiency is taken.

    >>> efficiency_at([0.0, 0.25, 1.0], [0.0, 0.75, 1.0], [0.1, 0.25, 0.5]).round(4).tolist()
    [0.3, 0.75, 0.8333]
    """
    fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    x = np.asarray(rates, dtype=float)
    if np.any(~np.isfinite(x)) or np.any((x < 0) | (x > 1)):
        raise ValueError(f"background rates must be fractions in [0, 1], got {list(rates)}")
    last = np.concatenate((np.diff(fpr) > 0, [True]))  # last (highest-efficiency) point of each acceptance
    return np.interp(x, fpr[last], tpr[last])


def downsample_curve(
    fpr: np.ndarray, tpr: np.ndarray, max_points: int = MAX_CURVE_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a curve, evenly spaced in index, end points kept."""
    n = len(fpr)
    if n <= max_points:
        return np.asarray(fpr), np.asarray(tpr)
    keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return np.asarray(fpr)[keep], np.asarray(tpr)[keep]


def accuracy(confusion: np.ndarray) -> float:
    """Fraction of events whose predicted class (argmax) is the true one: trace / total."""
    c = _confusion(confusion)
    total = c.sum()
    if total == 0:
        raise ValueError("confusion matrix has no events: accuracy undefined")
    return float(np.trace(c) / total)


def normalise_rows(confusion: np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix: the fraction of each true class predicted as each class.

    A true class without events gives a row of NaN.

    >>> normalise_rows(np.array([[3, 1], [0, 0]])).tolist()
    [[0.75, 0.25], [nan, nan]]
    """
    c = _confusion(confusion).astype(float)
    totals = c.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, c / np.where(totals > 0, totals, 1), np.nan)


def model_metrics(
    histogram: np.ndarray,
    confusion: np.ndarray,
    *,
    background_rates: Sequence[float] = BACKGROUND_RATES,
    score_range: tuple[float, float] = (SCORE_LOW, SCORE_HIGH),
) -> dict[str, Any]:
    """All metrics of one model, as a JSON-ready dict (plain floats, ints, lists; no NaN).

    Args:
        histogram: ``(3, 3, bins)`` log-odds counts (true label, class, bin).
        confusion: ``(3, 3)`` counts, rows = true label, columns = predicted class (argmax).
        background_rates: QCD acceptances at which the tt̄ efficiency is quoted.
        score_range: the (low, high) log-odds range of the histogram bins, recorded with the
            resolution caveat.

    Returns:
        ``events``, ``events_per_class`` (by process name), ``accuracy``, ``auc_ttbar_vs_qcd``
        (signal tt̄, background QCD, score the tt̄ log-odds), ``auc_one_vs_rest`` (per process:
        that class against the two others, on its own log-odds),
        ``ttbar_efficiency_at_qcd_acceptance`` (keys ``f"{rate:g}"``, e.g. ``"0.01"``, ``"0.1"``),
        ``confusion`` (``classes``, ``counts``, ``normalised`` rows), ``roc``
        (``ttbar_vs_qcd`` and ``one_vs_rest`` per process, each ``{"fpr": [...], "tpr": [...]}``,
        at most :data:`MAX_CURVE_POINTS` points) and ``score_binning``. A quantity that is
        undefined (a class without events) is ``None``.
    """
    h = np.asarray(histogram)
    if h.ndim != 3 or h.shape[:2] != (N_CLASSES, N_CLASSES) or h.shape[2] < 1:
        raise ValueError(f"histogram must have shape ({N_CLASSES}, {N_CLASSES}, bins), got {h.shape}")
    c = _confusion(confusion)
    if c.shape != (N_CLASSES, N_CLASSES):
        raise ValueError(f"confusion must have shape ({N_CLASSES}, {N_CLASSES}), got {c.shape}")
    per_class = c.sum(axis=1)
    hist_events = h[:, 0, :].sum(axis=1)
    if not np.array_equal(per_class, hist_events):
        log.warning("events per class differ: confusion %s, score histograms %s",
                    per_class.tolist(), hist_events.tolist())
    names = [PROCESS_OF_LABEL[k] for k in range(N_CLASSES)]

    ttbar_qcd = _roc_or_none(h[SIGNAL, SIGNAL], h[BACKGROUND, SIGNAL], "tt̄ vs QCD")
    one_vs_rest = {
        names[k]: _roc_or_none(h[k, k], h[:, k].sum(axis=0) - h[k, k], f"{names[k]} vs rest") for k in range(N_CLASSES)
    }
    rates = [float(r) for r in background_rates]
    if ttbar_qcd is None:
        efficiencies: dict[str, float | None] = {f"{r:g}": None for r in rates}
    else:
        efficiencies = {f"{r:g}": float(e) for r, e in zip(rates, efficiency_at(*ttbar_qcd, rates))}
    low, high = (float(v) for v in score_range)
    total = int(c.sum())
    return {
        "events": total,
        "events_per_class": {names[k]: int(per_class[k]) for k in range(N_CLASSES)},
        "accuracy": accuracy(c) if total else None,
        "auc_ttbar_vs_qcd": _auc_or_none(ttbar_qcd),
        "auc_one_vs_rest": {name: _auc_or_none(curve) for name, curve in one_vs_rest.items()},
        "ttbar_efficiency_at_qcd_acceptance": efficiencies,
        "confusion": {
            "classes": names,
            "counts": c.astype(int).tolist(),
            "normalised": [[None if np.isnan(v) else float(v) for v in row] for row in normalise_rows(c)],
        },
        "roc": {
            "ttbar_vs_qcd": _curve_json(ttbar_qcd),
            "one_vs_rest": {name: _curve_json(curve) for name, curve in one_vs_rest.items()},
        },
        "score_binning": {
            "variable": "log_odds", "bins": int(h.shape[2]), "low": low, "high": high,
            "width": (high - low) / h.shape[2],
        },
    }


def _roc_or_none(signal: np.ndarray, background: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray] | None:
    if signal.sum() == 0 or background.sum() == 0:
        log.warning("no ROC curve for %s: %d signal and %d background events", what, signal.sum(), background.sum())
        return None
    return roc_curve(signal, background)


def _auc_or_none(curve: tuple[np.ndarray, np.ndarray] | None) -> float | None:
    return None if curve is None else auc(*curve)


def _curve_json(curve: tuple[np.ndarray, np.ndarray] | None) -> dict[str, list[float]] | None:
    if curve is None:
        return None
    fpr, tpr = downsample_curve(*curve)
    return {"fpr": _rounded(fpr), "tpr": _rounded(tpr)}


def _rounded(values: np.ndarray) -> list[float]:
    return [float(f"{v:.{CURVE_DIGITS}g}") for v in values]


def _counts(values: Sequence[int] | np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{what} histogram must be a non-empty 1-d array of counts, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"{what} histogram has negative or non-finite counts: {a[~np.isfinite(a) | (a < 0)][:5]}")
    return a.astype(np.float64)


def _confusion(confusion: np.ndarray) -> np.ndarray:
    c = np.asarray(confusion)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {c.shape}")
    if np.any(c < 0):
        raise ValueError(f"confusion matrix has negative counts: {c.tolist()}")
    return c
