"""Where prepare sends each event, from its lineage ``(source_file, entry)`` and the seed alone.

Split, balancing rank, output file, bucket and place in the file are seeded hashes of the lineage
(ARCHITECTURE §4), defined as Spark SQL's ``xxhash64(source_file, entry, seed, salt)`` and
computed here with NumPy (:meth:`Lineage.hash`, Spark's XXH64 bit for bit; the tests compare the
two), by the Python tasks that read the events, so that no key travels between tasks:

- balancing keeps the first ``N`` events of each (split, class) *group* in rank order, ``N`` the
  split's smallest class: the tasks' rank histograms (:func:`census`, added up on the executors)
  give the counts and the bin of each group's ``N``-th event, and the same pass brings the keys of
  a window of bins around where that bin is expected from the ingest manifests' class counts
  (:func:`expected_windows`, O(√n) events); the driver picks the exact cut-off from the keys of
  the bin (:func:`cutoffs`), or, if a bin fell outside its window (not once in 12,000 simulated
  groups), reads the keys of the bins alone in a second pass;
- :meth:`Assignment.of` then tells each task, for each of its events, whether it is kept and where
  it goes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hep_tasks.ingest.schema import numpy_of
from hep_tasks.processes import LABELS

SPLITS = ("train", "test")
#: Seed Spark's ``xxhash64`` starts from.
SPARK_SEED = 42
#: Resolution of the hash -> [0, 1) mapping of the split.
SPLIT_BUCKETS = 1 << 24

_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)
_INT32 = range(-(2**31), 2**31)
#: A class's balancing cut-off: ``(rank, source_file, entry)`` of the last event kept.
Cutoff = tuple[int, str, int]


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _fmix(h: np.ndarray) -> np.ndarray:
    h = (h ^ (h >> np.uint64(33))) * _P2
    h = (h ^ (h >> np.uint64(29))) * _P3
    return h ^ (h >> np.uint64(32))


def _round(acc: np.ndarray, lane: np.ndarray) -> np.ndarray:
    return _rotl(acc + lane * _P2, 31) * _P1


def hash_int(values: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Spark's ``XXH64.hashInt``: 32-bit ``values`` (uint64 result, one per seed)."""
    h = seed + _P5 + np.uint64(4)
    h = h ^ ((np.asarray(values, dtype=np.int64).astype(np.uint64) & np.uint64(0xFFFFFFFF)) * _P1)
    return _fmix(_rotl(h, 23) * _P2 + _P3)


def hash_long(values: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Spark's ``XXH64.hashLong``: 64-bit ``values``."""
    h = seed + _P5 + np.uint64(8)
    h = h ^ _round(np.zeros_like(h), np.asarray(values, dtype=np.int64).astype(np.uint64))
    return _fmix(_rotl(h, 27) * _P1 + _P4)


@np.errstate(over="ignore")  # wrapping uint64 arithmetic is the algorithm (arrays wrap silently, scalars warn)
def hash_bytes(data: bytes, seed: np.ndarray) -> np.ndarray:
    """Spark's ``XXH64.hashUnsafeBytes`` of one byte string under each seed (standard XXH64)."""
    seed = np.asarray(seed, dtype=np.uint64)
    n, at = len(data), 0
    words = np.frombuffer(data[: n - n % 8], dtype="<u8").astype(np.uint64)
    if n >= 32:
        v = [seed + _P1 + _P2, seed + _P2, seed.copy(), seed - _P1]
        for stripe in range(n // 32):
            v = [_round(v[i], words[4 * stripe + i]) for i in range(4)]
        h = _rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)
        for lane in v:
            h = (h ^ _round(np.zeros_like(h), lane)) * _P1 + _P4
        at = n // 32 * 4
    else:
        h = seed + _P5
    h = h + np.uint64(n)
    for word in words[at:]:
        h = _rotl(h ^ _round(np.zeros_like(h), word), 27) * _P1 + _P4
    tail = n - n % 8
    if n - tail >= 4:
        h = _rotl(h ^ (np.uint64(int.from_bytes(data[tail : tail + 4], "little")) * _P1), 23) * _P2 + _P3
        tail += 4
    for byte in data[tail:]:
        h = _rotl(h ^ (np.uint64(byte) * _P5), 11) * _P1
    return _fmix(h)


class Lineage:
    """The lineage keys ``(source_file, entry)`` of a batch of events, with the part of their Spark
    ``xxhash64`` that does not depend on seed and salt; the source files are dictionary-encoded
    (a handful per batch), so no step works per event in Python."""

    def __init__(self, source_file: pa.Array | pa.ChunkedArray, entry: np.ndarray):
        files = pc.dictionary_encode(source_file.combine_chunks() if isinstance(source_file, pa.ChunkedArray) else source_file)
        self.names: list[str] = files.dictionary.to_pylist()
        self.codes = numpy_of(files.indices)
        self.entry = np.asarray(entry, dtype=np.int64)
        start = np.full(1, SPARK_SEED, dtype=np.uint64)
        per_file = np.concatenate([hash_bytes(f.encode(), start) for f in self.names] or [start])
        self._prefix = hash_long(self.entry, per_file[self.codes])

    def __len__(self) -> int:
        return len(self.entry)

    def hash(self, seed: int, salt: str) -> np.ndarray:
        """``xxhash64(source_file, entry, seed, salt)`` as Spark SQL computes it (int64 per event)."""
        h = (hash_int if seed in _INT32 else hash_long)(np.full(len(self), seed), self._prefix)  # F.lit: int or bigint
        return hash_bytes(salt.encode(), h).view(np.int64)

    def up_to(self, rank: np.ndarray, last: Cutoff) -> np.ndarray:
        """Whether ``(rank, source_file, entry)`` <= ``last`` (Spark's struct order: strings by bytes)."""
        r, f, e = last
        before = np.array([n.encode() < f.encode() for n in self.names], dtype=bool)[self.codes]
        same = np.array([n == f for n in self.names], dtype=bool)[self.codes]
        return (rank < r) | ((rank == r) & (before | (same & (self.entry <= e))))


def is_test(lineage: Lineage, seed: int, test_fraction: float) -> np.ndarray:
    """The split of each event: True for test (a seeded hash below ``test_fraction``)."""
    return np.mod(lineage.hash(seed, "split"), SPLIT_BUCKETS) / SPLIT_BUCKETS < test_fraction


#: The (split, class) groups that balancing equalises, in the order of :func:`group_of`.
GROUPS = [(split, label) for split in SPLITS for label in sorted(LABELS.values())]
#: Bins of the balancing rank in :func:`census`: its top bits (the hash is uniform).
RANK_BITS = 12
RANK_BINS = 1 << RANK_BITS


def group_of(test: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Index into :data:`GROUPS` of each event."""
    return test.astype(np.int64) * len(LABELS) + label


def rank_bin(rank: np.ndarray) -> np.ndarray:
    """The bin of each signed rank, in rank order: its top bits once the sign bit is flipped."""
    return ((rank.view(np.uint64) ^ np.uint64(1 << 63)) >> np.uint64(64 - RANK_BITS)).astype(np.int64)


def ranked(lineage: Lineage, label: np.ndarray, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per event: whether it is in the test split, its group (:func:`group_of`) and its balancing rank."""
    test = is_test(lineage, seed, test_fraction)
    return test, group_of(test, label), lineage.hash(seed, "balance")


#: Half-width of a group's key window (:func:`expected_windows`) in units of 1/√(its events): in
#: 12,000 simulated groups (100 to 50,000 events per class) the cut-off strayed beyond 4.7 units
#: in 1 of 10⁴ and never beyond 5.5.
WINDOW_WIDTH = 6
#: A census's keys: ``(group, rank, source_file, entry)`` per event.
Key = tuple[int, int, str, int]


def expected_windows(class_counts: dict[int, int], test_fraction: float) -> np.ndarray:
    """For each group of :data:`GROUPS`, the rank bins ``[first, last]`` expected to hold its cut-off,
    from the events of each class (label -> count, the ingest manifests'): the cut-off's rank
    quantile is about ``N / n`` (``n`` the group's expected events, ``N`` its split's smallest),
    give or take :data:`WINDOW_WIDTH` / √n.

    >>> expected_windows({0: 100, 1: 100, 2: 400}, 0.5)[:3].tolist()  # train: 50, 50 and 200 events
    [[620, 4095], [620, 4095], [0, 2762]]
    """
    share = {"train": 1 - test_fraction, "test": test_fraction}
    expected = np.array([max(class_counts.get(label, 0) * share[split], 1.0) for split, label in GROUPS])
    smallest = {split: min(e for e, (s, _) in zip(expected, GROUPS) if s == split) for split in SPLITS}
    quantile = np.array([smallest[split] for split, _ in GROUPS]) / expected
    width = WINDOW_WIDTH / np.sqrt(expected)
    first = np.floor((quantile - width) * RANK_BINS)
    last = np.ceil((quantile + width) * RANK_BINS)
    return np.clip(np.stack([first, last], axis=1), 0, RANK_BINS - 1).astype(np.int64)


def census(lineage: Lineage, label: np.ndarray, seed: int, test_fraction: float, windows: np.ndarray) -> tuple[np.ndarray, list[Key]]:
    """What balancing needs to know of a batch's keys: its events per group and rank bin,
    ``(len(GROUPS), RANK_BINS)`` (:func:`boundaries`), and the keys of its events in their group's
    window of bins (``windows[group]`` = first, last bin). Censuses of batches add up."""
    _, group, rank = ranked(lineage, label, seed, test_fraction)
    bins = rank_bin(rank)
    counts = np.bincount(group * RANK_BINS + bins, minlength=len(GROUPS) * RANK_BINS).reshape(len(GROUPS), RANK_BINS)
    at = np.flatnonzero((bins >= windows[group, 0]) & (bins <= windows[group, 1]))
    names = lineage.names
    return counts, [(int(g), int(r), names[c], int(e)) for g, r, c, e in zip(group[at], rank[at], lineage.codes[at], lineage.entry[at])]


def boundaries(counts: np.ndarray, targets: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """For each group: the rank bin holding the ``targets[split]``-th event in rank order, and that
    event's place (1-based) among the events of the bin. ``counts`` is the summed :func:`census`."""
    target = np.array([targets[split] for split, _ in GROUPS])
    cumulative = np.cumsum(counts, axis=1)
    bins = np.array([np.searchsorted(cumulative[g], target[g]) for g in range(len(GROUPS))])
    before = np.array([cumulative[g, b - 1] if b else 0 for g, b in enumerate(bins)])
    return bins, target - before


def cutoffs(keys: list[Key], bins: np.ndarray, places: np.ndarray) -> dict[tuple[str, int], Cutoff]:
    """Each group's cut-off: the event at ``places[group]`` among its keys in bin ``bins[group]``, in
    Spark's order of ``(rank, source_file, entry)`` (strings by their UTF-8 bytes)."""
    bin_of = rank_bin(np.array([k[1] for k in keys], dtype=np.int64)) if keys else np.zeros(0, dtype=np.int64)
    in_bin = [k for k, b in zip(keys, bin_of) if b == bins[k[0]]]
    out = {}
    for g, (split, label) in enumerate(GROUPS):
        mine = sorted((r, f.encode(), e, f) for group, r, f, e in in_bin if group == g)
        r, _, e, f = mine[places[g] - 1]
        out[(split, label)] = (r, f, e)
    return out


@dataclass(frozen=True)
class Assignment:
    """What prepare does with each event, decided from its lineage and label: balancing keeps the
    events of each (split, class) up to the class's cut-off ``(rank, source_file, entry)`` in
    seeded order (``last``, from :func:`cutoffs`); a kept event goes to output file
    ``part`` (``files_per_split`` per split, train first), bucket ``bucket`` of that file
    (``buckets[split]`` per file) and place ``shuffle`` within the bucket."""

    seed: int
    test_fraction: float
    files_per_split: int
    buckets: dict[str, int]
    last: dict[tuple[str, int], Cutoff]

    @classmethod
    def plan(cls, seed: int, test_fraction: float, files_per_split: int, targets: dict[str, int],
             last: dict[tuple[str, int], Cutoff], bucket_rows: int) -> Assignment:
        buckets = {s: max(1, math.ceil(targets[s] * len(LABELS) / files_per_split / bucket_rows)) for s in SPLITS}
        return cls(seed, test_fraction, files_per_split, buckets, dict(last))

    def of(self, lineage: Lineage, label: np.ndarray) -> dict[str, np.ndarray]:
        """Per event: ``test`` (bool), ``group`` (:func:`group_of`), ``kept`` (bool), ``part``,
        ``bucket`` (int32), ``shuffle`` (int64)."""
        test, group, rank = ranked(lineage, label, self.seed, self.test_fraction)
        kept = np.zeros(len(lineage), dtype=bool)
        for key, last in self.last.items():
            kept |= (group == GROUPS.index(key)) & lineage.up_to(rank, last)
        shuffle = lineage.hash(self.seed, "shuffle")
        n = self.files_per_split
        part = np.where(test, n, 0) + np.mod(shuffle, n)
        buckets = np.where(test, self.buckets["test"], self.buckets["train"])
        bucket = np.mod(lineage.hash(self.seed, "bucket"), buckets)
        return {"test": test, "group": group, "kept": kept, "part": part.astype(np.int32), "bucket": bucket.astype(np.int32), "shuffle": shuffle}
