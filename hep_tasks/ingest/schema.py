"""The ingested-event table: its Arrow/Spark schema and the conversion from physics features.

Columns: ``label`` (0 QCD, 1 tt̄, 2 W+jets), ``process``, ``hlf`` (the 14 high-level features, in
``HLF_FEATURES`` order), ``particles`` (one 19-float row per real particle, ``PARTICLE_FEATURES``
order, lepton first, no padding), ``n_particles``, and lineage: ``source_file``, ``entry``.
Floats are stored as float32.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from hep_tasks.physics import HLF_FEATURES, PARTICLE_FEATURES, EventFeatures

N_HLF = len(HLF_FEATURES)
N_PARTICLE_FEATURES = len(PARTICLE_FEATURES)

ARROW_SCHEMA = pa.schema(
    [
        pa.field("label", pa.int32()),
        pa.field("process", pa.string()),
        pa.field("hlf", pa.list_(pa.float32())),
        pa.field("particles", pa.list_(pa.list_(pa.float32()))),
        pa.field("n_particles", pa.int32()),
        pa.field("source_file", pa.string()),
        pa.field("entry", pa.int64()),
    ]
)

_SPARK_TYPES = {pa.int32(): "int", pa.int64(): "bigint", pa.float32(): "float", pa.string(): "string"}


def spark_ddl(schema: pa.Schema) -> str:
    """The Spark DDL of an Arrow schema made of ints, floats, strings and (nested) lists.

    >>> spark_ddl(pa.schema([("x", pa.list_(pa.float32())), ("n", pa.int64())]))
    'x array<float>, n bigint'
    """

    def kind(t: pa.DataType) -> str:
        return f"array<{kind(t.value_type)}>" if pa.types.is_list(t) else _SPARK_TYPES[t]

    return ", ".join(f"{f.name} {kind(f.type)}" for f in schema)


SPARK_DDL = spark_ddl(ARROW_SCHEMA)


def fixed_rows(values: np.ndarray, width: int) -> pa.ListArray:
    """A (n, width) array as an Arrow list<float32> column (one list of ``width`` per row)."""
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).ravel())
    offsets = pa.array(np.arange(0, len(values) * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat)


def jagged_rows(offsets: np.ndarray, rows: np.ndarray, width: int) -> pa.ListArray:
    """Per-event row lists (``offsets`` into ``rows`` of ``width`` floats) as list<list<float32>>."""
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), fixed_rows(rows, width))


def to_record_batch(
    features: EventFeatures, label: int, process: str, source_file: str, entries: np.ndarray
) -> pa.RecordBatch:
    """The selected events of ``features`` as a batch; ``entries`` are the input events' entry numbers."""
    n = features.n_selected
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.full(n, label, dtype=np.int32)),
            pa.repeat(pa.scalar(process, pa.string()), n),
            fixed_rows(features.hlf, N_HLF),
            jagged_rows(features.particle_offsets, features.particles, N_PARTICLE_FEATURES),
            pa.array(np.diff(features.particle_offsets).astype(np.int32)),
            pa.repeat(pa.scalar(source_file, pa.string()), n),
            pa.array(np.asarray(entries)[features.selected].astype(np.int64)),
        ],
        schema=ARROW_SCHEMA,
    )
