"""The prepare stage on Spark: reproducible disjoint split, exact balance, train-only scalers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from hep_tasks.config import IngestParams, PrepareParams
from hep_tasks.datasets import DatasetError, DatasetStore
from hep_tasks.ingest import stage as ingest
from hep_tasks.prepare import stage as prepare
from hep_tasks.prepare.lineage import GROUPS, Assignment, Lineage, boundaries, expected_windows, group_of, is_test
from hep_tasks.prepare.shuffle import read_keys
from hep_tasks.prepare.scalers import FeatureScalers
from hep_tasks.prepare.transform import sort_by_delta_r
from hep_tasks.processes import LABELS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ingested(spark, tmp_path_factory, sample_files):
    """An ingest version of the sample files, marked as checked (the quality stage has its own tests)."""
    store = DatasetStore(str(tmp_path_factory.mktemp("prepare") / "data"))
    spec = ",".join(f"{p}={path}" for p, path in sample_files.items())
    version = ingest.run(spark, store, IngestParams.from_values({"input": spec}, env={}))["version"]
    store.update_manifest("ingest", version, quality={"status": "passed"})
    return store, version


def _events(spark, store, version):
    return spark.read.parquet(store.url("ingest", version, "events"))


def _keys(store, version):
    """Lineage and labels of every ingested event, one ingest file at a time (as the tasks read them)."""
    return [read_keys(url) for url, _ in prepare.input_files(store, [version])[version]]


def _split(keys, seed, fraction=0.3):
    split = {"train": set(), "test": set()}
    for lineage, _ in keys:
        names = np.array(lineage.names, dtype=object)[lineage.codes]
        for test, name, entry in zip(is_test(lineage, seed, fraction), names, lineage.entry):
            split["test" if test else "train"].add((name, int(entry)))
    return split


def test_split_is_reproducible_disjoint_and_seeded(spark, ingested):
    keys, n = _keys(*ingested), _events(spark, *ingested).count()
    a, b = _split(keys, 7), _split(keys, 7)
    assert a["train"] == b["train"] and a["test"] == b["test"]
    assert not a["train"] & a["test"]
    assert len(a["train"]) + len(a["test"]) == n
    assert 0.15 < len(a["test"]) / n < 0.45
    assert _split(keys, 8)["test"] != a["test"]
    # the split of an event does not depend on how the events are batched
    merged = Lineage(pa.array([lin.names[c] for lin, _ in keys for c in lin.codes]), np.concatenate([lin.entry for lin, _ in keys]))
    assert _split([(merged, None)], 7)["test"] == a["test"]


@pytest.mark.parametrize("window", ["expected", "missed"])
def test_balancing_keeps_exact_equal_counts(spark, ingested, window):
    """The cut-offs are exact whether the census's key windows hold them (the usual case) or not
    (``missed``: every window is bin 0, so the keys of the cut-offs' bins are read again)."""
    store, version = ingested
    params = PrepareParams.from_values({"input": version, "test_fraction": 0.2, "seed": 1}, env={})
    files = prepare.input_files(store, [version])[version]
    windows = expected_windows(prepare.class_counts(store, [version]), 0.2)
    if window == "missed":
        windows = np.zeros_like(windows)
    counts, window_keys = prepare.rank_census(spark, files, params, windows)
    keys = _keys(store, version)
    groups = np.concatenate([group_of(is_test(lin, 1, 0.2), label) for lin, label in keys])
    assert counts.sum(axis=1).tolist() == np.bincount(groups, minlength=len(GROUPS)).tolist()
    targets = {s: int(min(counts[g].sum() for g, (split, _) in enumerate(GROUPS) if split == s)) for s in prepare.SPLITS}
    bins, _ = boundaries(counts, targets)
    assert ((bins >= windows[:, 0]) & (bins <= windows[:, 1])).all() == (window == "expected")
    assert len(window_keys) == sum(int(counts[g, lo : hi + 1].sum()) for g, (lo, hi) in enumerate(windows))
    last = prepare.balancing_cutoffs(spark, files, params, counts, targets, windows, window_keys)
    # the cut-off is the targets[split]-th event of its group in (rank, source_file, entry) order
    ranked = sorted((int(g), int(r), lin.names[c].encode(), int(e)) for lin, label in keys
                    for g, r, c, e in zip(group_of(is_test(lin, 1, 0.2), label), lin.hash(1, "balance"), lin.codes, lin.entry))  # fmt: skip
    for g, (split, label) in enumerate(GROUPS):
        r, f, e = [k[1:] for k in ranked if k[0] == g][targets[split] - 1]
        assert last[(split, label)] == (r, f.decode(), e)
    assignment = Assignment.plan(1, 0.2, 2, targets, last, prepare.BUCKET_ROWS)
    kept = np.concatenate([group_of(is_test(lin, 1, 0.2), label)[assignment.of(lin, label)["kept"]] for lin, label in keys])
    after = {s: {p: int((kept == GROUPS.index((s, LABELS[p]))).sum()) for p in LABELS} for s in prepare.SPLITS}
    assert after == {s: dict.fromkeys(LABELS, targets[s]) for s in prepare.SPLITS}


def test_prepared_version_scalers_are_numpy_statistics_of_the_train_rows(spark, ingested):
    store, source = ingested
    params = PrepareParams.from_values({"input": source, "files_per_split": 2, "rows_per_row_group": 16}, env={})
    result = prepare.run(spark, store, params)
    manifest = store.read_manifest("prepare", result["version"])
    with store.fs.open(store.path("prepare", result["version"], "scalers.json")) as f:
        scalers = FeatureScalers.loads(f.read())

    # rebuild the balanced train rows from the ingested data by lineage, and fit with NumPy
    train = spark.read.parquet(store.url("prepare", result["version"], "train")).toPandas()
    test = spark.read.parquet(store.url("prepare", result["version"], "test")).toPandas()
    raw = _events(spark, store, source).toPandas().set_index(["source_file", "entry"])
    rows = raw.loc[list(zip(train.source_file, train.entry))]
    hlf = np.stack(rows.hlf.to_numpy()).astype(np.float64)
    np.testing.assert_allclose(scalers.hlf.minimum, hlf.min(axis=0), rtol=1e-6)
    np.testing.assert_allclose(scalers.hlf.maximum, hlf.max(axis=0), rtol=1e-6)
    parts = np.vstack([np.stack(p) for p in rows.particles]).astype(np.float64)
    np.testing.assert_allclose(scalers.particles.mean, parts.mean(axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(scalers.particles.std, parts.std(axis=0), rtol=1e-5, atol=1e-7)
    assert scalers.fitted_on["events"] == len(train) and scalers.fitted_on["particles"] == len(parts)

    # equal classes, disjoint splits, counts in the manifest, train HLF within [0, 1]
    for split, frame in (("train", train), ("test", test)):
        counts = frame.label.value_counts()
        assert counts.nunique() == 1 and len(counts) == 3
        assert manifest["counts"][split] == {p: int(counts.iloc[0]) for p in ("qcd", "ttbar", "wjets")}
    assert not set(zip(train.source_file, train.entry)) & set(zip(test.source_file, test.entry))
    train_hlf = np.stack(train.hlf.to_numpy())
    assert train_hlf.min() >= 0.0 and train_hlf.max() <= 1.0 + 1e-6
    assert (np.stack(train.label_onehot.to_numpy()).argmax(axis=1) == train.label).all()

    # particles: scaled and sorted (un-scaling the sorted rows reproduces the ΔR order)
    event = rows.iloc[0]
    raw_rows = np.stack(event.particles).astype(np.float64)
    expected = sort_by_delta_r(np.array([0, len(raw_rows)]), raw_rows)
    got = scalers.particles.inverse(np.stack(train.particles.iloc[0]).astype(np.float64))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)

    # row groups of at most rows_per_row_group events: the unit streamed into training
    import pyarrow.parquet as pq

    files = sorted(store.fs.glob(store.path("prepare", result["version"], "train", "*.parquet")))
    assert len(files) == 2
    groups = [pq.ParquetFile(f).metadata.row_group(i).num_rows for f in files for i in range(pq.ParquetFile(f).num_row_groups)]
    assert max(groups) == 16 and sum(groups) == len(train)

    again = prepare.run(spark, store, params)
    assert again == result


def test_bad_inputs_are_refused_with_the_version_named(spark, ingested, tmp_path):
    store, source = ingested
    before = store.versions("prepare")
    with pytest.raises(DatasetError, match=r"ingest version 'ing-0000000000000000' does not exist .*committed versions: ing-"):
        prepare.run(spark, store, PrepareParams.from_values({"input": "ing-0000000000000000"}, env={}))
    store.update_manifest("ingest", source, quality={"status": "failed"})
    try:
        with pytest.raises(DatasetError, match=rf"ingest version {source} has not passed its quality check \(status: failed\)"):
            prepare.run(spark, store, PrepareParams.from_values({"input": source}, env={}))
    finally:
        store.update_manifest("ingest", source, quality={"status": "passed"})
    counts = store.read_manifest("ingest", source)["counts"]
    store.update_manifest("ingest", source, counts=counts | {"qcd": 0})
    try:
        with pytest.raises(DatasetError, match=rf"ingest version {source} lacks class qcd"):
            prepare.run(spark, store, PrepareParams.from_values({"input": source}, env={}))
    finally:
        store.update_manifest("ingest", source, counts=counts)
    empty = DatasetStore(str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="no ingest version has passed its checks"):
        prepare.run(spark, empty, PrepareParams.from_values({}, env={}))
    assert store.versions("prepare") == before  # nothing was written


def test_prepare_takes_every_checked_batch_once(spark, sample_files, tmp_path):
    """Default input: every ingest version that passed its check, the newest per input batch."""
    store = DatasetStore(str(tmp_path / "data"))

    def ingested(spec: str, **params) -> str:
        version = ingest.run(spark, store, IngestParams.from_values({"input": spec, **params}, env={}))["version"]
        store.update_manifest("ingest", version, quality={"status": "passed"})
        return version

    first = ingested(f"qcd={sample_files['qcd']},ttbar={sample_files['ttbar']}")
    second = ingested(f"wjets={sample_files['wjets']}")
    again = ingested(f"wjets={sample_files['wjets']}", entries_per_split=7)  # the same batch, ingested anew
    assert prepare.checked_sources(store, "") == sorted([first, again])  # the newer ingest of that batch
    with pytest.raises(DatasetError, match=rf"ingest versions {second} and {again} hold the same input batch"):
        prepare.checked_sources(store, f"{second},{again}")
    with pytest.raises(DatasetError, match=rf"ingest version {second} lacks class qcd, ttbar"):
        prepare.checked_sources(store, second)
    result = prepare.run(spark, store, PrepareParams.from_values({"files_per_split": 1}, env={}))
    manifest = store.read_manifest("prepare", result["version"])
    assert manifest["inputs"] == {"ingest": sorted([first, again])}
    before = manifest["counts_before_balancing"]
    total = sum(store.read_manifest("ingest", v)["counts"]["total"] for v in (first, again))
    assert sum(n for split in before.values() for n in split.values()) == total


def test_files_written_bucket_by_bucket_hold_the_same_events(spark, ingested, monkeypatch):
    """Small buckets (a bounded memory per writing task) change only the order inside each file."""
    import pyarrow.parquet as pq

    store, source = ingested
    params = PrepareParams.from_values({"input": source, "seed": 5, "files_per_split": 2, "rows_per_row_group": 16}, env={})

    def files_and_events() -> dict[str, list[tuple[str, int]]]:
        version = prepare.run(spark, store, params)["version"]
        root = store.path("prepare", version)
        found = {}
        for path in sorted(store.fs.glob(f"{root}/*/*.parquet")):
            table = pq.read_table(path, columns=["source_file", "entry"])
            found[path[len(root):]] = list(zip(table.column("source_file").to_pylist(), table.column("entry").to_pylist()))
        store.fs.rm(root, recursive=True)
        return found

    whole = files_and_events()
    monkeypatch.setattr(prepare, "BUCKET_ROWS", 7)
    bucketed = files_and_events()
    assert whole.keys() == bucketed.keys() and len(whole) == 4
    assert all(sorted(whole[f]) == sorted(bucketed[f]) for f in whole)
    assert any(whole[f] != bucketed[f] for f in whole)  # another order: the buckets were used


def test_ingest_and_prepare_under_a_data_root_whose_path_needs_escaping(spark, tmp_path, sample_files):
    """Spark's URLs percent-encode a local path (``a%20b``); the Python tasks must write and read the
    real directory, not one named ``a%20b`` beside it (which left a committed version without its files)."""
    root = tmp_path / "data root é"
    store = DatasetStore(str(root))
    spec = ",".join(f"{p}={path}" for p, path in sample_files.items())
    ingested = ingest.run(spark, store, IngestParams.from_values({"input": spec}, env={}))["version"]
    store.update_manifest("ingest", ingested, quality={"status": "passed"})
    prepared = prepare.run(spark, store, PrepareParams.from_values({"input": ingested, "files_per_split": 2}, env={}))["version"]
    for stage, version in (("ingest", ingested), ("prepare", prepared)):
        for f in store.read_manifest(stage, version)["files"]:
            assert (root / stage / version / f["path"]).stat().st_size == f["size"], f["path"]
    assert not any(p.name != root.name for p in tmp_path.iterdir()), list(tmp_path.iterdir())  # nothing written beside it
    assert spark.read.parquet(store.url("prepare", prepared, "train")).count() > 0
