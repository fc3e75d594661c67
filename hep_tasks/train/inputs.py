"""Streaming input for training and scoring: prepared Parquet row groups -> padded NumPy batches.

Nothing holds a whole split in memory: a worker reads its shard one Parquet row group at a time
(prepare writes row groups of ``rows_per_row_group`` events, already shuffled), keeps only the
columns its model needs, and turns them into batches:

- ``hlf``: (events, 14) float32; ``particles``: (events, steps, 19) float32, **pre-padded** with
  all-zero rows so every sequence ends with its lepton (prepare sorts the lepton last), and
  truncated to the last ``max_particles`` rows (the particles closest to the lepton in ΔR);
- ``steps`` is the longest sequence of the batch (``padding="batch"``) or ``max_particles``
  (``padding="full"``, the 2019 way: every event costs 801 GRU steps);
- with ``bucketing`` the events of a pool (a row group plus the previous remainder) are sorted by
  length before they are cut into batches, and the batches are shuffled, so a batch holds events
  of similar length and little padding.

Validation is a seeded slice of the train split chosen per event from a hash of its lineage
(``source_file``, ``entry``), independent of sharding and row-group layout; the test split is
never read here during training.

Vectorised throughout (NumPy gathers over flat particle rows); no Python loop over events.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hep_tasks.physics.constants import HLF_FEATURES, MAX_PARTICLES, PARTICLE_FEATURES

N_HLF = len(HLF_FEATURES)
N_FEATURES = len(PARTICLE_FEATURES)
PADDING = ("batch", "full")
#: Batches' worth of events pooled before bucketing by length (memory: events x mean length x 76 B).
POOL_BATCHES = 16


@dataclass(frozen=True)
class RowGroup:
    """One Parquet row group of a split: file path (in the store's file system), index, rows."""

    path: str
    index: int
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "index": self.index, "rows": self.rows}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RowGroup:
        return cls(str(d["path"]), int(d["index"]), int(d["rows"]))


def catalogue(fs: Any, directory: str) -> list[RowGroup]:
    """Every row group of the Parquet files in ``directory`` (footers only), in file order."""
    groups = []
    for path in sorted(fs.glob(posixpath.join(directory, "*.parquet"))):
        with fs.open(path, "rb") as f:
            meta = pq.ParquetFile(f).metadata
        groups += [RowGroup(path, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
    return groups


def shards(groups: Sequence[RowGroup], workers: int) -> list[list[RowGroup]]:
    """Split row groups among ``workers`` with rows as even as possible (largest first, greedy).

    >>> [[g.index for g in s] for s in shards([RowGroup("f", i, n) for i, n in enumerate([5, 4, 3, 3])], 2)]
    [[0, 3], [1, 2]]
    """
    out: list[list[RowGroup]] = [[] for _ in range(workers)]
    load = [0] * workers
    for group in sorted(groups, key=lambda g: (-g.rows, g.path, g.index)):
        w = load.index(min(load))
        out[w].append(group)
        load[w] += group.rows
    return [sorted(s, key=lambda g: (g.path, g.index)) for s in out]


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def lineage_uniform(source_file: pa.Array, entry: np.ndarray, seed: int) -> np.ndarray:
    """A number in [0, 1) per event from a hash of (source_file, entry, seed); same event, same number."""
    encoded = pc.dictionary_encode(source_file)
    per_file = np.array(
        [int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") for s in encoded.dictionary.to_pylist()],
        dtype=np.uint64,
    )  # one hash per distinct file name, not per event
    h = per_file[encoded.indices.to_numpy(zero_copy_only=False)]
    with np.errstate(over="ignore"):
        key = np.asarray(entry).astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
    return (_mix64(h ^ _mix64(key)) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass
class Block:
    """Events in memory: one-hot labels, HLF and/or particle rows (``offsets`` into ``rows``)."""

    onehot: np.ndarray  # (n, 3) float32
    hlf: np.ndarray | None = None  # (n, 14) float32
    offsets: np.ndarray | None = None  # (n + 1,) int64
    rows: np.ndarray | None = None  # (N, 19) float32

    def __len__(self) -> int:
        return len(self.onehot)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets) if self.offsets is not None else np.zeros(len(self), dtype=np.int64)

    def take(self, index: np.ndarray) -> Block:
        """The events ``index`` (in that order)."""
        hlf = self.hlf[index] if self.hlf is not None else None
        if self.offsets is None:
            return Block(self.onehot[index], hlf)
        counts = self.lengths[index]
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        source = np.repeat(self.offsets[:-1][index] - offsets[:-1], counts) + np.arange(offsets[-1])
        return Block(self.onehot[index], hlf, offsets, self.rows[source])

    @staticmethod
    def concat(blocks: Sequence[Block]) -> Block:
        blocks = [b for b in blocks if len(b)] or list(blocks[:1])
        if len(blocks) == 1:
            return blocks[0]
        hlf = np.concatenate([b.hlf for b in blocks]) if blocks[0].hlf is not None else None
        if blocks[0].offsets is None:
            return Block(np.concatenate([b.onehot for b in blocks]), hlf)
        counts = np.concatenate([b.lengths for b in blocks])
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return Block(np.concatenate([b.onehot for b in blocks]), hlf, offsets, np.concatenate([b.rows for b in blocks]))


def pad_sequences(offsets: np.ndarray, rows: np.ndarray, steps: int) -> np.ndarray:
    """(events, steps, 19) float32: each event's last ``steps`` rows, pre-padded with zero rows.

    >>> pad_sequences(np.array([0, 1, 3]), np.arange(3, dtype=np.float32).reshape(3, 1) + 1, 2)[..., 0].tolist()
    [[0.0, 1.0], [2.0, 3.0]]
    """
    counts = np.diff(offsets)
    kept = np.minimum(counts, steps)
    out = np.zeros((len(counts), steps, rows.shape[1]), dtype=np.float32)
    total = int(kept.sum())
    if total:
        event = np.repeat(np.arange(len(counts)), kept)
        position = np.arange(total) - np.repeat(np.cumsum(kept) - kept, kept)
        source = np.repeat(offsets[1:] - kept, kept) + position
        out[event, steps - np.repeat(kept, kept) + position] = rows[source]
    return out


@dataclass(frozen=True)
class BatchSpec:
    """How a worker turns events into model inputs (the same for training, validation and scoring)."""

    inputs: tuple[str, ...]  # "hlf" and/or "particles"
    batch_size: int
    max_particles: int = MAX_PARTICLES
    padding: str = "batch"
    bucketing: bool = True

    def features(self, block: Block) -> dict[str, np.ndarray]:
        """The model inputs of ``block`` as one batch."""
        out = {}
        if "hlf" in self.inputs:
            out["hlf"] = block.hlf
        if "particles" in self.inputs:
            longest = int(block.lengths.max()) if len(block) else 1
            steps = self.max_particles if self.padding == "full" else max(1, min(longest, self.max_particles))
            out["particles"] = pad_sequences(block.offsets, block.rows, steps)
        return out

    def order(self, block: Block, rng: np.random.Generator | None) -> list[np.ndarray]:
        """Batches of event indices of ``block``: shuffled (when ``rng``), bucketed by length if asked."""
        index = rng.permutation(len(block)) if rng is not None else np.arange(len(block))
        if self.bucketing and "particles" in self.inputs:
            index = index[np.argsort(block.lengths[index], kind="stable")]
        batches = [index[i : i + self.batch_size] for i in range(0, len(index), self.batch_size)]
        if rng is not None:
            rng.shuffle(batches)
        return batches


class ShardReader:
    """Reads a shard's row groups (only the needed columns) as :class:`Block` objects."""

    def __init__(self, fs: Any, groups: Sequence[RowGroup], inputs: Sequence[str], *, with_lineage: bool = True):
        self.fs = fs
        self.groups = list(groups)
        self.inputs = tuple(inputs)
        self.columns = ["label_onehot", *self.inputs] + (["source_file", "entry"] if with_lineage else [])
        self._files: dict[str, pq.ParquetFile] = {}

    def _file(self, path: str) -> pq.ParquetFile:
        if path not in self._files:
            self._files[path] = pq.ParquetFile(self.fs.open(path, "rb"))
        return self._files[path]

    def read(self, group: RowGroup) -> tuple[Block, pa.Table]:
        """The row group as a Block, and its table (for lineage columns)."""
        table = self._file(group.path).read_row_group(group.index, columns=self.columns).combine_chunks()
        return block_from_table(table, self.inputs), table

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def _column(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    return column.chunk(0) if column.num_chunks == 1 else pa.concat_arrays(column.chunks)


def block_from_table(table: pa.Table, inputs: Sequence[str]) -> Block:
    """A :class:`Block` from a prepared-schema table (``label_onehot``, ``hlf``, ``particles``)."""

    def flat(name: str, width: int) -> np.ndarray:
        values = pc.list_flatten(_column(table, name)).to_numpy(zero_copy_only=False)
        return values.astype(np.float32, copy=False).reshape(-1, width)

    block = Block(flat("label_onehot", 3) if "label_onehot" in table.column_names else np.zeros((table.num_rows, 3), np.float32))
    if "hlf" in inputs:
        block.hlf = flat("hlf", N_HLF)
    if "particles" in inputs:
        column = _column(table, "particles")
        counts = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        block.offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=block.offsets[1:])
        rows = pc.list_flatten(pc.list_flatten(column)).to_numpy(zero_copy_only=False)
        block.rows = rows.astype(np.float32, copy=False).reshape(-1, N_FEATURES)
    return block


def training_batches(
    reader: ShardReader, spec: BatchSpec, *, seed: int, validation_fraction: float, order_seed: int | None = None
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Endless (inputs, one-hot) training batches of a shard, validation events left out.

    ``seed`` chooses the validation slice (as in :func:`validation_batches`, so the two are always
    complementary); ``order_seed`` (default ``seed``) the order of events and batches, which may
    differ per worker and per resumed attempt. Every pass re-shuffles the row-group order and the
    events. Row groups are pooled until the
    pool holds :data:`POOL_BATCHES` batches, so that bucketing has events of many lengths to
    group; a pool's remainder joins the next pool. A shard smaller than one batch gives one
    partial batch per pass.
    """
    rng = np.random.default_rng(seed if order_seed is None else order_seed)
    pool: list[Block] = []
    while True:
        produced = 0
        for i, g in enumerate(rng.permutation(len(reader.groups))):
            block, table = reader.read(reader.groups[g])
            pool.append(block.take(np.flatnonzero(~_validation(table, seed, validation_fraction))))
            if sum(map(len, pool)) < POOL_BATCHES * spec.batch_size and i + 1 < len(reader.groups):
                continue
            events = Block.concat(pool)
            batches = spec.order(events, rng)
            rest = [b for b in batches if len(b) < spec.batch_size]
            pool = [events.take(np.concatenate(rest))] if rest else []
            for index in batches:
                if len(index) == spec.batch_size:
                    produced += 1
                    part = events.take(index)
                    yield spec.features(part), part.onehot
        if not produced:
            events = Block.concat(pool) if pool else None
            if events is None or not len(events):
                raise ValueError(f"no training events in the shard {[g.to_dict() for g in reader.groups]}")
            yield spec.features(events), events.onehot
            pool = []


def validation_batches(
    reader: ShardReader, spec: BatchSpec, *, seed: int, validation_fraction: float
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """One pass over the shard's validation events (the complement of :func:`training_batches`)."""
    for group in reader.groups:
        block, table = reader.read(group)
        part = block.take(np.flatnonzero(_validation(table, seed, validation_fraction)))
        for index in spec.order(part, None):
            batch = part.take(index)
            yield spec.features(batch), batch.onehot


def _validation(table: pa.Table, seed: int, fraction: float) -> np.ndarray:
    entry = _column(table, "entry").to_numpy(zero_copy_only=False)
    return lineage_uniform(_column(table, "source_file"), entry, seed) < fraction


def shard_train_rows(groups: Sequence[RowGroup], validation_fraction: float) -> int:
    """Expected training events of a shard (rows minus the validation slice)."""
    return int(sum(g.rows for g in groups) * (1.0 - validation_fraction))
