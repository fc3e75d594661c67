"""Prepare's Python tasks place events with the same seeded hashes as Spark SQL: Spark's XXH64 in
NumPy, checked bit for bit against ``F.xxhash64``, and the placement against the Spark expressions."""

from __future__ import annotations

import ast
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from hep_tasks.prepare.lineage import GROUPS, RANK_BINS, Assignment, Lineage, boundaries, census, cutoffs, expected_windows, rank_bin

NAMES = ["", "a", "abcd", "abcdefg", "abcdefgh", "x" * 31, "y" * 32, "z" * 33, "q" * 75,
         "file:///data/sim/qcd_1000-ab12.root", "ünïcødé/ß.root"]  # every tail length, stripes, UTF-8  # fmt: skip


@pytest.fixture(scope="module")
def keys(spark):
    rng = np.random.default_rng(3)
    files = [NAMES[i] for i in rng.integers(0, len(NAMES), 300)]
    entries = rng.integers(-(2**62), 2**62, 300)
    entries[:40] = np.arange(40)
    df = spark.createDataFrame(list(zip(files, entries.tolist())), "source_file string, entry bigint")
    return df, Lineage(pa.array(files), entries)


@pytest.mark.parametrize("seed", [0, 42, 2**31 - 1, 2**31, 2**40])  # int and bigint literals
def test_lineage_hash_is_sparks_xxhash64(keys, seed):
    from pyspark.sql import functions as F

    df, lineage = keys
    for salt in ("split", "balance", "shuffle", "bucket", "", "a salt longer than thirty-two bytes"):
        spark_hash = [r[0] for r in df.select(F.xxhash64("source_file", "entry", F.lit(seed), F.lit(salt))).collect()]
        assert lineage.hash(seed, salt).tolist() == spark_hash, salt


def _spark_hash(seed, salt):
    from pyspark.sql import functions as F

    return F.xxhash64(F.col("source_file"), F.col("entry"), F.lit(seed), F.lit(salt))


def test_assignment_places_events_as_the_spark_expressions_do(keys):
    """Split, balancing order and output file/bucket/place, against their definition in Spark SQL."""
    from pyspark.sql import functions as F

    df, lineage = keys
    seed, fraction, n, buckets = 11, 0.3, 3, {"train": 4, "test": 2}
    labels = np.arange(len(lineage)) % 3
    is_train = F.pmod(_spark_hash(seed, "split"), F.lit(1 << 24)) / F.lit(1 << 24) >= F.lit(fraction)
    expected = df.select(
        (~is_train).alias("test"),
        (F.when(is_train, 0).otherwise(n) + F.pmod(_spark_hash(seed, "shuffle"), F.lit(n))).alias("part"),
        F.pmod(_spark_hash(seed, "bucket"), F.when(is_train, buckets["train"]).otherwise(buckets["test"])).alias("bucket"),
        _spark_hash(seed, "shuffle").alias("shuffle"),
        _spark_hash(seed, "balance").alias("_rank"),
        "source_file", "entry",
    ).toPandas()  # fmt: skip
    # cut-offs at the median rank of each (split, class): about half the events are kept
    last = {}
    for split in ("train", "test"):
        for cls in range(3):
            mine = expected[(expected.test == (split == "test")).to_numpy() & (labels == cls)]
            row = mine.sort_values(["_rank", "source_file", "entry"]).iloc[len(mine) // 2]
            last[(split, cls)] = (int(row._rank), row.source_file, int(row.entry))
    where = Assignment(seed, fraction, n, buckets, last).of(lineage, labels)
    assert where["test"].tolist() == expected.test.tolist()
    assert where["part"].tolist() == expected.part.tolist()
    assert where["bucket"].tolist() == expected.bucket.tolist()
    assert where["shuffle"].tolist() == expected.shuffle.tolist()
    for (split, cls), (r, f, e) in last.items():
        mine = (expected.test == (split == "test")).to_numpy() & (labels == cls)
        order = [(int(a), b.encode(), int(c)) for a, b, c in zip(expected._rank, expected.source_file, expected.entry)]
        kept = [m and key <= (r, f.encode(), e) for m, key in zip(mine, order)]
        assert (where["kept"] & mine).tolist() == kept


def test_boundaries_find_the_bin_and_place_of_each_groups_target():
    counts = np.zeros((len(GROUPS), RANK_BINS), dtype=np.int64)
    counts[:, [3, 10, 4000]] = [5, 2, 7]
    bins, places = boundaries(counts, {"train": 7, "test": 6})
    assert bins.tolist() == [10, 10, 10, 10, 10, 10]  # 5 events before bin 10, the 6th and 7th in it
    assert places.tolist() == [2, 2, 2, 1, 1, 1]
    assert rank_bin(np.array([-(2**63), -1, 0, 2**63 - 1])).tolist() == [0, RANK_BINS // 2 - 1, RANK_BINS // 2, RANK_BINS - 1]


@pytest.mark.parametrize("classes", [(30, 40, 30), (20_000, 20_000, 20_000), (60_000, 3_000, 9_000)])
def test_census_keys_hold_the_cut_offs_and_grow_as_the_square_root_of_the_events(classes):
    """The census's key windows (from the expected class counts) hold every group's cut-off bin;
    the keys in them are O(√n) of a group's n events (all of them on tiny inputs); the cut-offs
    they give are the targets[split]-th events in (rank, source_file, entry) order."""
    rng = np.random.default_rng(sum(classes))
    n = sum(classes)
    names = [f"file:///data/ingest/events/part-{i:05d}.parquet" for i in range(7)]
    source = pa.array([names[i] for i in rng.integers(0, len(names), n)])
    lineage, label = Lineage(source, rng.permutation(n)), np.repeat(np.arange(3), classes)
    windows = expected_windows(dict(enumerate(classes)), 0.2)
    counts, keys = census(lineage, label, 5, 0.2, windows)
    targets = {s: int(min(counts[g].sum() for g, (split, _) in enumerate(GROUPS) if split == s)) for s in ("train", "test")}
    bins, places = boundaries(counts, targets)
    assert ((bins >= windows[:, 0]) & (bins <= windows[:, 1])).all()
    per_group = np.bincount([k[0] for k in keys], minlength=len(GROUPS))
    events = counts.sum(axis=1)
    assert (per_group <= np.minimum(events, 12 * np.sqrt(events) * 1.3 + 2 * events / RANK_BINS + 10)).all(), (per_group, events)
    last = cutoffs(keys, bins, places)
    everything = census(lineage, label, 5, 0.2, np.array([[0, RANK_BINS - 1]] * len(GROUPS)))[1]
    for g, (split, cls) in enumerate(GROUPS):
        mine = sorted((r, f.encode(), e, f) for group, r, f, e in everything if group == g)
        r, _, e, f = mine[targets[split] - 1]
        assert last[(split, cls)] == (r, f, e)


def test_prepare_tasks_import_neither_pandas_nor_numba():
    """What a fresh Python worker loads for scatter/gather: each of these costs 0.3-0.6 s per worker."""
    code = ("import sys; import hep_tasks.prepare.shuffle, hep_tasks.prepare.stage; "
            "print(sorted(m for m in ('pandas', 'numba', 'awkward', 'pyarrow.dataset') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_physics_lazy_names_match_its_static_imports():
    """``hep_tasks.physics`` imports on first use; its TYPE_CHECKING imports name the same homes (the
    code-version import graph and type checkers read those)."""
    import hep_tasks.physics as physics

    tree = ast.parse(open(physics.__file__).read())
    static = {a.asname or a.name: n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level for a in n.names}
    assert static == physics._HOME and sorted(physics.__all__) == sorted(static)
    assert all(getattr(physics, name) is not None for name in physics.__all__)


def test_an_ingest_version_of_another_schema_is_refused_naming_it_and_the_columns(tmp_path):
    import pyarrow.parquet as pq

    from hep_tasks.datasets import DatasetError
    from hep_tasks.prepare import stage as prepare

    path = tmp_path / "part.parquet"
    pq.write_table(pa.table({"label": pa.array([0], pa.int64()), "entry": pa.array([1], pa.int64())}), path)
    with pytest.raises(DatasetError, match=r"ingest version ing-x has the wrong schema: label \(int64, expected int32\), "
                                           r"hlf \(missing, expected list<item: float>\).*\(columns: label, entry\)"):  # fmt: skip
        prepare.check_schema(["ing-x"], {"ing-x": [(str(path), path.stat().st_size)]})
