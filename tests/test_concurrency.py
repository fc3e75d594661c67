"""Two pipeline runs at once on one data root: whole versions only, and a ``latest`` never torn.

The processes start together at a barrier (the ``spawn`` start method: the test process may hold a
Spark session); the Spark test runs the ingest command line three times at once, as three Airflow
tasks of two concurrent runs would.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable

import pytest
from ingest_runs import assert_intact, assert_no_attempt_left, start_ingest
from store_workers import publish, publish_runs, race_to_commit, resolve_latest

from hep_tasks.datasets import DatasetStore

SPAWN = multiprocessing.get_context("spawn")
TIMEOUT_S = 120


def _start(target: Callable, *args) -> multiprocessing.Process:
    process = SPAWN.Process(target=target, args=args)
    process.start()
    return process


def _join(processes: list[multiprocessing.Process]) -> None:
    for process in processes:
        process.join(TIMEOUT_S)
        assert process.exitcode == 0, f"{process.name} ended with {process.exitcode}"


# -- two attempts committing the same version ---------------------------------------------------------
def test_attempts_racing_to_commit_one_version_commit_exactly_one_and_the_others_reuse_it(tmp_path):
    racers, versions = 3, [f"pre-{i}" for i in range(10)]
    start, results = SPAWN.Barrier(racers, timeout=TIMEOUT_S), SPAWN.Queue()
    processes = [_start(race_to_commit, str(tmp_path), r, versions, start, results) for r in range(racers)]
    returned = [results.get(timeout=TIMEOUT_S) for _ in range(racers * len(versions))]
    _join(processes)

    store = DatasetStore(str(tmp_path))
    assert sorted(store.versions("prepare")) == versions
    for version in versions:
        manifests = [m for v, m in returned if v == version]
        assert len(manifests) == racers and all(m == store.read_manifest("prepare", version) for m in manifests)
        winner = manifests[0]["writer"]
        committed = tmp_path / "prepare" / version
        assert sorted(os.listdir(committed)) == ["_manifest.json", f"part-{winner}.parquet"]  # one racer's files only
        assert (committed / f"part-{winner}.parquet").read_text() == str(winner) * 1000
    assert os.listdir(tmp_path / "prepare" / "_tmp") == []


# -- the latest pointer ---------------------------------------------------------------------------------
def test_readers_always_see_a_whole_latest_while_many_processes_move_it(tmp_path):
    store = DatasetStore(str(tmp_path))
    versions = [f"ing-{i:016x}" for i in range(4)]
    for version in versions:
        with store.begin("ingest", version) as pending:
            pending.commit({})
    store.set_latest("ingest", versions[0])
    publishers, readers = 3, 2
    start, done, results = SPAWN.Barrier(publishers + readers, timeout=TIMEOUT_S), SPAWN.Event(), SPAWN.Queue()
    reading = [_start(resolve_latest, str(tmp_path), versions, start, done, results) for _ in range(readers)]
    publishing = [_start(publish, str(tmp_path), versions, 25, start) for _ in range(publishers)]
    _join(publishing)
    done.set()
    seen = [results.get(timeout=TIMEOUT_S) for _ in range(readers)]
    _join(reading)

    assert all(reads > 0 and torn == 0 for reads, torn, _ in seen), seen  # (reads, torn reads, examples)
    assert store.latest("ingest") in versions
    assert sorted(os.listdir(tmp_path / "ingest")) == ["_tmp", *versions, "latest"]  # no temporary pointer left


# -- two runs publishing at once ----------------------------------------------------------------------
def test_two_runs_publishing_at_once_leave_every_latest_from_one_of_them(tmp_path):
    store = DatasetStore(str(tmp_path))
    runs = [{stage: f"{stage[:3]}-run{r}" for stage in ("ingest", "prepare", "train", "evaluate")} for r in (0, 1)]
    for run in runs:
        for stage, version in run.items():
            with store.begin(stage, version) as pending:
                pending.commit({})
            store.update_manifest(stage, version, quality={"status": "passed"})
    rounds = 15
    start, end = SPAWN.Barrier(3, timeout=TIMEOUT_S), SPAWN.Barrier(3, timeout=TIMEOUT_S)
    processes = [_start(publish_runs, str(tmp_path), run, rounds, start, end) for run in runs]
    states = []
    for _ in range(rounds):
        start.wait()
        end.wait()  # both publishes of the round are done
        states.append({stage: store.latest(stage) for stage in runs[0]})
    _join(processes)
    assert all(state in runs for state in states), [s for s in states if s not in runs][:3]


# -- concurrent ingest runs (Spark) ---------------------------------------------------------------------
@pytest.mark.slow
def test_concurrent_ingests_share_the_version_of_the_same_input_and_get_their_own_for_another(tmp_path, sample_files):
    data = tmp_path / "data"
    same = f"ttbar={sample_files['ttbar']},qcd={sample_files['qcd']}"
    other = f"wjets={sample_files['wjets']}"
    runs = [start_ingest(data, inputs, logs=tmp_path / f"run{i}") for i, inputs in enumerate((same, same, other))]
    first, second, third = (run.finish() for run in runs)

    assert first["version"] == second["version"] and first["created_at"] == second["created_at"]  # one, for both
    assert third["version"] != first["version"] and third["rows"] == {"total": 60, "wjets": 60}
    store = DatasetStore(str(data))
    assert sorted(store.versions("ingest")) == sorted([first["version"], third["version"]])
    for version in (first["version"], third["version"]):
        assert_intact(store, version)
    assert_no_attempt_left(store)
