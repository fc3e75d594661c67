"""DAG integrity: every DAG file loads without import errors, with tags, docs and retries,
and does not import heavy libraries at parse time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parent.parent / "dags"
DAG_FILES = sorted(DAGS.glob("*.py"))
HEAVY = ("pyspark", "tensorflow", "keras", "uproot", "great_expectations", "pythia8mc", "awkward")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_cleanly(dagbag, dag_file):
    errors = {k: v for k, v in dagbag.import_errors.items() if Path(k).name == dag_file.name}
    assert not errors, errors
    dags = [d for d in dagbag.dags.values() if Path(d.fileloc).name == dag_file.name]
    assert len(dags) == 1, "one DAG per file"
    dag = dags[0]
    assert dag.tags, "DAG has tags"
    assert dag.doc_md, "DAG has doc_md"
    assert not dag.catchup
    for t in dag.tasks:
        assert t.retries >= 1, f"{t.task_id} has retries"
    for name, param in dag.params.items():
        assert param.description and param.schema.get("title"), f"param {name} is described"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_does_not_import_heavy_libraries(dag_file):
    code = (
        "import runpy, sys\n"
        f"sys.path[:0] = [{str(DAGS.parent / 'plugins')!r}, {str(DAGS)!r}]\n"
        f"runpy.run_path({str(dag_file)!r})\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_pipeline_order(dagbag):
    dag = dagbag.dags["hep_pipeline"]
    # scheduled by hep_simulation's Asset events (and triggerable by hand)
    assert type(dag.timetable).__name__ == "AssetTriggeredTimetable"
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["hep_simulated_events"]
    assert dag.get_task("new_inputs").downstream_task_ids == {"ingest"}
    assert dag.get_task("ingest").downstream_task_ids == {"check_ingested"}
    assert dag.get_task("check_ingested").downstream_task_ids == {"prepare"}
    assert dag.get_task("prepare").downstream_task_ids == {"check_prepared"}
    assert dag.get_task("check_prepared").downstream_task_ids == {"choose_tuning"}
    assert dag.get_task("choose_tuning").downstream_task_ids == {"tune", "train"}
    assert dag.get_task("tune").downstream_task_ids == {"train"}
    assert dag.get_task("train").downstream_task_ids == {"evaluate"}
    assert dag.get_task("evaluate").downstream_task_ids == {"check_model"}
    assert dag.get_task("check_model").downstream_task_ids == {"publish"}
    # only publish emits the pipeline's Asset events, after every check passed
    assert {o.name for o in dag.get_task("publish").outlets} == {
        "hep_ingested_events", "hep_prepared_datasets", "hep_models", "hep_evaluation_reports"}
    assert not any(t.outlets for t in dag.tasks if t.task_id != "publish")


def test_every_stage_of_a_pipeline_run_goes_to_the_spark_connection_it_names(dagbag):
    dag = dagbag.dags["hep_pipeline"]
    assert dag.params["spark_connection"] == "hep_spark"
    stages = [t for t in dag.tasks if hasattr(t, "stage") or "stage" in getattr(t, "partial_kwargs", {})]
    assert {t.task_id for t in stages} == {
        "ingest", "check_ingested", "prepare", "check_prepared", "tune", "train", "evaluate", "check_model"}
    for task in stages:
        conn_id = task.partial_kwargs["conn_id"] if hasattr(task, "partial_kwargs") else task._conn_id
        assert task.render_template(conn_id, {"params": {"spark_connection": "spark_cluster"}}) == "spark_cluster"
    assert "_conn_id" in dag.get_task("prepare").template_fields


def test_simulation_dag_announces_its_batch(dagbag):
    dag = dagbag.dags["hep_simulation"]
    assert dag.get_task("batch_seed").downstream_task_ids == {"simulate"}
    assert {o.name for o in dag.get_task("simulate").outlets} == {"hep_simulated_events"}
    assert type(dag.timetable).__name__ == "NullTimetable"  # by hand unless HEP_SIMULATION_SCHEDULE is set


def test_scoring_order(dagbag):
    dag = dagbag.dags["hep_scoring"]
    assert dag.get_task("choose_input").downstream_task_ids == {"ingest", "score"}
    assert dag.get_task("check_ingested").downstream_task_ids == {"score"}
    assert {o.name for o in dag.get_task("score").outlets} == {"hep_scores"}
