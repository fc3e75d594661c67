"""Prepare's shuffle, done by Python tasks through the data root: the particle payload never
enters the JVM.

Spark decides from the lineage keys alone which events are kept and where each one goes (output
file ``_part``, place in it ``_shuffle``); only those keys pass through Spark, grouped by the ingest
file (``_file``) that holds the event. Then, in Spark tasks:

- :func:`read_kept` reads one ingest Parquet file with pyarrow and keeps the rows of its keys;
- :func:`scatter` writes them as one Arrow IPC piece per output file under a scratch directory of
  the pending version (each piece to a temporary name, then renamed: a retried task replaces its
  pieces), and returns its training events' share of the scaler fit;
- :func:`fit` merges those shares on the driver;
- :func:`gather` reads the pieces of one output file a bucket (``_bucket``) at a time, orders
  each bucket by ``_shuffle``, ΔR-sorts, scales and one-hots it (``transform.py``) and writes the
  Parquet file (:func:`hep_tasks.partfiles.write_part`).

The payload is read once from the ingest files and once from the pieces.
Memory: a scatter task holds one ingest file's kept events, a gather task one bucket of an output
file (about ``hep_tasks.prepare.stage.BUCKET_ROWS`` events).
"""

from __future__ import annotations

import hashlib
import itertools
import posixpath
import uuid
from collections.abc import Iterator, Sequence
from functools import reduce
from typing import Any
from urllib.parse import unquote

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hep_tasks.partfiles import write_part
from hep_tasks.physics import HLF_FEATURES, PARTICLE_FEATURES
from hep_tasks.prepare.scalers import (
    FeatureScalers,
    MinMaxScaler,
    Moments,
    StandardScaler,
)
from hep_tasks.prepare.transform import OUTPUT_SCHEMA, particle_rows, transform_batch

#: Columns of the ingested events that prepare reads.
INGESTED_COLUMNS = ("label", "hlf", "particles", "n_particles", "source_file", "entry")
#: Order of events within an output file: the seeded hash, then lineage (ties are astronomically rare).
ORDER = [("_shuffle", "ascending"), ("source_file", "ascending"), ("entry", "ascending")]
_ENTRY_BITS = 40  # entries per ROOT file below 2**40


def read_kept(keys: pa.Table, columns: Sequence[str]) -> pa.Table:
    """The ``columns`` of the rows of ingest file ``keys["_file"]`` whose ``(source_file, entry)``
    is in ``keys``, in the file's order, with the keys' other columns (``_part``, ...) appended."""
    fs, path = fsspec.core.url_to_fs(unquote(keys.column("_file")[0].as_py()))
    wanted = list(dict.fromkeys([*columns, "source_file", "entry"]))
    with fs.open(path, "rb") as f:
        table = pq.read_table(f, columns=wanted)
    position = _positions(table, keys)
    rows = np.flatnonzero(position >= 0)
    table = table.take(pa.array(rows))
    extra = keys.drop_columns([c for c in ("_file", "source_file", "entry") if c in keys.column_names])
    for name in extra.column_names:
        table = table.append_column(name, extra.column(name).take(pa.array(position[rows])))
    return table


def _positions(table: pa.Table, keys: pa.Table) -> np.ndarray:
    """For each row of ``table``, the row of ``keys`` with its ``(source_file, entry)``, or -1."""
    files = pc.unique(keys.column("source_file").combine_chunks())

    def code(t: pa.Table) -> pa.Array:
        file_index = pc.index_in(t.column("source_file"), value_set=files).fill_null(-1)
        combined = file_index.to_numpy().astype(np.int64) * (1 << _ENTRY_BITS) + t.column("entry").to_numpy()
        return pa.array(combined)

    return pc.index_in(code(table), value_set=code(keys)).fill_null(-1).to_numpy().astype(np.int64)


#: What :func:`scatter` returns for its ingest file: the output files it wrote pieces for, and its
#: share of the scaler fit (training events only): HLF minima/maxima and particle moments.
SCATTERED = pa.schema([
    ("parts", pa.list_(pa.int32())), ("events", pa.int64()), ("hlf_min", pa.list_(pa.float64())),
    ("hlf_max", pa.list_(pa.float64())), ("particles", pa.int64()), ("mean", pa.list_(pa.float64())),
    ("m2", pa.list_(pa.float64())),
])  # fmt: skip


def scatter(keys: pa.Table, scratch: str) -> pa.Table:
    """Write the kept events of one ingest file as one piece per output file and bucket they go to
    (``scratch/part-<p>/<bucket>-<file digest>.arrow``, ingested columns + ``_shuffle``), and fit its
    training events' share of the scalers; one row of :data:`SCATTERED`."""
    rows = read_kept(keys, INGESTED_COLUMNS)
    parts, buckets = rows.column("_part").to_numpy(), rows.column("_bucket").to_numpy()
    pieces = rows.drop_columns(["_part", "_bucket", "split"])
    digest = hashlib.sha1(keys.column("_file")[0].as_py().encode()).hexdigest()[:20]
    fs, base = fsspec.core.url_to_fs(scratch)
    for part, bucket in np.unique(np.stack([parts, buckets], axis=1), axis=0):
        piece = pieces.filter(pa.array((parts == part) & (buckets == bucket)))
        directory = posixpath.join(base, f"part-{part:05d}")
        fs.makedirs(directory, exist_ok=True)
        name = f"{bucket:05d}-{digest}.arrow"
        temporary = posixpath.join(directory, f"_{name}.{uuid.uuid4().hex}")
        with fs.open(temporary, "wb") as f, pa.ipc.new_stream(f, piece.schema) as writer:
            writer.write_table(piece)
        fs.mv(temporary, posixpath.join(directory, name))
    train = rows.filter(pc.equal(rows.column("split"), "train"))
    return pa.Table.from_pylist([{"parts": np.unique(parts).tolist()} | _fit_share(train)], SCATTERED)


def _fit_share(train: pa.Table) -> dict[str, Any]:
    if not train.num_rows:
        return {"events": 0, "particles": 0}
    hlf = pc.list_flatten(train.column("hlf")).to_numpy().astype(np.float64).reshape(-1, len(HLF_FEATURES))
    moments = Moments.of(particle_rows(train.column("particles").combine_chunks())[1])
    return {"events": train.num_rows, "hlf_min": hlf.min(axis=0).tolist(), "hlf_max": hlf.max(axis=0).tolist(),
            "particles": moments.n, "mean": moments.mean.tolist(), "m2": moments.m2.tolist()}


def fit(shares: list[dict[str, Any]], n_train: int) -> FeatureScalers:
    """The scalers of the training split from the :func:`scatter` rows (moments merged exactly)."""
    fitted = [s for s in shares if s["events"]]
    particles = reduce(Moments.merge, (Moments(s["particles"], np.array(s["mean"]), np.array(s["m2"])) for s in fitted))
    return FeatureScalers(
        hlf=MinMaxScaler(
            HLF_FEATURES, np.min([s["hlf_min"] for s in fitted], axis=0), np.max([s["hlf_max"] for s in fitted], axis=0)
        ),
        particles=StandardScaler(PARTICLE_FEATURES, particles.mean, particles.std),
        fitted_on={"split": "train", "events": n_train, "particles": int(particles.n)},
    )


def gather(part: int, scratch: str, scalers: FeatureScalers, url: str, name: str, row_group_rows: int) -> dict[str, Any]:
    """Write output file ``url/name`` from the pieces of ``part``: bucket by bucket, each ordered by
    ``_shuffle``, then ΔR-sorted, scaled and one-hot (``transform.py``); returns
    :func:`~hep_tasks.partfiles.write_part`'s record."""
    fs, base = fsspec.core.url_to_fs(scratch)
    paths = sorted(fs.glob(posixpath.join(base, f"part-{part:05d}", "[!_]*.arrow")))

    def prepared() -> Iterator[pa.RecordBatch]:  # one bucket in memory at a time
        for _, bucket in itertools.groupby(paths, key=lambda path: posixpath.basename(path).split("-")[0]):
            tables = []
            for path in bucket:
                with fs.open(path, "rb") as f:
                    tables.append(pa.ipc.open_stream(f).read_all())
            for batch in pa.concat_tables(tables).sort_by(ORDER).to_batches():
                yield transform_batch(batch, scalers)

    return write_part(prepared(), url, name, OUTPUT_SCHEMA, row_group_rows)
