"""Parameters and input paths given to the stage CLI directly (``python -m hep_tasks ingest ...``):
path traversal, a symlink out of the data root, a URL scheme not allowed, oversized values and wrong
types are refused before Spark starts, with exit status 2 and one line naming the input or the
parameter; for input locations it is the same rule and message as a hep_pipeline run's
``new_inputs`` task (tests/test_input_locations.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hep_tasks import cli
from hep_tasks.config import MAX_VALUE_CHARS
from hep_tasks.errors import PipelineError
from hep_tasks.ingest.inputs import check_input_locations


class SparkStarted(Exception):
    """Raised instead of creating a Spark session: the CLI got past its checks."""


@pytest.fixture()
def roots(tmp_path, monkeypatch):
    """(data root, an input root, a directory outside both), a symlink data/raw/link -> outside, and
    the CLI's environment pointing at them; starting Spark raises SparkStarted."""
    data, extra, outside = (tmp_path / n for n in ("data", "inputs", "elsewhere"))
    for folder in (data / "raw", extra, outside):
        folder.mkdir(parents=True)
        (folder / "ttbar.root").write_bytes(b"")
    (data / "raw" / "link").symlink_to(outside)
    monkeypatch.setenv("HEP_DATA_ROOT", str(data))
    monkeypatch.setenv("HEP_INPUT_ROOTS", str(extra))
    monkeypatch.chdir(data / "raw")

    def no_spark(*args, **kwargs):
        raise SparkStarted

    monkeypatch.setattr("hep_tasks.sparkjob.LazySession", no_spark)
    return data, extra, outside


def _refusal(capsys, args: list[str]) -> str:
    """The one stderr line of a CLI run that must exit with status 2 before Spark starts."""
    assert cli.main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    "item",
    [
        "../x",  # path traversal, relative
        "ttbar={data}/raw/../../elsewhere/ttbar.root",  # path traversal inside the data root
        "{data}/raw/link/ttbar.root",  # a symlink out of the data root
        "{data}/raw/link/*.root",
        "{outside}/ttbar.root",  # simply outside
        "file://{outside}/ttbar.root",
        "ftp://host/ttbar.root",  # a URL scheme not allowed
        "root://eos.cern.ch//eos/../etc/ttbar.root",
    ],
)
def test_the_cli_refuses_input_locations_a_pipeline_run_refuses_with_the_same_message(roots, capsys, item):
    data, extra, outside = roots
    item = item.format(data=data, outside=outside)
    spec = f"{extra}/ttbar.root,{item}"
    with pytest.raises(PipelineError) as pipeline_refusal:
        check_input_locations(spec, [str(data), str(extra)])  # what hep_pipeline's new_inputs task says
    assert _refusal(capsys, ["ingest", "--input", spec]) == f"hep_tasks ingest: error: {pipeline_refusal.value}"
    assert repr(item) in str(pipeline_refusal.value)


@pytest.mark.parametrize(
    "spec",
    [
        "ttbar={data}/raw/*.root",
        "{extra}/ttbar.root",
        "root://eos.cern.ch//eos/qcd/f.root,s3a://bucket/wjets/f.root",
        "sim-0123456789abcdef",  # a simulate version, not a path
        "",  # the latest simulate version
    ],
)
def test_the_cli_lets_allowed_inputs_through_to_spark(roots, spec):
    data, extra, _ = roots
    with pytest.raises(SparkStarted):
        cli.main(["ingest", "--input", spec.format(data=data, extra=extra)])


def test_input_roots_given_as_a_flag_count_like_the_environment(roots, capsys, monkeypatch):
    _, _, outside = roots
    monkeypatch.delenv("HEP_INPUT_ROOTS")
    with pytest.raises(SparkStarted):
        cli.main(["ingest", "--input-roots", str(outside), "--input", f"{outside}/ttbar.root"])
    assert "is outside the data root" in _refusal(capsys, ["ingest", "--input", f"{outside}/ttbar.root"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--entries-per-split", str(10**12)], "invalid parameter ingest.entries_per_split=1000000000000: must be between 1 and 100000000"),
        (["--entries-per-split", "0"], "invalid parameter ingest.entries_per_split=0: must be between 1 and 100000000"),
        (["--entries-per-split", "2.5"], "invalid parameter ingest.entries_per_split='2.5': not a valid int"),
        (["--entries-per-split", "9" * 5000], "invalid parameter ingest.entries_per_split='999"),
        (["--max-quarantined-fraction", "nan"], "invalid parameter ingest.max_quarantined_fraction=nan: must be between 0 and 1"),
        (["--max-quarantined-fraction", "lots"], "invalid parameter ingest.max_quarantined_fraction='lots': not a valid float"),
        (["--on-bad-file", "1"], "invalid parameter ingest.on_bad_file='1': must be one of skip, fail"),
        (["--input", "x" * 10 * 2**20], f"invalid parameter ingest.input: a value of 10485760 characters (at most {MAX_VALUE_CHARS})"),
        (["--data-root", "/" + "d" * 2**20], "invalid parameter .data_root: a value of 1048577 characters"),
    ],
    ids=["huge-int", "zero", "float-for-int", "5000-digits", "nan", "text-for-float", "enum", "10MB-string", "1MB-data-root"],
)
def test_oversized_values_and_wrong_types_are_refused_in_one_short_line(roots, capsys, args, message):
    line = _refusal(capsys, ["ingest", *args])
    assert line.startswith(f"hep_tasks ingest: error: {message}")
    assert len(line) < MAX_VALUE_CHARS


def test_the_command_line_exits_2_with_one_line_for_a_path_traversal(tmp_path):
    env = {**os.environ, "HEP_DATA_ROOT": str(tmp_path / "data")}
    run = subprocess.run([sys.executable, "-m", "hep_tasks", "ingest", "--input", "../x"],
                         capture_output=True, text=True, timeout=60, env=env, check=False)  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["hep_tasks ingest: error: input '../x': '..' is not allowed in an input path"]
    assert run.stdout == ""
