"""Typed configuration: defaults < environment < explicit values, and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hep_tasks.config import ConfigError, IngestParams, PipelineSettings, PrepareParams, SimulateParams


def test_defaults_env_and_explicit_values_in_that_order():
    assert SimulateParams.from_values(env={}).events_per_file == 100
    env = {"HEP_SIMULATE_EVENTS_PER_FILE": "30", "HEP_SIMULATE_SEED": "7"}
    assert SimulateParams.from_values(env=env).events_per_file == 30
    params = SimulateParams.from_values({"events_per_file": "40"}, env=env)
    assert (params.events_per_file, params.seed) == (40, 7)


def test_round_trip_through_command_line_flags():
    params = SimulateParams.from_values({"processes": "ttbar,qcd", "files_per_process": 3}, env={})
    flags = params.to_args()
    values = {flags[i][2:].replace("-", "_"): flags[i + 1] for i in range(0, len(flags), 2)}
    assert SimulateParams.from_values(values, env={}) == params
    assert params.to_dict()["processes"] == ["ttbar", "qcd"]


@pytest.mark.parametrize(
    ("cls", "values", "message"),
    [
        (SimulateParams, {"processes": "ttbar,higgs"}, r"simulate\.processes=.*unknown process 'higgs' \(known: qcd, ttbar, wjets\)"),
        (SimulateParams, {"events_per_file": 0}, r"simulate\.events_per_file=0: must be a positive integer"),
        (SimulateParams, {"files_per_process": "-2"}, r"simulate\.files_per_process=-2: must be a positive integer"),
        (SimulateParams, {"events_per_file": "many"}, r"simulate\.events_per_file='many': not a valid int"),
        (SimulateParams, {"events": 5}, r"unknown parameter simulate\.events \(known: events_per_file"),
        (IngestParams, {"on_bad_file": "ignore"}, r"ingest\.on_bad_file='ignore': must be one of skip, fail"),
        (PrepareParams, {"test_fraction": 1.5}, r"prepare\.test_fraction=1\.5: must be strictly between 0 and 1"),
    ],
)
def test_bad_values_name_the_parameter(cls, values, message):
    with pytest.raises(ConfigError, match=message):
        cls.from_values(values, env={})


def test_data_root_becomes_absolute():
    assert PipelineSettings.from_values({"data_root": "rel/dir"}, env={}).data_root.startswith("/")
    assert PipelineSettings.from_values({"data_root": "s3a://bucket/x"}, env={}).data_root == "s3a://bucket/x"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--processes", "ttbar,zprime"], "invalid parameter simulate.processes='ttbar,zprime': unknown process 'zprime'"),
        (["--events-per-file", "-1"], "invalid parameter simulate.events_per_file=-1: must be a positive integer"),
        (["--files-per-process", "0"], "invalid parameter simulate.files_per_process=0: must be a positive integer"),
        (["--data-root", "/proc/hep-cannot-write-here"], "invalid parameter data_root='/proc/hep-cannot-write-here': not writable"),
    ],
)
def test_cli_rejects_bad_parameters_before_spark_starts(args, message):
    run = subprocess.run(
        [sys.executable, "-m", "hep_tasks", "simulate", *args], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert lines == [f"hep_tasks simulate: error: {lines[0].split('error: ', 1)[1]}"]  # one line
    assert message in lines[0]
    assert "SparkContext" not in run.stderr and "spark" not in run.stdout.lower()
