"""Per Arrow batch: ΔR-sort the particles, scale HLF and particles, one-hot the label.

Columnar: every step works on the flat particle rows of a whole batch with NumPy (one ``lexsort``
for the sort), no Python loop over events or particles.

Particle order after sorting: decreasing ΔR from the lepton (row 0 of the ingested matrix); the
lepton itself, at ΔR = 0, comes last. ΔR uses the unscaled Eta and Phi, with Δφ wrapped into [-π, π].
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hep_tasks.ingest.schema import N_HLF, N_PARTICLE_FEATURES, fixed_rows, jagged_rows
from hep_tasks.physics import PARTICLE_FEATURES, delta_r
from hep_tasks.prepare.scalers import FeatureScalers
from hep_tasks.processes import LABELS

N_CLASSES = len(LABELS)
ETA, PHI = PARTICLE_FEATURES.index("Eta"), PARTICLE_FEATURES.index("Phi")

OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("label", pa.int32()),
        pa.field("label_onehot", pa.list_(pa.float32())),
        pa.field("hlf", pa.list_(pa.float32())),
        pa.field("particles", pa.list_(pa.list_(pa.float32()))),
        pa.field("n_particles", pa.int32()),
        pa.field("source_file", pa.string()),
        pa.field("entry", pa.int64()),
    ]
)


def particle_rows(column: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets (n+1,), rows (N, 19) float64) of a list<list<float>> particle column."""
    counts = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    values = pc.list_flatten(pc.list_flatten(column)).to_numpy(zero_copy_only=False)
    return offsets, values.astype(np.float64).reshape(-1, N_PARTICLE_FEATURES)


def sort_by_delta_r(offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows reordered within each event by decreasing ΔR from the event's first row (the lepton last)."""
    counts = np.diff(offsets)
    event = np.repeat(np.arange(len(counts)), counts)
    lepton = np.repeat(offsets[:-1], counts)
    dr = delta_r(rows[:, ETA], rows[:, PHI], rows[lepton, ETA], rows[lepton, PHI])
    is_lepton = np.zeros(len(rows), dtype=np.int8)
    is_lepton[offsets[:-1][counts > 0]] = 1
    order = np.lexsort((is_lepton, -dr, event))  # last key is primary: event, then -ΔR, then lepton
    return rows[order]


def one_hot(labels: np.ndarray) -> np.ndarray:
    """One-hot rows (float32) of class labels.

    >>> one_hot(np.array([2, 0])).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    return np.eye(N_CLASSES, dtype=np.float32)[labels]


def transform_batch(batch: pa.RecordBatch, scalers: FeatureScalers) -> pa.RecordBatch:
    """An ingested-schema batch -> the prepared schema (sorted, scaled, one-hot)."""
    labels = batch.column("label").to_numpy(zero_copy_only=False).astype(np.int32)
    hlf = pc.list_flatten(batch.column("hlf")).to_numpy(zero_copy_only=False).astype(np.float64)
    offsets, rows = particle_rows(batch.column("particles"))
    rows = scalers.particles.transform(sort_by_delta_r(offsets, rows))
    return pa.RecordBatch.from_arrays(
        [
            pa.array(labels),
            fixed_rows(one_hot(labels), N_CLASSES),
            fixed_rows(scalers.hlf.transform(hlf.reshape(-1, N_HLF)), N_HLF),
            jagged_rows(offsets, rows, N_PARTICLE_FEATURES),
            pa.array(np.diff(offsets).astype(np.int32)),
            batch.column("source_file"),
            batch.column("entry"),
        ],
        schema=OUTPUT_SCHEMA,
    )
