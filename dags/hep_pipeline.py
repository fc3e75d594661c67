"""
### hep_pipeline: simulated LHC events to trained trigger classifiers

Each task is a Spark job (`hep_tasks <stage>` through `spark-submit`, connection `hep_spark`):

1. **simulate**: Pythia8 tt̄, W+jets and QCD with a Delphes-like detector response, one ROOT file per
   Spark task. Skipped when *Input ROOT files* is set.
2. **ingest**: ROOT to Parquet with the 14 high-level features and the particle matrix; unreadable
   files are quarantined (or fail the run, see *Bad input files*).
3. **check_ingested**: Great Expectations suite on the ingested data; publishes the version.
4. **prepare**: train/test split, class balancing, scaling fitted on train, ΔR sorting, shuffling.
5. **check_prepared**: Great Expectations suite on the train/test datasets; publishes the version.
6. **train**: the HLF, particle-sequence and inclusive Keras classifiers, data-parallel on Spark (a
   barrier stage of *Training workers* TensorFlow workers), checkpointed every epoch.
7. **evaluate**: test-split predictions, ROC/AUC, confusion matrices, tt̄ efficiency at fixed QCD
   acceptance, loss curves; `report.html` and `metrics.json`.
8. **check_model**: Great Expectations suite on the predictions and the AUC floors; publishes the
   models (`latest`) only when it passes.

Every output is a versioned dataset under the data root (`HEP_DATA_ROOT`); versions travel as XCom
and as Asset events. Rerunning with the same parameters reuses the existing versions.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, TriggerRule, task
from hep_airflow.assets import INGESTED_EVENTS, MODELS, PREPARED_DATASETS, SIMULATED_EVENTS
from hep_airflow.operators import HepStageOperator

from hep_tasks.config import IngestParams, PrepareParams, QualityParams, SimulateParams, TrainParams
from hep_tasks.processes import PROCESSES
from hep_tasks.train.hyperparameters import MODELS as MODEL_NAMES

SIM, ING, PREP, TRAIN, QUAL = SimulateParams(), IngestParams(), PrepareParams(), TrainParams(), QualityParams()


def _xcom_version(task_id: str) -> str:
    return "{{ ti.xcom_pull(task_ids='%s')['version'] }}" % task_id


with DAG(
    dag_id="hep_pipeline",
    description="Simulated LHC events -> features -> train/test datasets -> trained, evaluated classifiers",
    doc_md=__doc__,
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["hep", "spark", "simulation", "ml"],
    default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=2)},
    params={
        "processes": Param(
            list(SIM.processes),
            type="array",
            items={"type": "string", "enum": list(PROCESSES)},
            title="Processes",
            description="Physics processes to simulate: ttbar (label 1), wjets (label 2), qcd (label 0).",
        ),
        "events_per_file": Param(
            SIM.events_per_file, type="integer", minimum=1, title="Events per file",
            description="Accepted (lepton-filtered) events written to each simulated ROOT file.",
        ),
        "files_per_process": Param(
            SIM.files_per_process, type="integer", minimum=1, title="Files per process",
            description="Simulated ROOT files per process; each is one Spark task with its own seed.",
        ),
        "seed": Param(SIM.seed, type="integer", minimum=0, title="Simulation seed",
                      description="Base seed; the same seed reproduces the same events."),
        "isolated_leptons_only": Param(
            SIM.isolated_leptons_only, type="boolean", title="Isolated leptons only",
            description="Simulate only events with an isolated lepton (all survive ingest). Only ~11% of "
            "QCD events do, so QCD takes ~8x longer per file but yields as many events per CPU hour.",
        ),
        "qcd_redecays": Param(
            SIM.qcd_redecays, type="integer", minimum=0, maximum=1000, title="QCD heavy-flavour redecays",
            description="0 = off. N > 0 decays the b- and c-hadrons of each generated QCD event N times and "
            "keeps the first accepted trial: ~15x more isolated-lepton QCD events per CPU-second at N = 25, "
            "with events of several accepted trials under-represented (see README, Simulation).",
        ),
        "input_path": Param(
            "", type="string", title="Input ROOT files",
            description="Ingest these ROOT files (paths, globs or URLs, comma separated) instead of "
            "simulating; empty = simulate.",
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
            title="Models", description="Classifiers to train: hlf (dense net on the 14 high-level features), "
            "particle_sequence (GRU over the particle list), inclusive (GRU + high-level features).",
        ),
        "workers": Param(
            TRAIN.workers, type="integer", minimum=1, title="Training workers",
            description="TensorFlow workers, one Spark task each; at most the Spark application's task slots.",
        ),
        "epochs": Param(TRAIN.epochs, type="integer", minimum=1, title="Epochs",
                        description="Most training epochs per model (early stopping on validation loss may end sooner)."),
        "hyperparameters": Param(
            TRAIN.hyperparameters, type="string", title="Hyper-parameters (JSON)",
            description='Per-model overrides of the defaults, e.g. {"hlf": {"units": [64, 32], "learning_rate": 0.002}}; '
            "empty = defaults.",
        ),
        "auc_floors": Param(
            QUAL.auc_floors, type="string", title="AUC floors",
            description="check_model fails when a model's tt̄-vs-QCD test AUC is below its floor, e.g. "
            "hlf=0.9,inclusive=0.95; * applies to every model.",
        ),
    },
) as dag:

    @task.branch(task_id="choose_input")
    def choose_input(params: dict) -> str:
        """Simulate unless the run names existing ROOT files."""
        return "ingest" if params["input_path"].strip() else "simulate"

    simulate = HepStageOperator(
        task_id="simulate",
        stage="simulate",
        stage_params={
            "processes": "{{ params.processes | join(',') }}",
            "events_per_file": "{{ params.events_per_file }}",
            "files_per_process": "{{ params.files_per_process }}",
            "seed": "{{ params.seed }}",
            "isolated_leptons_only": "{{ params.isolated_leptons_only }}",
            "qcd_redecays": "{{ params.qcd_redecays }}",
        },
        outlets=[SIMULATED_EVENTS],
    )

    ingest = HepStageOperator(
        task_id="ingest",
        stage="ingest",
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
        stage_params={
            "input": "{{ params.input_path.strip() or ti.xcom_pull(task_ids='simulate')['version'] }}",
            "on_bad_file": "{{ params.on_bad_file }}",
            "max_quarantined_fraction": "{{ params.max_quarantined_fraction }}",
        },
    )

    check_ingested = HepStageOperator(
        task_id="check_ingested",
        stage="quality",
        stage_params={"stage": "ingest", "version": _xcom_version("ingest")},
        outlets=[INGESTED_EVENTS],
    )

    prepare = HepStageOperator(
        task_id="prepare",
        stage="prepare",
        stage_params={
            "input": _xcom_version("check_ingested"),
            "test_fraction": "{{ params.test_fraction }}",
            "seed": "{{ params.split_seed }}",
        },
    )

    check_prepared = HepStageOperator(
        task_id="check_prepared",
        stage="quality",
        stage_params={"stage": "prepare", "version": _xcom_version("prepare")},
        outlets=[PREPARED_DATASETS],
    )

    train = HepStageOperator(
        task_id="train",
        stage="train",
        stage_params={
            "input": _xcom_version("check_prepared"),
            "models": "{{ params.models | join(',') }}",
            "workers": "{{ params.workers }}",
            "epochs": "{{ params.epochs }}",
            "hyperparameters": "{{ params.hyperparameters }}",
        },
    )

    evaluate = HepStageOperator(
        task_id="evaluate",
        stage="evaluate",
        stage_params={"input": _xcom_version("train")},
    )

    check_model = HepStageOperator(
        task_id="check_model",
        stage="quality",
        stage_params={"stage": "evaluate", "version": _xcom_version("evaluate"), "auc_floors": "{{ params.auc_floors }}"},
        outlets=[MODELS],
    )

    choose_input() >> [simulate, ingest]
    simulate >> ingest >> check_ingested >> prepare >> check_prepared >> train >> evaluate >> check_model
