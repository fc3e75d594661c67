"""Prepare, per batch: ΔR sorting on constructed events, scaling, one-hot, artifact round trip."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from hep_tasks.ingest.schema import ARROW_SCHEMA, fixed_rows, jagged_rows
from hep_tasks.physics import HLF_FEATURES, PARTICLE_FEATURES
from hep_tasks.prepare.scalers import FeatureScalers, MinMaxScaler, StandardScaler
from hep_tasks.prepare.transform import ETA, PHI, one_hot, particle_rows, sort_by_delta_r, transform_batch


def _rows(eta_phi: list[tuple[float, float]]) -> np.ndarray:
    rows = np.zeros((len(eta_phi), len(PARTICLE_FEATURES)))
    rows[:, ETA], rows[:, PHI] = np.array(eta_phi).T
    rows[:, 0] = np.arange(len(eta_phi))  # remember the original position in column E
    return rows


def test_sort_by_decreasing_delta_r_with_the_lepton_last():
    # event 0: lepton at (0, 3.0); particles at ΔR 0.1, 2.0 (across the ±π boundary: ΔR(3.0, -1.283) = 2.0), 0.5
    # event 1: lepton alone; event 2: lepton + a particle at the same place (ΔR 0) + one at ΔR 1
    ev0 = [(0.0, 3.0), (0.1, 3.0), (0.0, 3.0 + 2.0 - 2 * math.pi), (0.0, 2.5)]
    ev1 = [(1.0, 1.0)]
    ev2 = [(0.0, 0.0), (0.0, 0.0), (1.0, 0.0)]
    rows = np.vstack([_rows(ev0), _rows(ev1), _rows(ev2)])
    offsets = np.array([0, 4, 5, 8])
    out = sort_by_delta_r(offsets, rows)
    assert out[0:4, 0].tolist() == [2, 3, 1, 0]
    assert out[4:5, 0].tolist() == [0]
    assert out[5:8, 0].tolist() == [2, 1, 0]  # the lepton stays last even when tied at ΔR = 0


def test_sort_by_delta_r_equals_a_lexsort_by_event_then_decreasing_delta_r_then_lepton_last():
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 30, size=200)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    rows = np.zeros((offsets[-1], len(PARTICLE_FEATURES)))
    rows[:, ETA] = rng.choice([-1.0, 0.0, 0.5, 1.0], size=len(rows))  # few values: many ties in ΔR
    rows[:, PHI] = rng.choice([-3.0, 0.0, 3.0], size=len(rows))
    rows[:, 0] = np.arange(len(rows))
    event = np.repeat(np.arange(len(counts)), counts)
    lepton = np.repeat(offsets[:-1], counts)
    dr = np.hypot(rows[:, ETA] - rows[lepton, ETA], (rows[:, PHI] - rows[lepton, PHI] + math.pi) % (2 * math.pi) - math.pi)
    is_lepton = np.zeros(len(rows), dtype=np.int8)
    is_lepton[offsets[:-1][counts > 0]] = 1
    expected = rows[np.lexsort((is_lepton, -dr, event))]
    assert sort_by_delta_r(offsets, rows)[:, 0].tolist() == expected[:, 0].tolist()


def test_one_hot_rows():
    assert one_hot(np.array([0, 1, 2, 1])).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]]


def test_scalers_transform_like_numpy_and_round_trip():
    rng = np.random.default_rng(1)
    hlf = rng.normal(size=(50, len(HLF_FEATURES)))
    parts = rng.normal(2.0, 3.0, size=(200, len(PARTICLE_FEATURES)))
    parts[:, -1] = 1.0  # a constant feature keeps std 1 instead of dividing by zero
    scalers = FeatureScalers(
        MinMaxScaler(HLF_FEATURES, hlf.min(axis=0), hlf.max(axis=0)),
        StandardScaler(PARTICLE_FEATURES, parts.mean(axis=0), parts.std(axis=0)),
        {"split": "train", "events": 50, "particles": 200},
    )
    scaled = scalers.hlf.transform(hlf)
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    std = scalers.particles.transform(parts)
    np.testing.assert_allclose(std[:, :-1].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(std[:, :-1].std(axis=0), 1.0)
    assert (std[:, -1] == 0.0).all()
    np.testing.assert_allclose(scalers.particles.inverse(std)[:, :-1], parts[:, :-1])
    again = FeatureScalers.loads(scalers.dumps())
    assert again.to_dict() == scalers.to_dict()
    for a, b in ((again.hlf.minimum, scalers.hlf.minimum), (again.particles.std, scalers.particles.std)):
        np.testing.assert_array_equal(a, b)
    assert again.hlf.features == HLF_FEATURES and again.fitted_on == scalers.fitted_on


def _ingested_batch() -> pa.RecordBatch:
    counts = np.array([3, 1])
    rows = np.vstack([_rows([(0.0, 0.0), (0.2, 0.0), (1.0, 0.0)]), _rows([(0.5, 0.5)])])
    offsets = np.array([0, 3, 4])
    hlf = np.arange(2 * len(HLF_FEATURES), dtype=float).reshape(2, -1)
    return pa.RecordBatch.from_arrays(
        [
            pa.array([1, 2], pa.int32()),
            pa.array(["ttbar", "wjets"]),
            fixed_rows(hlf, len(HLF_FEATURES)),
            jagged_rows(offsets, rows, len(PARTICLE_FEATURES)),
            pa.array(counts.astype(np.int32)),
            pa.array(["a.root", "b.root"]),
            pa.array([4, 9], pa.int64()),
        ],
        schema=ARROW_SCHEMA,
    )


def test_transform_batch_sorts_scales_and_one_hots():
    batch = _ingested_batch()
    n_p = len(PARTICLE_FEATURES)
    scalers = FeatureScalers(
        MinMaxScaler(HLF_FEATURES, np.zeros(len(HLF_FEATURES)), np.full(len(HLF_FEATURES), 28.0)),
        StandardScaler(PARTICLE_FEATURES, np.zeros(n_p), np.full(n_p, 2.0)),
        {},
    )
    out = transform_batch(batch, scalers)
    assert out.column("label_onehot").to_pylist() == [[0, 1, 0], [0, 0, 1]]
    assert out.column("hlf").to_pylist()[1][0] == pytest.approx(14 / 28)
    offsets, rows = particle_rows(out.column("particles"))
    assert offsets.tolist() == [0, 3, 4]
    assert (rows[:3, 0] * 2).tolist() == [2.0, 1.0, 0.0]  # original positions, scaled by 1/2
    assert rows[:3, ETA].tolist() == pytest.approx([0.5, 0.1, 0.0])
    assert out.column("n_particles").to_pylist() == [3, 1]
    assert out.column("source_file").to_pylist() == ["a.root", "b.root"] and out.column("entry").to_pylist() == [4, 9]
