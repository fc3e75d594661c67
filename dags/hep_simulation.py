"""
### hep_simulation: a new batch of simulated LHC events

One Spark job (`hep_tasks simulate` through `spark-submit`, connection `hep_spark`): Pythia8 tt̄,
W+jets and QCD with a Delphes-like detector response, one ROOT file per Spark task, written as a
new `simulate` version. Its Asset event (`hep_simulated_events`, `extra` = version, counts, path)
schedules `hep_pipeline`, which ingests the new batch and retrains on every published batch.

*Seed* 0 (the default) gives every run its own seed, derived from the run id, so scheduled
batches differ and a rerun of the same run reproduces its batch. The DAG runs by hand unless
the environment variable `HEP_SIMULATION_SCHEDULE` names a schedule (a cron expression or a
preset such as `@daily`) where the DAG processor runs.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG, Param, task
from hep_airflow.assets import SIMULATED_EVENTS
from hep_airflow.operators import HepStageOperator

from hep_tasks.config import SimulateParams
from hep_tasks.processes import PROCESSES

SIM = SimulateParams.from_values(check=False)  # defaults: the code's, or HEP_SIMULATE_* where the DAG processor runs

with DAG(
    dag_id="hep_simulation",
    description="A new batch of simulated tt̄, W+jets and QCD events (ROOT), announced as an Asset event",
    doc_md=__doc__,
    schedule=os.environ.get("HEP_SIMULATION_SCHEDULE") or None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["hep", "spark", "simulation"],
    default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=2)},
    params={
        "processes": Param(
            list(SIM.processes), type="array", items={"type": "string", "enum": list(PROCESSES)},
            examples=list(PROCESSES), title="Processes",  # examples: the form shows a multi-select
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
        "seed": Param(
            0, type="integer", minimum=0, title="Seed",
            description="Base seed of the batch; 0 = derived from the run id (every run a new batch).",
        ),
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
    },
) as dag:

    @task
    def batch_seed(params: dict, run_id: str) -> int:
        """The run's seed: the one given, or one derived from the run id (stable across retries)."""
        import zlib

        return int(params["seed"]) or zlib.crc32(run_id.encode()) % 2**31 + 1

    seed = batch_seed()
    simulate = HepStageOperator(
        task_id="simulate",
        stage="simulate",
        stage_params={
            "processes": "{{ params.processes | join(',') }}",
            "events_per_file": "{{ params.events_per_file }}",
            "files_per_process": "{{ params.files_per_process }}",
            "seed": "{{ ti.xcom_pull(task_ids='batch_seed') }}",
            "isolated_leptons_only": "{{ params.isolated_leptons_only }}",
            "qcd_redecays": "{{ params.qcd_redecays }}",
        },
        outlets=[SIMULATED_EVENTS],
    )
    seed >> simulate
