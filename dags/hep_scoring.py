"""
### hep_scoring: apply a trained trigger classifier to new events

The classifier a trigger study uses, on events it has not seen. Each task is a Spark job
(`hep_tasks <stage>` through `spark-submit`, connection `hep_spark`):

1. **ingest** + **check_ingested**: when *Input ROOT files* is set, those files become a new ingest
   version first (the same features and checks as `hep_pipeline`); otherwise *Ingest version* is
   scored as it is.
2. **score**: every chosen model of the *Model version* (default: the latest one that passed
   `check_model`) scores every event on Spark, with that model's own scalers and ΔR sort; output
   per event and model: the three class probabilities and log-odds, with `source_file` and
   `entry` lineage, as a versioned dataset (Asset `hep_scores`).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, TriggerRule, task
from hep_airflow.assets import INGESTED_EVENTS, SCORES
from hep_airflow.operators import HepStageOperator

from hep_tasks.config import MAX_VALUE_CHARS, IngestParams
from hep_tasks.train.hyperparameters import MODELS as MODEL_NAMES

ING = IngestParams.from_values(check=False)  # defaults: the code's, or HEP_INGEST_* where the DAG processor runs

with DAG(
    dag_id="hep_scoring",
    description="A trained classifier applied to new ROOT files or an ingested version",
    doc_md=__doc__,
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    tags=["hep", "spark", "ml", "scoring"],
    default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=2)},
    params={
        "input_path": Param(
            None, type=["null", "string"], maxLength=MAX_VALUE_CHARS, title="Input ROOT files",
            description="ROOT files to score (paths, globs or URLs, comma separated; `process=` prefixes "
            "allowed); they are ingested and checked first. Empty = score *Ingest version*.",
        ),
        "ingest_version": Param(
            None, type=["null", "string"], maxLength=MAX_VALUE_CHARS, title="Ingest version",
            description="An ingest version id to score when no input files are given; empty = the latest checked one.",
        ),
        "model_version": Param(
            None, type=["null", "string"], maxLength=MAX_VALUE_CHARS, title="Model version",
            description="A train version id; empty = the latest model version that passed check_model.",
        ),
        "models": Param(
            None, type=["null", "array"], items={"type": "string", "enum": list(MODEL_NAMES)}, title="Models",
            description="Models of that version to apply; empty = all it holds.",
        ),
        "on_bad_file": Param(
            ING.on_bad_file, type="string", enum=["skip", "fail"], title="Bad input files",
            description="skip: quarantine unreadable ROOT files, record them and go on; fail: stop.",
        ),
    },
) as dag:

    @task.branch(task_id="choose_input")
    def choose_input(params: dict) -> str:
        """Ingest the named files first, or score an existing ingest version."""
        return "ingest" if (params["input_path"] or "").strip() else "score"

    ingest = HepStageOperator(
        task_id="ingest",
        stage="ingest",
        stage_params={"input": "{{ (params.input_path or '').strip() }}", "on_bad_file": "{{ params.on_bad_file }}"},
    )

    check_ingested = HepStageOperator(
        task_id="check_ingested",
        stage="quality",
        stage_params={"stage": "ingest", "version": "{{ ti.xcom_pull(task_ids='ingest')['version'] }}"},
        outlets=[INGESTED_EVENTS],
    )

    score = HepStageOperator(
        task_id="score",
        stage="score",
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
        stage_params={
            "input": "{{ ti.xcom_pull(task_ids='check_ingested')['version'] if (params.input_path or '').strip() "
            "else (params.ingest_version or '').strip() }}",
            "model": "{{ (params.model_version or '').strip() }}",
            "models": "{{ (params.models or []) | join(',') }}",
        },
        outlets=[SCORES],
    )

    choose_input() >> [ingest, score]
    ingest >> check_ingested >> score
