"""The tune task in hep_pipeline: between check_prepared and train, skippable, its version handed
to train (train's `tune` parameter, rendered from the tune task's XCom), its params typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hep_tasks.config import TrainParams, TuneParams

DAGS = Path(__file__).resolve().parent.parent / "dags"


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "hep_pipeline.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["hep_pipeline"]


def test_tune_sits_between_check_prepared_and_train_and_can_be_skipped(dag):
    assert dag.get_task("check_prepared").downstream_task_ids == {"choose_tuning"}
    assert dag.get_task("choose_tuning").downstream_task_ids == {"tune", "train"}
    assert dag.get_task("tune").downstream_task_ids == {"train"}
    assert dag.get_task("train").upstream_task_ids == {"choose_tuning", "tune"}
    # train runs after tune, or after the branch alone when tuning is off
    assert dag.get_task("train").trigger_rule == "none_failed_min_one_success"
    assert dag.get_task("tune").retries >= 1


class _TaskInstance:
    def __init__(self, xcom: dict):
        self.xcom = xcom

    def xcom_pull(self, task_ids: str):
        return self.xcom.get(task_ids)


@pytest.mark.parametrize(
    ("tune", "xcom", "expected"),
    [
        (True, {"tune": {"version": "tun-0123456789abcdef", "best_hyperparameters": {}}}, "tun-0123456789abcdef"),
        (False, {}, ""),  # skipped: no XCom, train uses the defaults
        (True, {}, ""),
    ],
)
def test_train_receives_the_tune_version_from_xcom(dag, tune, xcom, expected):
    train = dag.get_task("train")
    context = {"ti": _TaskInstance(xcom), "params": {"tune": tune}}
    assert train.render_template(train.stage_params["tune"], context) == expected
    TrainParams.from_values({"tune": expected}, env={})  # a valid train parameter


def test_tune_params_render_to_valid_stage_parameters(dag):
    tune = dag.get_task("tune")
    params = {k: v.value if hasattr(v, "value") else v for k, v in dag.params.items()}
    assert params["tune"] is True
    context = {"ti": _TaskInstance({"check_prepared": {"version": "pre-1"}}), "params": params}
    rendered = {k: tune.render_template(v, context) for k, v in tune.stage_params.items()}
    values = TuneParams.from_values(rendered, env={})
    defaults = TuneParams()
    assert (values.trials, values.epochs, values.subsample_fraction, values.time_budget_s) == (
        defaults.trials, defaults.epochs, defaults.subsample_fraction, defaults.time_budget_s
    )
    assert values.input == "pre-1" and values.models == defaults.models and values.search_space == ""
