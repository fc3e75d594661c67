"""
### hep_pipeline: simulated LHC events to trained trigger classifiers

Runs when `hep_simulation` announces a new batch (Asset `hep_simulated_events`), or by hand. Each
stage is a Spark job (`hep_tasks <stage>` through `spark-submit`, connection `hep_spark`):

1. **ingest** + **check_ingested**, once per new input: the simulate versions of the triggering
   Asset events, and those named in *Simulation versions* or *Input ROOT files*. A batch already
   ingested by the same code with the same parameters is reused, not read again. Nothing new:
   both are skipped.
2. **prepare** + **check_prepared**: every ingest version that passed its check (the newest per
   batch), so the models always see every published batch; split, balance, scale, ΔR-sort.
3. **tune** (skippable) → **train** → **evaluate** → **check_model**: Optuna search, the three Keras
   classifiers trained data-parallel on Spark, test-split ROC/AUC and report, model gate.
4. **publish**: only when every check passed, moves the `latest` pointers to this run's versions,
   updates the index page of published models, and emits the Asset events.

Versions are content-derived: a run with nothing new finds every version committed, starts no
Spark work (the task logs say so, the XCom has `spark_work: false`) and publishes the same.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, TriggerRule, task
from hep_airflow.assets import EVALUATIONS, INGESTED_EVENTS, MODELS, PREPARED_DATASETS, SIMULATED_EVENTS
from hep_airflow.operators import HepStageOperator

from hep_tasks.config import (
    MAX_EPOCHS,
    MAX_TIME_BUDGET_S,
    MAX_TRIALS,
    MAX_VALUE_CHARS,
    MAX_WORKERS,
    IngestParams,
    PrepareParams,
    QualityParams,
    TrainParams,
    TuneParams,
)
from hep_tasks.train.hyperparameters import MODELS as MODEL_NAMES

# the form's defaults: the code's, or HEP_<STAGE>_<PARAM> where the DAG processor runs (an Asset-triggered
# run takes them as they are)
ING, PREP, TRAIN, QUAL, TUNE = (p.from_values(check=False) for p in (IngestParams, PrepareParams, TrainParams, QualityParams, TuneParams))


def _xcom_version(task_id: str) -> str:
    return "{{ ti.xcom_pull(task_ids='%s')['version'] }}" % task_id


#: The Spark connection of every stage task: the run's *Spark connection* param.
SPARK = "{{ params.spark_connection }}"
#: The tune task's version, or empty when it was skipped (no XCom).
TUNE_VERSION = "{{ (ti.xcom_pull(task_ids='tune') or {}).get('version', '') if params.tune else '' }}"


with DAG(
    dag_id="hep_pipeline",
    description="Simulated LHC events -> features -> train/test datasets -> trained, evaluated classifiers",
    doc_md=__doc__,
    schedule=[SIMULATED_EVENTS],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["hep", "spark", "simulation", "ml"],
    default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=2)},
    params={
        "spark_connection": Param(
            "hep_spark", type="string", minLength=1, maxLength=250, title="Spark connection",
            description="The Airflow connection of the Spark master every stage is submitted to (hep_spark: the "
            "embedded local[*] unless a deployment points it at a cluster); name another connection to run this "
            "run elsewhere, e.g. a standalone cluster.",
        ),
        "simulation_versions": Param(
            None, type=["null", "array"], items={"type": "string"}, title="Simulation versions",
            description="Simulate versions (sim-...) to ingest in this run, besides those of the Asset events "
            "that triggered it; empty = none.",
        ),
        "input_path": Param(
            None, type=["null", "string"], maxLength=MAX_VALUE_CHARS, title="Input ROOT files",
            description="ROOT files to ingest in this run (paths, globs or URLs, comma separated; process= "
            "prefixes allowed); local paths under the data root or HEP_INPUT_ROOTS, URLs root://, s3a://, "
            "hdfs://, https://...; empty = none.",
        ),
        "on_bad_file": Param(
            ING.on_bad_file, type="string", enum=["skip", "fail"], title="Bad input files",
            description="skip: quarantine unreadable ROOT files, record them and go on; fail: stop.",
        ),
        "max_quarantined_fraction": Param(
            ING.max_quarantined_fraction, type="number", minimum=0, maximum=1, title="Max quarantined fraction",
            description="The ingest quality check fails when more input files than this were quarantined.",
        ),
        "test_fraction": Param(
            PREP.test_fraction, type="number", exclusiveMinimum=0, exclusiveMaximum=1, title="Test fraction",
            description="Fraction of events in the test split.",
        ),
        "split_seed": Param(PREP.seed, type="integer", minimum=0, title="Split seed",
                            description="Seed of the train/test split, the balancing and the shuffle."),
        "models": Param(
            list(TRAIN.models), type="array", items={"type": "string", "enum": list(MODEL_NAMES)},
            examples=list(MODEL_NAMES), title="Models", description="Classifiers to train: hlf (dense net on the 14 high-level features), "
            "particle_sequence (GRU over the particle list), inclusive (GRU + high-level features).",
        ),
        "tune": Param(
            True, type="boolean", title="Tune hyper-parameters",
            description="Run the tune task (an Optuna search per model, trials in parallel Spark tasks) and train "
            "with its best hyper-parameters; off = skip it and train with the defaults.",
        ),
        "tune_trials": Param(
            TUNE.trials, type="integer", minimum=1, maximum=MAX_TRIALS, title="Tuning trials per model",
            description="Trials of the search of each model; each round runs as many in parallel as Spark has task slots.",
        ),
        "tune_epochs": Param(TUNE.epochs, type="integer", minimum=1, maximum=MAX_EPOCHS, title="Epochs per tuning trial",
                             description="Training epochs of each trial (pruning may stop a poor trial sooner)."),
        "tune_subsample_fraction": Param(
            TUNE.subsample_fraction, type="number", exclusiveMinimum=0, maximum=1, title="Tuning subsample fraction",
            description="Seeded fraction of the train split the trials train and validate on (1 = all of it); "
            "the test split is never read by tuning.",
        ),
        "tune_time_budget_s": Param(
            TUNE.time_budget_s, type="integer", minimum=1, maximum=MAX_TIME_BUDGET_S, title="Tuning time budget (s)",
            description="Seconds for the whole search, shared equally by the models; no new round of trials starts "
            "after it (a started round finishes; every model gets at least one round).",
        ),
        "search_space": Param(
            TUNE.search_space or None, type=["null", "string"], maxLength=MAX_VALUE_CHARS, title="Search space (JSON)",
            description='Per-model search spaces replacing that model\'s default one, e.g. {"hlf": {"units": {"choices": '
            '[[64, 32], [128, 64, 32]]}, "dropout": {"low": 0, "high": 0.3}, "learning_rate": {"low": 0.0003, '
            '"high": 0.03, "log": true}}}; empty = the defaults (README, Tuning).',
        ),
        "workers": Param(
            TRAIN.workers, type="integer", minimum=1, maximum=MAX_WORKERS, title="Training workers",
            description="TensorFlow workers, one Spark task each; at most the Spark application's task slots.",
        ),
        "epochs": Param(TRAIN.epochs, type="integer", minimum=1, maximum=MAX_EPOCHS, title="Epochs",
                        description="Most training epochs per model (early stopping on validation loss may end sooner)."),
        "hyperparameters": Param(
            TRAIN.hyperparameters or None, type=["null", "string"], maxLength=MAX_VALUE_CHARS, title="Hyper-parameters (JSON)",
            description='Per-model overrides, e.g. {"hlf": {"units": [64, 32], "learning_rate": 0.002}}, over the '
            "tuned values (or the defaults when tuning is off); empty = none.",
        ),
        "auc_floors": Param(
            QUAL.auc_floors, type="string", maxLength=MAX_VALUE_CHARS, title="AUC floors",
            description="check_model fails when a model's tt̄-vs-QCD test AUC is below its floor, e.g. "
            "hlf=0.9,inclusive=0.95; * applies to every model.",
        ),
    },
) as dag:

    @task
    def new_inputs(params: dict, triggering_asset_events=None) -> list[dict]:
        """The ingest parameters of every new input of this run (none: ingest is skipped). Named ROOT
        files must be inside the data root or HEP_INPUT_ROOTS, or URLs of an allowed scheme."""
        from airflow.sdk.exceptions import AirflowFailException

        from hep_tasks.catalog import ingest_inputs
        from hep_tasks.config import PipelineSettings
        from hep_tasks.errors import PipelineError
        from hep_tasks.ingest.inputs import check_input_locations

        if params["input_path"]:
            settings = PipelineSettings.from_values({})
            try:
                check_input_locations(params["input_path"], settings.input_locations())
            except PipelineError as err:
                raise AirflowFailException(str(err)) from None  # a wrong parameter: no retry

        triggered = [
            e.extra["version"] for events in (triggering_asset_events or {}).values() for e in events
            if (e.extra or {}).get("version")
        ]  # fmt: skip
        inputs = ingest_inputs(input_path=params["input_path"], simulation_versions=params["simulation_versions"],
                               triggered=triggered)  # fmt: skip
        settings = {"on_bad_file": params["on_bad_file"], "max_quarantined_fraction": params["max_quarantined_fraction"]}
        return [{"input": item, **settings} for item in inputs]

    ingest = HepStageOperator.partial(task_id="ingest", stage="ingest", conn_id=SPARK).expand(stage_params=new_inputs())

    check_ingested = HepStageOperator.partial(task_id="check_ingested", stage="quality", conn_id=SPARK).expand(
        stage_params=ingest.output.map(lambda summary: {"stage": "ingest", "version": summary["version"]})
    )

    prepare = HepStageOperator(
        task_id="prepare",
        conn_id=SPARK,
        stage="prepare",
        trigger_rule=TriggerRule.NONE_FAILED,  # also when there was nothing new to ingest
        stage_params={"test_fraction": "{{ params.test_fraction }}", "seed": "{{ params.split_seed }}"},
    )

    check_prepared = HepStageOperator(
        task_id="check_prepared",
        conn_id=SPARK,
        stage="quality",
        stage_params={"stage": "prepare", "version": _xcom_version("prepare")},
    )

    @task.branch(task_id="choose_tuning")
    def choose_tuning(params: dict) -> str:
        """Tune unless the run turns tuning off."""
        return "tune" if params["tune"] else "train"

    tune = HepStageOperator(
        task_id="tune",
        conn_id=SPARK,
        stage="tune",
        stage_params={
            "input": _xcom_version("check_prepared"),
            "models": "{{ params.models | join(',') }}",
            "trials": "{{ params.tune_trials }}",
            "epochs": "{{ params.tune_epochs }}",
            "subsample_fraction": "{{ params.tune_subsample_fraction }}",
            "time_budget_s": "{{ params.tune_time_budget_s }}",
            "search_space": "{{ params.search_space or '' }}",
        },
    )

    train = HepStageOperator(
        task_id="train",
        conn_id=SPARK,
        stage="train",
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,  # also when tune was skipped
        stage_params={
            "input": _xcom_version("check_prepared"),
            "models": "{{ params.models | join(',') }}",
            "workers": "{{ params.workers }}",
            "epochs": "{{ params.epochs }}",
            "hyperparameters": "{{ params.hyperparameters or '' }}",
            # the tune version (its manifest holds the best hyper-parameters); empty when tune was skipped
            "tune": TUNE_VERSION,
        },
    )

    evaluate = HepStageOperator(
        task_id="evaluate",
        conn_id=SPARK,
        stage="evaluate",
        stage_params={"input": _xcom_version("train")},
    )

    check_model = HepStageOperator(
        task_id="check_model",
        conn_id=SPARK,
        stage="quality",
        stage_params={"stage": "evaluate", "version": _xcom_version("evaluate"), "auc_floors": "{{ params.auc_floors }}"},
    )

    @task(outlets=[INGESTED_EVENTS, PREPARED_DATASETS, MODELS, EVALUATIONS])
    def publish(ti=None, outlet_events=None) -> dict:
        """Every check passed: move `latest` to this run's versions, update the index, emit the Assets."""
        from hep_tasks.catalog import publish_run
        from hep_tasks.config import PipelineSettings
        from hep_tasks.datasets import DatasetStore

        store = DatasetStore(PipelineSettings.from_values({}).data_root)
        published = publish_run(store, **{stage: ti.xcom_pull(task_ids=stage)["version"] for stage in ("prepare", "train", "evaluate")})
        for asset, stage in ((INGESTED_EVENTS, "ingest"), (PREPARED_DATASETS, "prepare"), (MODELS, "train"), (EVALUATIONS, "evaluate")):
            outlet_events[asset].extra = {"versions": published[stage]} if stage == "ingest" else published[stage]
        return published

    ingest >> check_ingested >> prepare >> check_prepared >> choose_tuning() >> [tune, train]
    tune >> train >> evaluate >> check_model >> publish()
