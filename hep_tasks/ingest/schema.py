"""The ingested-event table: its Arrow/Spark schema and the conversion from physics features.

Columns: ``label`` (0 QCD, 1 tt̄, 2 W+jets), ``process``, ``hlf`` (the 14 high-level features, in
``HLF_FEATURES`` order), ``particles`` (one 19-float row per real particle, ``PARTICLE_FEATURES``
order, lepton first, no padding), ``n_particles``, and lineage: ``source_file``, ``entry``.
Floats are stored as float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from hep_tasks.physics import HLF_FEATURES, PARTICLE_FEATURES

if TYPE_CHECKING:
    from hep_tasks.physics.features import EventFeatures

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

_SPARK_TYPES = {pa.int32(): "int", pa.int64(): "bigint", pa.float32(): "float", pa.float64(): "double", pa.string(): "string"}


def spark_ddl(schema: pa.Schema) -> str:
    """The Spark DDL of an Arrow schema made of ints, floats, doubles, strings and (nested) lists.

    >>> spark_ddl(pa.schema([("x", pa.list_(pa.float32())), ("n", pa.int64())]))
    'x array<float>, n bigint'
    """

    def kind(t: pa.DataType) -> str:
        return f"array<{kind(t.value_type)}>" if pa.types.is_list(t) else _SPARK_TYPES[t]

    return ", ".join(f"{f.name} {kind(f.type)}" for f in schema)


SPARK_DDL = spark_ddl(ARROW_SCHEMA)


def numeric(values: np.ndarray) -> pa.Array:
    """A 1-d NumPy array as an Arrow array over the same memory.

    Built from buffers: ``pa.array`` on NumPy input imports pandas (≈ 1 s in every fresh Python
    worker), which the ingest tasks otherwise never need.
    """
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def numpy_of(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The values of a null-free integer or floating-point Arrow array as NumPy (a view of one chunk).

    Not ``to_numpy``, which imports pandas, for the same reason as :func:`numeric`.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    kind = "f" if pa.types.is_floating(array.type) else "i" if pa.types.is_signed_integer(array.type) else "u"
    if array.null_count or not (kind == "f" or pa.types.is_integer(array.type)):
        raise TypeError(f"numpy_of: {array.type} array with {array.null_count} nulls; expected null-free numbers")
    dtype = np.dtype(f"{kind}{array.type.bit_width // 8}")
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def repeated(text: str, n: int) -> pa.StringArray:
    """``text`` ``n`` times as an Arrow string array (without ``pa.scalar``, which imports pandas).

    >>> repeated("ab", 2).to_pylist()
    ['ab', 'ab']
    """
    data = text.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(data)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data * n)])


def fixed_rows(values: np.ndarray, width: int) -> pa.ListArray:
    """A (n, width) array as an Arrow list<float32> column (one list of ``width`` per row)."""
    flat = numeric(np.asarray(values, dtype=np.float32).ravel())
    return pa.ListArray.from_arrays(numeric(np.arange(0, len(values) * width + 1, width, dtype=np.int32)), flat)


def jagged_rows(offsets: np.ndarray, rows: np.ndarray, width: int) -> pa.ListArray:
    """Per-event row lists (``offsets`` into ``rows`` of ``width`` floats) as list<list<float32>>."""
    return pa.ListArray.from_arrays(numeric(offsets.astype(np.int32)), fixed_rows(rows, width))


def to_record_batch(
    features: EventFeatures, label: int, process: str, source_file: str, entries: np.ndarray
) -> pa.RecordBatch:
    """The selected events of ``features`` as a batch; ``entries`` are the input events' entry numbers."""
    n = features.n_selected
    return pa.RecordBatch.from_arrays(
        [
            numeric(np.full(n, label, dtype=np.int32)),
            repeated(process, n),
            fixed_rows(features.hlf, N_HLF),
            jagged_rows(features.particle_offsets, features.particles, N_PARTICLE_FEATURES),
            numeric(np.diff(features.particle_offsets).astype(np.int32)),
            repeated(source_file, n),
            numeric(np.asarray(entries)[features.selected].astype(np.int64)),
        ],
        schema=ARROW_SCHEMA,
    )
