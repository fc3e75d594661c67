"""Parquet part files written by Python tasks with pyarrow, each one atomically, with its checksum.

The stages that write events (ingest, prepare) let Spark schedule the tasks but write their Parquet
in the Python task: the Arrow batches the task computed go straight into the file, instead of
crossing to the JVM and being encoded there. Each task writes its file under ``_attempts/`` and
renames it into place, so an attempt that dies (an executor lost, a task retried or speculated)
leaves no partial file among the data, and a retried attempt replaces, never duplicates, what an
earlier one wrote. The task returns a small record (path, size, sha256, rows) for the manifest;
the SHA-256 is computed while writing, so no file is read twice.

The enclosing version is still committed atomically by :class:`~hep_tasks.datasets.PendingVersion`;
the driver calls :func:`drop_attempts` before committing.
"""

from __future__ import annotations

import hashlib
import posixpath
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

ATTEMPTS = "_attempts"
#: Float features do not dictionary-encode well; zstd is smaller and faster here than snappy.
#: Min/max statistics only for the flat columns a reader may filter on (``label``, ``entry``, ...):
#: for the float lists they cost 15 % of the write and serve no query.
WRITE_OPTIONS = {"compression": "zstd", "use_dictionary": False}


class _HashingFile:
    """A write-only file object that hashes what passes through it."""

    def __init__(self, f: Any) -> None:
        self._f, self.sha256, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._f.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._f.flush()

    @property
    def closed(self) -> bool:
        return self._f.closed


def write_part(
    batches: Iterable[pa.RecordBatch], directory: str, name: str, schema: pa.Schema, row_group_rows: int | None = None
) -> dict[str, Any]:
    """Write ``batches`` as the Parquet file ``directory/name`` (a path or fsspec URL); returns
    ``{"name", "size", "sha256", "rows", "write_seconds"}`` (time spent encoding and writing, not
    computing the batches). With ``row_group_rows`` the file's row groups hold that
    many rows (the last fewer); otherwise each batch is one row group."""
    fs, base = fsspec.core.url_to_fs(directory)
    attempt = posixpath.join(base, ATTEMPTS, f"{name}.{uuid.uuid4().hex}")
    fs.makedirs(posixpath.dirname(attempt), exist_ok=True)
    rows, writing = 0, 0.0
    with fs.open(attempt, "wb") as f:
        out = _HashingFile(f)
        flat = [f.name for f in schema if not pa.types.is_list(f.type)]
        with pq.ParquetWriter(out, schema, write_statistics=flat, **WRITE_OPTIONS) as writer:
            for table in _row_groups(batches, schema, row_group_rows):
                started = time.perf_counter()
                writer.write_table(table, row_group_size=len(table))
                writing += time.perf_counter() - started
                rows += len(table)
            started = time.perf_counter()
    fs.mv(attempt, posixpath.join(base, name))
    writing += time.perf_counter() - started
    return {"name": name, "size": out.size, "sha256": out.sha256.hexdigest(), "rows": rows, "write_seconds": writing}


def _row_groups(batches: Iterable[pa.RecordBatch], schema: pa.Schema, rows: int | None) -> Iterator[pa.Table]:
    """The batches regrouped into tables of exactly ``rows`` rows (the last one fewer), or one per
    non-empty batch when ``rows`` is None."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        if rows is None:
            yield pa.Table.from_batches([batch], schema)
            continue
        pending.append(batch)
        held += batch.num_rows
        if held >= rows:
            table = pa.Table.from_batches(pending, schema)
            cut = held - held % rows
            for start in range(0, cut, rows):
                yield table.slice(start, rows)
            pending, held = table.slice(cut).to_batches(), held - cut
    if held:
        yield pa.Table.from_batches(pending, schema)


def drop_attempts(directory: str) -> None:
    """Remove what failed or superseded attempts left under ``directory/_attempts``."""
    fs, base = fsspec.core.url_to_fs(directory)
    if fs.exists(posixpath.join(base, ATTEMPTS)):
        fs.rm(posixpath.join(base, ATTEMPTS), recursive=True)
