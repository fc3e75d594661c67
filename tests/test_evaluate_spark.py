"""The evaluation on Spark (histograms, confusion counts, compared with NumPy), then plots and report.

The Spark tests use the session ``spark`` fixture of ``conftest.py``; the plot and report tests run
on metrics computed in NumPy from the same kind of toy predictions.
"""

from __future__ import annotations

import base64
import math
import re

import numpy as np
import pytest

from hep_tasks.evaluate.histograms import confusion_counts, score_histograms
from hep_tasks.evaluate.metrics import model_metrics
from hep_tasks.evaluate.plots import write_plots
from hep_tasks.evaluate.report import render_report

SCHEMA = "model string, label int, source_file string, entry bigint, probabilities array<float>, log_odds array<float>"
MODELS = {"hlf": 1.0, "inclusive": 3.0}  # model -> separation (how strongly logits follow the label)
BINS, LOW, HIGH = 24, -4.0, 4.0
PNG = b"\x89PNG\r\n\x1a\n"


def toy_scores(separation: float, n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, probabilities, log-odds) of ``n`` events whose logits favour their label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    logits = rng.normal(0.0, 1.0, (n, 3)) + separation * np.eye(3)[labels]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    log_odds = np.log(p) - np.log1p(-p)
    return labels, p.astype(np.float32), log_odds.astype(np.float32)


def numpy_histogram(labels, log_odds, bins=BINS, low=LOW, high=HIGH) -> np.ndarray:
    h = np.zeros((3, 3, bins), dtype=np.int64)
    finite = ~np.isnan(log_odds)
    index = np.minimum(np.floor((np.clip(log_odds, low, high) - low) * (bins / (high - low))), bins - 1)
    for j in range(3):
        for k in range(3):
            sel = (labels == j) & finite[:, k]
            h[j, k] += np.bincount(index[sel, k].astype(int), minlength=bins)
    return h


@pytest.fixture(scope="module")
def toy():
    """Per model (labels, probabilities, log-odds), with edge values in the first events."""
    data = {}
    for i, (model, separation) in enumerate(MODELS.items()):
        labels, p, z = toy_scores(separation, seed=i)
        z[0] = [np.inf, -np.inf, HIGH]    # overflow, underflow, exactly the upper edge
        z[1] = [LOW, 100.0, -100.0]
        data[model] = (labels, p, z)
    return data


@pytest.fixture(scope="module")
def predictions(spark, toy):
    rows = [
        (model, int(labels[e]), f"{model}/f.root", e, p[e].tolist(), z[e].tolist())
        for model, (labels, p, z) in toy.items()
        for e in range(len(labels))
    ]
    return spark.createDataFrame(rows, SCHEMA).repartition(3)


@pytest.mark.slow
def test_score_histograms_match_numpy(predictions, toy):
    hists = score_histograms(predictions, bins=BINS, low=LOW, high=HIGH)
    assert list(hists) == sorted(MODELS)
    for model, (labels, _, z) in toy.items():
        assert hists[model].dtype == np.int64 and hists[model].shape == (3, 3, BINS)
        np.testing.assert_array_equal(hists[model], numpy_histogram(labels, z))
        assert hists[model].sum() == 3 * len(labels)
    labels, _, z = toy["hlf"]
    h = hists["hlf"]
    assert h[labels[0], 0, BINS - 1] >= 1 and h[labels[0], 1, 0] >= 1  # +inf, -inf land in the edge bins


@pytest.mark.slow
def test_nan_scores_are_left_out(spark):
    rows = [("m", 1, "f", 0, [0.2, 0.5, 0.3], [math.nan, 0.0, -1.0]),
            ("m", 1, "f", 1, [0.2, math.nan, 0.3], [-1.0, 0.0, -1.0])]
    df = spark.createDataFrame(rows, SCHEMA)
    h = score_histograms(df, bins=4, low=-2.0, high=2.0)["m"]
    assert h[1, 0].tolist() == [0, 1, 0, 0] and h[1, 1].tolist() == [0, 0, 2, 0]
    assert confusion_counts(df)["m"].tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]


@pytest.mark.slow
def test_confusion_counts_match_numpy(predictions, toy):
    counts = confusion_counts(predictions)
    assert list(counts) == sorted(MODELS)
    for model, (labels, p, _) in toy.items():
        expected = np.zeros((3, 3), dtype=np.int64)
        np.add.at(expected, (labels, p.argmax(axis=1)), 1)
        np.testing.assert_array_equal(counts[model], expected)


@pytest.mark.slow
def test_bad_labels_are_named(spark):
    df = spark.createDataFrame([("m", 5, "f", 0, [0.2, 0.5, 0.3], [0.0, 0.0, 0.0])], SCHEMA)
    with pytest.raises(ValueError, match=r"model m: label 5 outside the classes 0..2"):
        confusion_counts(df)
    with pytest.raises(ValueError, match=r"lack columns \['log_odds'\]"):
        score_histograms(df.drop("log_odds"))


@pytest.fixture(scope="module")
def toy_metrics(toy) -> dict[str, dict]:
    out = {}
    for model, (labels, p, z) in toy.items():
        confusion = np.zeros((3, 3), dtype=np.int64)
        np.add.at(confusion, (labels, p.argmax(axis=1)), 1)
        out[model] = model_metrics(numpy_histogram(labels, z), confusion, score_range=(LOW, HIGH))
    return out


HISTORIES = {
    model: {"loss": [1.0, 0.7, 0.5], "val_loss": [1.1, 0.8, 0.6], "accuracy": [0.5, 0.7, 0.8],
            "val_accuracy": [0.45, 0.65, 0.75], "learning_rate": [1e-3, 1e-3, 5e-4]}
    for model in MODELS
}


@pytest.fixture(scope="module")
def plots(toy_metrics, tmp_path_factory):
    return write_plots(toy_metrics, HISTORIES, tmp_path_factory.mktemp("plots"))


def test_plots_are_png_files(plots):
    expected = {"roc_ttbar_vs_qcd", "roc_one_vs_rest"} | {f"{k}/{m}" for k in ("confusion", "history") for m in MODELS}
    assert set(plots) == expected
    for path in plots.values():
        assert path.read_bytes()[:8] == PNG, path
        assert path.stat().st_size > 5_000


def test_report_is_self_contained(toy_metrics, plots, tmp_path):
    run_info = {
        "datasets": {"prepare": "v-abc123", "train": "v-def456"},
        "parameters": {"epochs": 3, "batch_size": 256, "note": "<script>alert(1)</script>"},
        "timings": {"scoring_s": 12.5, "evaluate_s": 3.25},
    }
    page = render_report(title="Evaluation <test>", metrics=toy_metrics, histories=HISTORIES, plots=plots,
                         run_info=run_info)
    (tmp_path / "report.html").write_text(page)
    assert page.startswith("<!DOCTYPE html>")
    assert "Evaluation &lt;test&gt;" in page and "<script>" not in page and "&lt;script&gt;" in page
    for model, m in toy_metrics.items():
        assert f"Model: {model}" in page
        assert f"{m['auc_ttbar_vs_qcd']:.4f}" in page
        assert f"{m['auc_one_vs_rest']['wjets']:.4f}" in page
        assert f"{100 * m['ttbar_efficiency_at_qcd_acceptance']['0.025']:.1f} %" in page
    for text in ("v-abc123", "12.5 s", "2.5 %", "10 %", "QCD acceptance"):
        assert text in page, text
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(plots)
    assert all(base64.b64decode(i)[:8] == PNG for i in images)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing external
