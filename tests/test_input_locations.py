"""Where a hep_pipeline run may read ROOT files from: inside the data root or HEP_INPUT_ROOTS, or URLs
of an allowed scheme; `..`, symlinks out and other schemes are refused before any work starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hep_tasks.errors import PipelineError
from hep_tasks.ingest.inputs import check_input_locations

DAGS = Path(__file__).resolve().parent.parent / "dags"


@pytest.fixture()
def roots(tmp_path):
    data, extra, outside = (tmp_path / n for n in ("data", "inputs", "elsewhere"))
    for folder in (data / "raw", extra, outside):
        folder.mkdir(parents=True)
        (folder / "ttbar.root").write_bytes(b"")
    (data / "raw" / "link").symlink_to(outside)
    return data, extra, outside


def test_paths_inside_the_roots_and_urls_of_allowed_schemes_pass(roots):
    data, extra, _ = roots
    spec = (f"ttbar={data}/raw/*.root,{extra}/ttbar.root,file://{data}/raw/ttbar.root,"
            "root://eos.cern.ch//eos/qcd/*.root,s3a://bucket/wjets/f.root,https://host/qcd.root")  # fmt: skip
    check_input_locations(spec, [str(data), str(extra)])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("{outside}/ttbar.root", "is outside the data root and the allowed input roots"),
        ("file://{outside}/ttbar.root", "is outside the data root"),
        ("{data}/raw/link/ttbar.root", "is outside the data root"),  # a symlink out of the root
        ("{data}/raw/link/*.root", "is outside the data root"),
        ("qcd={data}/raw/../../elsewhere/ttbar.root", r"'\.\.' is not allowed"),
        ("ftp://host/ttbar.root", "URL scheme 'ftp' is not allowed"),
        ("javascript://alert(1)/ttbar.root", "URL scheme 'javascript' is not allowed"),
        ("root://eos.cern.ch//eos/../etc/ttbar.root", r"'\.\.' is not allowed"),
    ],
)
def test_other_locations_are_refused_naming_the_input(roots, item, message):
    data, extra, outside = roots
    item = item.format(data=data, outside=outside)
    with pytest.raises(PipelineError, match=message) as failure:
        check_input_locations(f"{extra}/ttbar.root,{item}", [str(data), str(extra)])
    assert repr(item) in str(failure.value)


def test_the_pipeline_refuses_an_input_outside_the_roots_before_any_ingest(roots, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowFailException

    data, extra, outside = roots
    monkeypatch.setenv("HEP_DATA_ROOT", str(data))
    monkeypatch.setenv("HEP_INPUT_ROOTS", os.pathsep.join([str(extra), "/nonexistent"]))
    new_inputs = DagBag(dag_folder=str(DAGS / "hep_pipeline.py")).dags["hep_pipeline"].get_task("new_inputs").python_callable
    params = {"input_path": None, "simulation_versions": None, "on_bad_file": "skip", "max_quarantined_fraction": 0.1}
    ok = new_inputs(params | {"input_path": f"ttbar={extra}/ttbar.root"})
    assert [i["input"] for i in ok] == [f"ttbar={extra}/ttbar.root"]
    with pytest.raises(AirflowFailException, match="is outside the data root"):
        new_inputs(params | {"input_path": f"ttbar={outside}/ttbar.root"})
