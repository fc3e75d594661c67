"""ROC, AUC, efficiencies and confusion metrics on tiny histograms computed by hand (pure NumPy)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hep_tasks.evaluate.metrics import (
    MAX_CURVE_POINTS,
    accuracy,
    auc,
    downsample_curve,
    efficiency_at,
    model_metrics,
    normalise_rows,
    roc_curve,
)


def test_perfect_separation_gives_auc_1():
    fpr, tpr = roc_curve([0, 0, 5], [4, 0, 0])
    assert fpr.tolist() == [0.0, 0.0, 1.0]
    assert tpr.tolist() == [0.0, 1.0, 1.0]
    assert auc(fpr, tpr) == 1.0


def test_inverted_separation_gives_auc_0():
    assert auc(*roc_curve([5, 0], [0, 4])) == 0.0


def test_identical_samples_give_auc_half():
    fpr, tpr = roc_curve([2, 4, 6], [1, 2, 3])
    np.testing.assert_allclose(fpr, tpr)
    assert auc(fpr, tpr) == pytest.approx(0.5)


def test_all_in_one_bin_is_a_tie():
    fpr, tpr = roc_curve([0, 7, 0], [0, 3, 0])
    assert fpr.tolist() == [0.0, 1.0] and tpr.tolist() == [0.0, 1.0]
    assert auc(fpr, tpr) == 0.5


def test_two_bins_by_hand():
    """Signal [1, 3], background [3, 1] (low bin, high bin).

    High bin first: TPR 3/4 at FPR 1/4, then (1, 1). Trapezoids: 0.25·0.75/2 + 0.75·(0.75 + 1)/2
    = 0.75. Mann–Whitney: 9 wins (3 high signal × 3 low background), 6 ties at half credit,
    1 loss, over 16 pairs: (9 + 3)/16 = 0.75.
    """
    fpr, tpr = roc_curve([1, 3], [3, 1])
    assert fpr.tolist() == [0.0, 0.25, 1.0]
    assert tpr.tolist() == [0.0, 0.75, 1.0]
    assert auc(fpr, tpr) == pytest.approx(0.75)


def test_empty_bins_add_no_points():
    fpr, tpr = roc_curve([1, 0, 0, 1, 0], [1, 0, 0, 0, 0])
    assert fpr.tolist() == [0.0, 0.0, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 1.0]


def test_auc_matches_pair_counting_on_random_histograms():
    rng = np.random.default_rng(1)
    s, b = rng.integers(0, 50, 40), rng.integers(0, 50, 40)
    above_b = np.cumsum(b) - b  # background strictly below each bin
    expected = (np.sum(s * above_b) + 0.5 * np.sum(s * b)) / (s.sum() * b.sum())
    assert auc(*roc_curve(s, b)) == pytest.approx(expected)


@pytest.mark.parametrize(("signal", "background", "match"), [
    ([0, 0], [1, 1], "signal histogram is empty"),
    ([1, 1], [0, 0], "background histogram is empty"),
    ([1, 1], [1, 1, 1], "differ in bins"),
    ([1, -1], [1, 1], "negative"),
])
def test_roc_rejects_bad_histograms(signal, background, match):
    with pytest.raises(ValueError, match=match):
        roc_curve(signal, background)


def test_efficiency_interpolates_linearly():
    fpr, tpr = [0.0, 0.25, 1.0], [0.0, 0.75, 1.0]
    eff = efficiency_at(fpr, tpr, [0.0, 0.1, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(eff, [0.0, 0.3, 0.75, 0.75 + 0.25 / 3, 1.0])


def test_efficiency_on_a_vertical_segment_takes_the_highest():
    fpr, tpr = roc_curve([0, 1, 3], [1, 1, 0])  # high bin: 3/4 of signal, no background
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    eff = efficiency_at(fpr, tpr, [0.0, 0.25, 0.5])
    np.testing.assert_allclose(eff, [0.75, 0.875, 1.0])


def test_efficiency_rejects_rates_outside_0_1():
    with pytest.raises(ValueError, match="fractions in"):
        efficiency_at([0.0, 1.0], [0.0, 1.0], [0.01, 1.5])


def test_downsample_keeps_end_points():
    x = np.linspace(0, 1, 2001)
    fx, fy = downsample_curve(x, x**2)
    assert len(fx) <= MAX_CURVE_POINTS
    assert (fx[0], fy[0], fx[-1], fy[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fx) > 0)


def test_confusion_normalisation_and_accuracy():
    c = np.array([[8, 1, 1], [0, 5, 0], [2, 2, 6]])
    n = normalise_rows(c)
    np.testing.assert_allclose(n, [[0.8, 0.1, 0.1], [0.0, 1.0, 0.0], [0.2, 0.2, 0.6]])
    assert accuracy(c) == pytest.approx(19 / 25)
    assert np.isnan(normalise_rows(np.array([[1, 0], [0, 0]]))[1]).all()


def toy_histogram() -> tuple[np.ndarray, np.ndarray]:
    """4 bins; QCD low, tt̄ high in tt̄ log-odds; confusion consistent with the event counts."""
    h = np.zeros((3, 3, 4), dtype=np.int64)
    h[0, 1] = [3, 1, 0, 0]   # QCD events in tt̄ log-odds
    h[1, 1] = [0, 0, 1, 3]   # tt̄ events in tt̄ log-odds
    h[2, 1] = [0, 2, 2, 0]   # W+jets events in tt̄ log-odds
    h[0, 0] = [0, 0, 1, 3]   # QCD log-odds: QCD high ...
    h[1, 0] = [4, 0, 0, 0]
    h[2, 0] = [2, 2, 0, 0]
    h[0, 2] = [4, 0, 0, 0]   # W+jets log-odds
    h[1, 2] = [3, 1, 0, 0]
    h[2, 2] = [0, 0, 0, 4]
    confusion = np.array([[3, 1, 0], [0, 4, 0], [0, 1, 3]])
    return h, confusion


def test_model_metrics_by_hand():
    h, confusion = toy_histogram()
    m = model_metrics(h, confusion)
    assert set(m) == {
        "events", "events_per_class", "accuracy", "auc_ttbar_vs_qcd", "auc_one_vs_rest",
        "ttbar_efficiency_at_qcd_acceptance", "confusion", "roc", "score_binning",
    }
    # tt̄ vs QCD: tt̄ [0,0,1,3] vs QCD [3,1,0,0] → fully separated
    assert m["auc_ttbar_vs_qcd"] == 1.0
    assert m["ttbar_efficiency_at_qcd_acceptance"] == {"0.01": 1.0, "0.025": 1.0, "0.05": 1.0, "0.1": 1.0}
    # tt̄ vs rest: signal [0,0,1,3], background QCD+W [3,3,2,0] → (3·8 + 1·6 + 0.5·1·2)/(4·8)
    assert m["auc_one_vs_rest"]["ttbar"] == pytest.approx((24 + 6 + 1) / 32)
    # QCD vs rest: signal [0,0,1,3], background [6,2,0,0] → separated; W+jets likewise
    assert m["auc_one_vs_rest"] == {"qcd": 1.0, "ttbar": pytest.approx(31 / 32), "wjets": 1.0}
    assert m["accuracy"] == pytest.approx(10 / 12)
    assert m["events"] == 12 and m["events_per_class"] == {"qcd": 4, "ttbar": 4, "wjets": 4}
    assert m["confusion"]["classes"] == ["qcd", "ttbar", "wjets"]
    assert m["confusion"]["counts"] == confusion.tolist()
    assert m["confusion"]["normalised"][0] == [0.75, 0.25, 0.0]
    roc = m["roc"]["ttbar_vs_qcd"]
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0 and len(roc["fpr"]) == len(roc["tpr"])
    assert set(m["roc"]["one_vs_rest"]) == {"qcd", "ttbar", "wjets"}
    assert m["score_binning"] == {"variable": "log_odds", "bins": 4, "low": -15.0, "high": 15.0, "width": 7.5}
    json.dumps(m, allow_nan=False)


def test_model_metrics_efficiency_at_custom_rates():
    h, confusion = toy_histogram()
    h[0, 1] = [1, 1, 1, 1]  # QCD spread evenly: tt̄ [0,0,1,3]
    m = model_metrics(h, confusion, background_rates=(0.25, 0.5))
    # curve: (0,0) → (0.25, 0.75) → (0.5, 1.0) → (0.75, 1) → (1, 1)
    assert m["ttbar_efficiency_at_qcd_acceptance"] == {"0.25": 0.75, "0.5": 1.0}
    assert m["auc_ttbar_vs_qcd"] == pytest.approx(0.25 * 0.75 / 2 + 0.25 * 1.75 / 2 + 0.5)


def test_model_metrics_without_a_class_gives_none():
    h, confusion = toy_histogram()
    h[1] = 0
    confusion[1] = 0
    m = model_metrics(h, confusion)
    assert m["auc_ttbar_vs_qcd"] is None and m["roc"]["ttbar_vs_qcd"] is None
    assert m["auc_one_vs_rest"]["ttbar"] is None and m["auc_one_vs_rest"]["qcd"] == 1.0
    assert set(m["ttbar_efficiency_at_qcd_acceptance"].values()) == {None}
    assert m["confusion"]["normalised"][1] == [None, None, None]
    json.dumps(m, allow_nan=False)


def test_model_metrics_downsamples_long_curves():
    rng = np.random.default_rng(3)
    h = rng.integers(1, 20, (3, 3, 2000))
    confusion = np.diag(h[:, 0, :].sum(axis=1))
    m = model_metrics(h, confusion)
    assert len(m["roc"]["ttbar_vs_qcd"]["fpr"]) <= MAX_CURVE_POINTS
    assert len(json.dumps(m)) < 100_000


def test_model_metrics_checks_shapes():
    with pytest.raises(ValueError, match=r"shape \(3, 3, bins\)"):
        model_metrics(np.zeros((2, 3, 5)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        model_metrics(np.zeros((3, 3, 5)), np.zeros((2, 2)))
