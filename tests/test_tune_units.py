"""Tuning building blocks without Spark: search spaces, parameters, Optuna study and pruning rule,
resuming an interrupted study, one trial run in-process, the hand-over to the train stage."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hep_tasks.config import ConfigError, TrainParams, TuneParams
from hep_tasks.datasets import DatasetError, DatasetStore
from hep_tasks.train.hyperparameters import MODELS, resolve
from hep_tasks.tune.space import DEFAULT_SPACE, Choice, Range, decode_params, parse_space, searched, suggest


def test_default_spaces_search_layers_dropout_rate_batch_and_gru_units():
    spaces = parse_space("")
    assert set(spaces) == set(MODELS)
    assert set(searched(spaces["hlf"])) == {"units", "dropout", "learning_rate", "batch_size"}
    assert {"gru_units", "dropout", "learning_rate", "batch_size"} <= set(searched(spaces["particle_sequence"]))
    assert {"gru_units", "dense_units"} <= set(searched(spaces["inclusive"]))
    assert spaces["hlf"]["units"] == Choice(tuple(DEFAULT_SPACE["hlf"]["units"]["choices"]))
    assert spaces["inclusive"]["gru_units"] == Range(16, 128, True, None)


def test_a_model_named_in_the_json_gets_exactly_that_space():
    spaces = parse_space({"hlf": {"dropout": {"low": 0.0, "high": 0.5}, "batch_size": 256}})
    assert set(spaces["hlf"]) == {"dropout", "batch_size"} and searched(spaces["hlf"]) == ["dropout"]
    assert spaces["inclusive"] == parse_space("")["inclusive"]  # the others keep their default


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ('{"hlf": {}}', r"the search space of model hlf is empty \(it can search: batch_size, dropout, learning_rate, steps_per_call, units\)"),
        ('{"hlf": {"dropout": 0.1}}', r"the search space of model hlf fixes every value \(dropout\): nothing to search"),
        ('{"bdt": {"depth": 3}}', r"unknown model 'bdt' \(known: hlf, particle_sequence, inclusive\)"),
        ('{"hlf": {"gru_units": {"low": 8, "high": 64}}}', r"unknown hyper-parameter 'gru_units' in the search space of model hlf"),
        ('{"hlf": {"dropout": {"low": 0.2, "high": 0.1}}}', r"hlf\.dropout: low=0\.2 must be below high=0\.1"),
        ('{"hlf": {"dropout": {"low": 0, "high": 1}}}', r"hlf\.dropout: hyper-parameter hlf\.dropout=1 must be a number in \[0, 1\)"),
        ('{"hlf": {"learning_rate": {"low": 0, "high": 0.1, "log": true}}}', r"a log range needs low > 0"),
        ('{"inclusive": {"gru_units": {"low": 8.5, "high": 20}}}', r"inclusive\.gru_units: low=8\.5 must be an integer"),
        ('{"hlf": {"units": {"low": 1, "high": 3}}}', r'hlf\.units: takes \{"choices": \[\.\.\.\]\} of lists'),
        ('{"hlf": {"units": {"choices": [[64, 0]]}}}', r"hlf\.units: hyper-parameter hlf\.units=\[64, 0\] must be a list"),
        ('{"hlf": {"batch_size": {"choices": []}}}', r"hlf\.batch_size: choices must be a non-empty list"),
        ('{"hlf": {"dropout": {"low": 0, "high": 0.3, "max": 1}}}', r"is neither a range"),
        ("{hlf}", r"not valid JSON"),
        ("[1, 2]", r"must be a JSON object"),
    ],
)
def test_bad_search_spaces_are_refused_naming_model_and_hyperparameter(space, message):
    with pytest.raises(ConfigError, match=r"invalid parameter tune\.search_space=.*" + message):
        TuneParams.from_values({"search_space": space}, env={})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"trials": 0}, r"tune\.trials=0: must be a positive integer"),
        ({"time_budget_s": 0}, r"tune\.time_budget_s=0: must be a positive integer"),
        ({"subsample_fraction": 0}, r"tune\.subsample_fraction=0\.0: must be above 0 and at most 1"),
        ({"subsample_fraction": 1.5}, r"tune\.subsample_fraction=1\.5"),
        ({"validation_fraction": 1}, r"tune\.validation_fraction=1\.0: must be strictly between 0 and 1"),
        ({"models": "hlf,bdt"}, r"tune\.models='hlf,bdt': unknown model 'bdt'"),
        ({"parallel_trials": -1}, r"tune\.parallel_trials=-1: must be zero or positive"),
    ],
)
def test_bad_tune_parameters_name_the_parameter(values, message):
    with pytest.raises(ConfigError, match=message):
        TuneParams.from_values(values, env={})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "invalid parameter tune.trials=0: must be a positive integer"),
        (["--time-budget-s", "0"], "invalid parameter tune.time_budget_s=0: must be a positive integer"),
        (["--search-space", '{"hlf": {}}'], "the search space of model hlf is empty"),
    ],
)
def test_cli_refuses_bad_tune_parameters_before_spark_starts(args, message):
    run = subprocess.run([sys.executable, "-m", "hep_tasks", "tune", *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hep_tasks tune: error: ") and message in lines[0]


def test_every_suggestion_is_a_valid_hyperparameter_set_and_lists_round_trip():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spaces = parse_space("")
    for model in MODELS:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        for _ in range(25):
            trial = study.ask()
            values = suggest(trial, spaces[model])
            hp = resolve(model, {model: values})  # raises if any value is not allowed
            assert decode_params(spaces[model], trial.params) == values
            study.tell(trial, 1.0)
            if model == "hlf":
                assert isinstance(hp["units"], list) and hp["units"] in DEFAULT_SPACE["hlf"]["units"]["choices"]
            else:
                assert isinstance(hp["gru_units"], int) and 16 <= hp["gru_units"] <= 128


def test_pruning_thresholds_follow_optunas_median_pruner():
    import optuna

    from hep_tasks.tune.study import PRUNER_WARMUP_EPOCHS, open_study, pruning_thresholds

    study = open_study(optuna.storages.InMemoryStorage(), "hlf", seed=0, trials=10, parallel=2)
    assert pruning_thresholds(study, 3) == [None, None, None]  # no completed trial yet
    for curve in ([1.0, 0.8, 0.7], [1.2, 0.9, 0.6], [1.1, 0.7, 0.65]):
        trial = study.ask()
        for step, value in enumerate(curve):
            trial.report(value, step)
        study.tell(trial, min(curve))
    thresholds = pruning_thresholds(study, 3)
    assert thresholds[:PRUNER_WARMUP_EPOCHS] == [None] and thresholds[1:] == [0.8, 0.65]
    # a new trial: the rule "best loss so far above the threshold" is exactly the pruner's decision
    for curve in ([1.3, 0.85], [1.3, 0.75], [0.5, 0.9], [1.0, 0.8, 0.66], [1.0, 0.8, 0.64]):
        trial = study.ask()
        for step, value in enumerate(curve):
            trial.report(value, step)
        best = min(curve)
        ours = thresholds[len(curve) - 1] is not None and best > thresholds[len(curve) - 1]
        assert trial.should_prune() == ours, curve
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)


def test_an_interrupted_attempt_is_resumed_from_the_journal_file(tmp_path):
    from optuna.trial import TrialState

    from hep_tasks.tune.study import counted, open_study, recover_interrupted, storage, tell

    path = str(tmp_path / "study.journal")
    space = parse_space("")["hlf"]
    study = open_study(storage(path), "hlf", seed=3, trials=4, parallel=2)
    first, second = study.ask(), study.ask()
    suggest(first, space), suggest(second, space)
    tell(study, first, {"state": "complete", "value": 0.5, "history": {"val_loss": [0.7, 0.5]}}, {"attempt": "a"})
    lost_params = second.params  # the process dies with trial 1 running
    del study

    again = open_study(storage(path), "hlf", seed=3, trials=4, parallel=2)  # a new process
    assert [t.state for t in again.get_trials()] == [TrialState.COMPLETE, TrialState.RUNNING]
    assert recover_interrupted(again) == [1]
    assert again.trials[0].value == 0.5 and again.trials[0].intermediate_values == {0: 0.7, 1: 0.5}
    assert [t.number for t in counted(again.get_trials())] == [0]  # the interrupted one does not count
    retry = again.ask()
    assert retry.params == {} and suggest(retry, space) and retry.params == lost_params  # queued again
    assert retry.user_attrs["retry_of"] == 1


def test_auc_equals_the_pairwise_count():
    from hep_tasks.tune.trial import auc

    rng = np.random.default_rng(0)
    s, b = rng.integers(0, 5, 40).astype(float), rng.integers(0, 4, 30).astype(float)
    pairs = [(1.0 if x > y else 0.5 if x == y else 0.0) for x, y in itertools.product(s, b)]
    assert auc(s, b) == pytest.approx(np.mean(pairs))
    assert auc(s, np.array([])) is None


def _prepared_file(path, n: int, seed: int = 0) -> None:
    """A prepared-schema Parquet file whose tt̄ and QCD events differ in their HLF."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    hlf = rng.random((n, 14)).astype(np.float32)
    hlf[:, 0] += labels * 0.5
    lengths = rng.integers(1, 12, n)
    table = pa.table({
        "label": pa.array(labels, pa.int32()),
        "label_onehot": pa.array(np.eye(3, dtype=np.float32)[labels].tolist(), pa.list_(pa.float32())),
        "hlf": pa.array(hlf.tolist(), pa.list_(pa.float32())),
        "particles": pa.array([rng.standard_normal((k, 19)).astype(np.float32).tolist() for k in lengths],
                              pa.list_(pa.list_(pa.float32()))),
        "n_particles": pa.array(lengths, pa.int32()),
        "source_file": pa.array(["x.root"] * n),
        "entry": pa.array(np.arange(n), pa.int64()),
    })  # fmt: skip
    pq.write_table(table, path, row_group_size=128)


def test_a_trial_trains_validates_and_is_pruned_by_its_thresholds(tmp_path):
    from hep_tasks.train.inputs import catalogue, shard_train_rows
    from hep_tasks.tune.trial import TrialSpec, run_trial, trial_task

    (tmp_path / "sub").mkdir()
    _prepared_file(tmp_path / "sub" / "part-0.parquet", 600)
    groups = catalogue(fsspec.filesystem("file"), str(tmp_path / "sub"))
    hp = resolve("hlf", {"hlf": {"units": [16, 8], "learning_rate": 0.01, "batch_size": 32}})
    spec = TrialSpec(model="hlf", number=0, hyperparameters=hp, data_root=str(tmp_path), groups=[g.to_dict() for g in groups],
                     train_events=shard_train_rows(groups, 0.25), epochs=3, validation_fraction=0.25, seed=1)  # fmt: skip
    result = run_trial(spec)
    assert result["state"] == "complete" and result["epochs_run"] == 3 and result["batch_size_used"] == 32
    assert result["value"] == pytest.approx(min(result["history"]["val_loss"]))
    assert 100 < result["validation_events"] < 200 and 0.0 <= result["val_auc"] <= 1.0
    assert result["history"]["val_loss"][-1] < result["history"]["val_loss"][0]  # it learns
    again = run_trial(spec)  # the same Python process again (as Spark reuses its workers): same result
    assert again["history"]["val_loss"] == pytest.approx(result["history"]["val_loss"], rel=1e-4)

    pruned = run_trial(TrialSpec(**{**spec.__dict__, "thresholds": [None, 1e-6, 1e-6]}))
    assert pruned["state"] == "pruned" and pruned["epochs_run"] == 2

    # an exception in a trial is a failed result with its error, not a failed Spark task
    bad = TrialSpec(**{**spec.__dict__, "groups": [{"path": str(tmp_path / "missing.parquet"), "index": 0, "rows": 10}]})
    (out,) = [json.loads(r) for r in trial_task(run_trial)(iter([bad.to_json()]))]
    assert out["state"] == "fail" and "FileNotFoundError" in out["error"] and out["number"] == 0
    assert out["ended_at"] >= out["started_at"] and out["executor"]


def _tune_version(store: DatasetStore, source: str, best: dict) -> str:
    with store.begin("tune", "tun-test") as pending:
        pending.commit({"inputs": {"prepare": source}, "best_hyperparameters": best})
    return "tun-test"


def test_train_takes_the_tuned_values_under_explicit_overrides(tmp_path, caplog):
    from hep_tasks.train.stage import model_hyperparameters, tuned_hyperparameters

    store = DatasetStore(str(tmp_path))
    best = {"hlf": resolve("hlf", {"hlf": {"units": [64, 32], "dropout": 0.2, "learning_rate": 0.01, "batch_size": 256}})}
    version = _tune_version(store, "pre-a", best)
    tuned = tuned_hyperparameters(store, version, "pre-a")
    assert tuned == best and tuned_hyperparameters(store, "", "pre-a") == {}
    params = TrainParams.from_values({"models": "hlf,inclusive", "tune": version, "hyperparameters": '{"hlf": {"dropout": 0.05}}',
                                      "batch_size": 128}, env={})  # fmt: skip
    hp = model_hyperparameters(params, tuned)
    # defaults < tuned < hyperparameters JSON < batch_size flag; models without a tuned value keep their defaults
    assert hp["hlf"] == best["hlf"] | {"dropout": 0.05, "batch_size": 128}
    assert hp["inclusive"] == resolve("inclusive") | {"batch_size": 128}
    with caplog.at_level("WARNING"):
        tuned_hyperparameters(store, version, "pre-b")
    assert "was tuned on prepare version pre-a, not on pre-b" in caplog.text
    with pytest.raises(DatasetError, match=r"tune version 'tun-nope' does not exist .* \(committed versions: tun-test\)"):
        tuned_hyperparameters(store, "tun-nope", "pre-a")
    with store.begin("tune", "tun-empty") as pending:
        pending.commit({"inputs": {"prepare": "pre-a"}})
    with pytest.raises(DatasetError, match=r"tune version tun-empty has no best_hyperparameters"):
        tuned_hyperparameters(store, "tun-empty", "pre-a")


def test_importances_plots_and_report_of_a_study(tmp_path):
    import optuna

    from hep_tasks.tune.report import importances, plot_history, plot_importances, render_report, trial_records
    from hep_tasks.tune.study import open_study, tell

    space = parse_space("")["hlf"]
    study = open_study(optuna.storages.InMemoryStorage(), "hlf", seed=2, trials=12, parallel=2)
    assert importances(study) is None  # too few completed trials
    for i in range(12):
        trial = study.ask()
        values = suggest(trial, space)
        loss = 0.3 + values["dropout"] + 0.01 * len(values["units"])  # dropout matters most
        result = {"state": "fail", "error": "RuntimeError: <boom>"} if i == 5 else {
            "state": "pruned" if i == 7 else "complete", "value": loss, "history": {"val_loss": [loss + 0.2, loss]}}
        attrs = {"hyperparameters": resolve("hlf", {"hlf": values}), "val_auc": 0.9, "error": result.get("error")}
        tell(study, trial, result, attrs)
    found = importances(study)
    assert set(found) == set(searched(space)) and abs(sum(found.values()) - 1) < 1e-6
    assert max(found, key=found.get) == "dropout"
    records = trial_records(study, space)
    assert [r["state"] for r in records].count("complete") == 10 and records[5]["error"] == "RuntimeError: <boom>"
    assert records[7]["state"] == "pruned" and records[7]["val_loss"] == pytest.approx(min(study.trials[7].intermediate_values.values()))
    assert isinstance(records[0]["params"]["units"], list)
    plots = [plot_history("hlf", records, tmp_path / "h.png"), plot_importances("hlf", found, tmp_path / "i.png"),
             plot_importances("hlf", None, tmp_path / "none.png")]  # fmt: skip
    assert all(p.stat().st_size > 1000 for p in plots)
    page = render_report(title="search <x>", run_info={"tune version": "tun-1"}, models={"hlf": {"best": {"trial": 0}}},
                         trials={"hlf": records}, plots={"hlf": plots[:2]})  # fmt: skip
    assert page.count("data:image/png;base64,") == 2 and "RuntimeError: &lt;boom&gt;" in page and "<x>" not in page
