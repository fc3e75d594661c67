"""Training building blocks without Spark: hyper-parameters, models, batches, checkpoints, log-odds."""

from __future__ import annotations

import logging

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hep_tasks.config import ConfigError, QualityParams, TrainParams
from hep_tasks.score.predict import probabilities_and_log_odds
from hep_tasks.train.checkpoints import CheckpointStore, TrainingState
from hep_tasks.train.hyperparameters import DEFAULTS, parse_overrides, resolve
from hep_tasks.train.inputs import (
    BatchSpec,
    Block,
    RowGroup,
    ShardReader,
    catalogue,
    lineage_uniform,
    pad_sequences,
    shards,
    training_batches,
    validation_batches,
)


def test_pre_padding_keeps_the_last_rows_and_ends_with_the_lepton():
    # event 0: 3 rows (1, 2, 3 = lepton), event 1: 1 row (4); rows are 2 features wide
    offsets = np.array([0, 3, 4])
    rows = np.array([[1, 1], [2, 2], [3, 3], [4, 4]], dtype=np.float32)
    padded = pad_sequences(offsets, rows, 4)
    assert padded.shape == (2, 4, 2)
    assert padded[0, :, 0].tolist() == [0, 1, 2, 3] and padded[1, :, 0].tolist() == [0, 0, 0, 4]
    truncated = pad_sequences(offsets, rows, 2)  # the two rows closest to the lepton survive
    assert truncated[0, :, 0].tolist() == [2, 3] and truncated[1, :, 0].tolist() == [0, 4]


def test_block_take_and_concat_keep_each_events_rows():
    block = Block(np.eye(3, dtype=np.float32), np.arange(42, dtype=np.float32).reshape(3, 14),
                  np.array([0, 2, 3, 6]), np.arange(6 * 19, dtype=np.float32).reshape(6, 19))
    taken = block.take(np.array([2, 0]))
    assert taken.lengths.tolist() == [3, 2]
    np.testing.assert_array_equal(taken.rows, block.rows[[3, 4, 5, 0, 1]])
    np.testing.assert_array_equal(taken.hlf, block.hlf[[2, 0]])
    both = Block.concat([taken, block.take(np.array([1]))])
    assert both.lengths.tolist() == [3, 2, 1] and both.offsets.tolist() == [0, 3, 5, 6]
    np.testing.assert_array_equal(both.rows[-1], block.rows[2])


def test_validation_slice_is_seeded_by_lineage_and_near_its_fraction():
    files = pa.array([f"f{i % 7}.root" for i in range(20000)])
    entries = np.arange(20000)
    u = lineage_uniform(files, entries, seed=3)
    assert ((u >= 0) & (u < 1)).all()
    assert abs((u < 0.1).mean() - 0.1) < 0.01
    np.testing.assert_array_equal(u, lineage_uniform(files, entries, seed=3))
    # the same event gets the same number wherever it sits
    np.testing.assert_array_equal(u[::-1], lineage_uniform(pa.array(files.to_pylist()[::-1]), entries[::-1], 3))
    assert not np.array_equal(u, lineage_uniform(files, entries, seed=4))


def test_shards_balance_rows_and_use_every_row_group_once():
    groups = [RowGroup(f"f{i % 3}", i, n) for i, n in enumerate([100, 90, 80, 70, 60, 10])]
    parts = shards(groups, 2)
    assert sorted(g.index for p in parts for g in p) == list(range(len(groups)))
    assert [sum(g.rows for g in p) for p in parts] == [230, 180]  # largest first: 100+70+60 | 90+80+10


def _write_prepared(path, n_events: int, rows_per_group: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, n_events)
    particles = [rng.standard_normal((k, 19)).astype(np.float32).tolist() for k in lengths]
    labels = rng.integers(0, 3, n_events)
    table = pa.table({
        "label": pa.array(labels, pa.int32()),
        "label_onehot": pa.array(np.eye(3, dtype=np.float32)[labels].tolist(), pa.list_(pa.float32())),
        "hlf": pa.array(rng.random((n_events, 14)).astype(np.float32).tolist(), pa.list_(pa.float32())),
        "particles": pa.array(particles, pa.list_(pa.list_(pa.float32()))),
        "n_particles": pa.array(lengths, pa.int32()),
        "source_file": pa.array(["x.root"] * n_events),
        "entry": pa.array(np.arange(n_events), pa.int64()),
    })  # fmt: skip
    pq.write_table(table, path, row_group_size=rows_per_group)


def test_batches_stream_a_shard_without_the_validation_events(tmp_path):
    _write_prepared(tmp_path / "part-0.parquet", 300, 64)
    fs = fsspec.filesystem("file")
    groups = catalogue(fs, str(tmp_path))
    assert [g.rows for g in groups] == [64, 64, 64, 64, 44]
    reader = ShardReader(fs, groups, ("hlf", "particles"))
    spec = BatchSpec(("hlf", "particles"), batch_size=32, max_particles=801)
    val = [y for _, y in validation_batches(reader, spec, seed=1, validation_fraction=0.2)]
    n_val = sum(len(y) for y in val)
    assert 30 < n_val < 90
    stream = training_batches(reader, spec, seed=1, validation_fraction=0.2)
    first_pass = [next(stream) for _ in range((300 - n_val) // 32)]
    for features, y in first_pass:
        assert features["hlf"].shape == (32, 14) and y.shape == (32, 3)
        steps = features["particles"].shape[1]
        assert 1 <= steps <= 29
        # pre-padded: every event's last row is real (not all zeros)
        assert (np.abs(features["particles"][:, -1, :]).sum(axis=1) > 0).all()
    # bucketing: batches hold events of similar length (little padding overall)
    padded = sum(f["particles"].shape[0] * f["particles"].shape[1] for f, _ in first_pass)
    real = sum(int((np.abs(f["particles"]).sum(axis=2) > 0).sum()) for f, _ in first_pass)
    assert real / padded > 0.8
    full = BatchSpec(("particles",), batch_size=32, max_particles=801, padding="full")
    features, _ = next(training_batches(reader, full, seed=1, validation_fraction=0.2))
    assert features["particles"].shape == (32, 801, 19) and "hlf" not in features


def test_training_and_validation_events_are_complementary_whatever_the_order(tmp_path):
    """The validation slice depends on the seed only, not on the per-worker/per-attempt order."""
    _write_prepared(tmp_path / "part-0.parquet", 200, 50)
    fs = fsspec.filesystem("file")
    reader = ShardReader(fs, catalogue(fs, str(tmp_path)), ("hlf",))
    spec = BatchSpec(("hlf",), batch_size=1, bucketing=False)

    def rows(batches):  # the HLF rows identify the events here (random floats)
        return {tuple(f["hlf"][0]) for f, _ in batches}

    validation = rows(validation_batches(reader, spec, seed=5, validation_fraction=0.25))
    for order in (None, 1, 99):
        stream = training_batches(reader, spec, seed=5, order_seed=order, validation_fraction=0.25)
        train = rows(next(stream) for _ in range(200 - len(validation)))
        assert not train & validation and len(train) + len(validation) == 200


def test_a_shard_smaller_than_a_batch_gives_one_partial_batch_per_pass(tmp_path):
    _write_prepared(tmp_path / "part-0.parquet", 20, 64)
    reader = ShardReader(fsspec.filesystem("file"), catalogue(fsspec.filesystem("file"), str(tmp_path)), ("hlf",))
    stream = training_batches(reader, BatchSpec(("hlf",), 256), seed=0, validation_fraction=0.1)
    sizes = [len(next(stream)[1]) for _ in range(3)]
    assert sizes[0] == sizes[1] == sizes[2] and 10 <= sizes[0] < 20


def test_hyperparameters_and_train_params_are_checked_before_work():
    assert resolve("inclusive")["gru_units"] == 50 and resolve("hlf")["units"] == [50, 20, 10]
    assert parse_overrides('{"particle_sequence": {"gru_units": 64}}') == {"particle_sequence": {"gru_units": 64}}
    with pytest.raises(ValueError, match="unknown model 'cnn'"):
        parse_overrides('{"cnn": {}}')
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_overrides("{hlf: 1}")
    with pytest.raises(ConfigError, match=r"invalid parameter train.models='hlf,bdt': unknown model 'bdt'"):
        TrainParams.from_values({"models": "hlf,bdt"}, env={})
    with pytest.raises(ConfigError, match=r"train.hyperparameters=.*inclusive.dropout=1.5 must be a number in \[0, 1\)"):
        TrainParams.from_values({"hyperparameters": '{"inclusive": {"dropout": 1.5}}'}, env={})
    with pytest.raises(ConfigError, match=r"train.max_particles=0.*between 1 and 801"):
        TrainParams.from_values({"max_particles": 0}, env={})
    with pytest.raises(ConfigError, match=r"quality.auc_floors='hlf=2'.*between 0 and 1"):
        QualityParams.from_values({"version": "v", "auc_floors": "hlf=2"}, env={})
    assert QualityParams.from_values({"version": "v", "auc_floors": "hlf=0.9, *=0.7"}, env={}).floors() == {"hlf": 0.9, "*": 0.7}
    assert set(DEFAULTS) == {"hlf", "particle_sequence", "inclusive"}


def test_models_have_the_papers_shapes_and_named_inputs():
    from hep_tasks.train.models import build_model, logits_model

    hlf = build_model("hlf", resolve("hlf"))
    assert [layer.units for layer in hlf.layers if hasattr(layer, "units")] == [50, 20, 10, 3]
    assert hlf.count_params() == (14 * 50 + 50) + (50 * 20 + 20) + (20 * 10 + 10) + (10 * 3 + 3)
    inclusive = build_model("inclusive", resolve("inclusive"))
    assert sorted(i.name for i in inclusive.inputs) == ["hlf", "particles"]
    assert inclusive.get_layer("gru").units == 50 and inclusive.get_layer("dense").units == 25
    x = {"hlf": np.random.rand(4, 14).astype("float32"), "particles": np.random.randn(4, 7, 19).astype("float32")}
    p = inclusive(x).numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    z = logits_model(inclusive)(x).numpy()
    np.testing.assert_allclose(probabilities_and_log_odds(z)[0], p, rtol=1e-4, atol=1e-6)
    # masking: extra all-zero rows in front (pre-padding) do not change the prediction
    padded = dict(x, particles=np.concatenate([np.zeros((4, 5, 19), "float32"), x["particles"]], axis=1))
    np.testing.assert_allclose(inclusive(padded).numpy(), p, rtol=1e-5, atol=1e-6)


def test_log_odds_are_exact_where_float32_probabilities_saturate():
    z = np.array([[40.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    p, log_odds = probabilities_and_log_odds(z)
    assert np.float32(p[0, 0]) == 1.0  # float32 cannot tell it from 1 ...
    assert log_odds[0, 0] == pytest.approx(40.0 - np.log(2.0))  # ... the log-odds can
    np.testing.assert_allclose(log_odds[1], np.log(0.5) * np.ones(3))
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-log_odds)), p)


def test_checkpoints_round_trip_and_damaged_ones_are_ignored(tmp_path, caplog):
    fs = fsspec.filesystem("file")
    store = CheckpointStore(fs, str(tmp_path / "ckpt"))
    assert store.load({"weights": [], "optimizer": []}) is None
    state = TrainingState(epoch=2, history={"loss": [1.0, 0.5]}, best_val_loss=0.6, best_epoch=2, wait=0,
                          weights=[np.ones((2, 3), np.float32)], optimizer=[np.array(7, np.int64)],
                          best_weights=[np.zeros((2, 3), np.float32)])  # fmt: skip
    store.save(state)
    state.epoch = 3
    store.save(state)
    assert [p.rsplit("/", 1)[-1] for p in fs.glob(str(tmp_path / "ckpt" / "epoch-*.npz"))] == ["epoch-0003.npz"]
    loaded = store.load(state.shapes())
    assert loaded.epoch == 3 and loaded.history == {"loss": [1.0, 0.5]} and loaded.best_epoch == 2
    np.testing.assert_array_equal(loaded.weights[0], state.weights[0])
    assert int(loaded.optimizer[0]) == 7
    with caplog.at_level(logging.WARNING):
        assert store.load({"weights": [[9]], "optimizer": [[]]}) is None
        assert "do not fit the model" in caplog.text
        (tmp_path / "ckpt" / "epoch-0003.npz").write_bytes(b"not an npz")
        assert store.load(state.shapes()) is None
        assert "unreadable checkpoint" in caplog.text
