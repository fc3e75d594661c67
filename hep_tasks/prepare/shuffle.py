"""Prepare's shuffle, done by Python tasks through the data root: the particle payload never
enters the JVM.

Spark finds, from the lineage keys alone, how many events of each class balancing keeps and
the cut-off of each class (``stage.py``). Then, in Spark tasks:

- :func:`scatter` reads one ingest Parquet file with pyarrow, decides for each of its events from
  the lineage (:class:`~hep_tasks.prepare.lineage.Assignment`: the same seeded hashes as Spark)
  whether balancing keeps it and where it goes, writes the kept events as one Arrow IPC piece
  per output file and bucket under a scratch directory of the pending version (each piece to a
  temporary name, then renamed: a retried task replaces its pieces), and returns its counts and
  its training events' share of the scaler fit;
- :func:`fit` merges those shares on the driver;
- :func:`gather` reads the pieces of one output file a bucket (``_bucket``) at a time, orders
  each bucket by ``_shuffle``, ΔR-sorts, scales and one-hots it (``transform.py``) and writes the
  Parquet file (:func:`hep_tasks.partfiles.write_part`).

The payload is read once from the ingest files and once from the pieces.
Memory: a scatter task holds one ingest file, a gather task one bucket of an output file (about
``hep_tasks.prepare.stage.BUCKET_ROWS`` events).
"""

from __future__ import annotations

import hashlib
import itertools
import posixpath
import uuid
from collections.abc import Iterator
from functools import reduce
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hep_tasks.datasets import DatasetError
from hep_tasks.ingest.schema import numeric, numpy_of
from hep_tasks.partfiles import write_part
from hep_tasks.physics import HLF_FEATURES, PARTICLE_FEATURES
from hep_tasks.prepare.lineage import GROUPS, Assignment, Lineage
from hep_tasks.prepare.scalers import (
    FeatureScalers,
    MinMaxScaler,
    Moments,
    StandardScaler,
)
from hep_tasks.prepare.transform import OUTPUT_SCHEMA, particle_rows, transform_batch

#: Columns of the ingested events that prepare reads, and their types.
INGESTED_COLUMNS = {
    "label": pa.int32(),
    "hlf": pa.list_(pa.float32()),
    "particles": pa.list_(pa.list_(pa.float32())),
    "n_particles": pa.int32(),
    "source_file": pa.string(),
    "entry": pa.int64(),
}
#: Order of events within an output file: the seeded hash, then lineage (ties are astronomically rare).
ORDER = [("_shuffle", "ascending"), ("source_file", "ascending"), ("entry", "ascending")]


def events_file(f: Any, what: str) -> pq.ParquetFile:
    """Open an ingest Parquet file; one without the :data:`INGESTED_COLUMNS` is refused, naming ``what``."""
    parquet = pq.ParquetFile(f)  # not pq.read_table: it imports pyarrow.dataset, and so pandas
    found = {field.name: field.type for field in parquet.schema_arrow}
    wrong = [f"{name} ({found.get(name, 'missing')}, expected {t})" for name, t in INGESTED_COLUMNS.items()
             if name not in found or not found[name].equals(t)]  # fmt: skip
    if wrong:
        raise DatasetError(f"{what} has the wrong schema: {', '.join(wrong)} (columns: {', '.join(found)})")
    return parquet


def read_events(url: str, columns: list[str] | None = None) -> pa.Table:
    """``columns`` (default: all :data:`INGESTED_COLUMNS`) of one ingest Parquet file."""
    fs, path = fsspec.core.url_to_fs(url)
    with fs.open(path, "rb") as f:
        return events_file(f, url).read(columns=columns or list(INGESTED_COLUMNS))


def read_keys(url: str) -> tuple[Lineage, np.ndarray]:
    """The lineage and labels of the events of one ingest file (its key columns only)."""
    keys = read_events(url, ["label", "source_file", "entry"])
    return Lineage(keys.column("source_file"), numpy_of(keys.column("entry"))), numpy_of(keys.column("label"))


def scatter(url: str, assignment: Assignment, scratch: str) -> dict[str, Any]:
    """Write the kept events of ingest file ``url`` as one piece per output file and bucket they go to
    (``scratch/part-<p>/<bucket>-<file digest>.arrow``, ingested columns + ``_shuffle``); returns
    its ``file``, the output files it wrote to (``parts``), the events it kept per group of
    ``lineage.GROUPS`` (``kept``) and its training events' share of the scaler fit."""
    table = read_events(url)
    label = numpy_of(table.column("label"))
    where = assignment.of(Lineage(table.column("source_file"), numpy_of(table.column("entry"))), label)
    kept = np.flatnonzero(where["kept"])
    kept = kept[np.lexsort((where["bucket"][kept], where["part"][kept]))]  # pieces are contiguous slices
    rows = table.take(numeric(kept)).append_column("_shuffle", numeric(where["shuffle"][kept]))
    parts, buckets, test = where["part"][kept], where["bucket"][kept], where["test"][kept]
    counts = np.bincount(where["group"][kept], minlength=len(GROUPS)).tolist()
    digest = hashlib.sha1(url.encode()).hexdigest()[:20]
    fs, base = fsspec.core.url_to_fs(scratch)
    starts = np.flatnonzero(np.diff(parts, prepend=-1) | np.diff(buckets, prepend=-1))
    for start, stop in zip(starts, [*starts[1:], len(kept)]):
        directory = posixpath.join(base, f"part-{parts[start]:05d}")
        fs.makedirs(directory, exist_ok=True)
        name = f"{buckets[start]:05d}-{digest}.arrow"
        temporary = posixpath.join(directory, f"_{name}.{uuid.uuid4().hex}")
        with fs.open(temporary, "wb") as f, pa.ipc.new_stream(f, rows.schema) as writer:
            writer.write_table(rows.slice(start, stop - start))
        fs.mv(temporary, posixpath.join(directory, name))
    return {"file": url, "parts": np.unique(parts).tolist(), "kept": counts} | _fit_share(rows, ~test)


def _fit_share(rows: pa.Table, train: np.ndarray) -> dict[str, Any]:
    if not train.any():
        return {"events": 0, "particles": 0}
    hlf = numpy_of(pc.list_flatten(rows.column("hlf"))).astype(np.float64).reshape(-1, len(HLF_FEATURES))[train]
    offsets, particles = particle_rows(rows.column("particles"))
    moments = Moments.of(particles[np.repeat(train, np.diff(offsets))])
    return {"events": int(train.sum()), "hlf_min": hlf.min(axis=0).tolist(), "hlf_max": hlf.max(axis=0).tolist(),
            "particles": moments.n, "mean": moments.mean.tolist(), "m2": moments.m2.tolist()}


def fit(shares: list[dict[str, Any]], n_train: int) -> FeatureScalers:
    """The scalers of the training split from the :func:`scatter` rows (moments merged exactly, in
    the order of the files: the same bits however the files were spread over tasks)."""
    fitted = sorted((s for s in shares if s["events"]), key=lambda s: s["file"])
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
