"""Bad arguments and settings fail at once, with a message naming what is wrong (no event generated)."""

from __future__ import annotations

import json

import pytest

from hep_tasks.simulate import DetectorSettings, SimulationSettings, simulate_file


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"process": "zjets"}, r"process must be one of qcd, ttbar, wjets; got 'zjets'"),
        ({"process": None}, r"process must be one of"),
        ({"n_events": 0}, r"n_events must be a positive integer.*got 0"),
        ({"n_events": -5}, r"n_events must be a positive integer.*got -5"),
        ({"n_events": 2.5}, r"n_events must be a positive integer"),
        ({"n_events": True}, r"n_events must be a positive integer"),
        ({"seed": -1}, r"seed must be a non-negative integer; got -1"),
        ({"seed": "7"}, r"seed must be a non-negative integer"),
        ({"path": "s3a://bucket/x.root"}, r"path must be a local filesystem path"),
        ({"settings": {"ecm": 13000}}, r"settings must be a SimulationSettings or None; got dict"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_parameter(tmp_path, kwargs, match):
    arguments = {"process": "ttbar", "n_events": 10, "seed": 1, "path": str(tmp_path / "x.root")} | kwargs
    with pytest.raises(ValueError, match=match):
        simulate_file(**arguments)
    assert not (tmp_path / "x.root").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, r"SimulationSettings.batch_size must be > 0, got 0"),
        ({"ecm": -1.0}, r"SimulationSettings.ecm must be > 0"),
        ({"qcd_pthat_min": -1.0}, r"SimulationSettings.qcd_pthat_min must be >= 0"),
        ({"min_filter_efficiency": 2.0}, r"min_filter_efficiency must be in \(0, 1\]"),
        ({"qcd_heavy_flavours": ("tbar",)}, r"qcd_heavy_flavours must be a non-empty subset of \('bbbar', 'ccbar'\)"),
        ({"detector": "cms"}, r"SimulationSettings.detector must be a DetectorSettings, got str"),
    ],
)
def test_bad_simulation_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimulationSettings(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"btag_efficiency_b": 1.5}, r"DetectorSettings.btag_efficiency_b must hold probabilities in \[0, 1\]"),
        ({"track_efficiency_muon": (0.7, 0.99, -0.1, 0.98)}, r"track_efficiency_muon must hold probabilities"),
        ({"ecal_cells": (0.0, 360)}, r"DetectorSettings.ecal_cells must be"),
        ({"tracker_abs_eta": 3.5}, r"barrel_abs_eta <= tracker_abs_eta <= ecal_abs_eta <= calo_abs_eta"),
        ({"jet_radius": 0.0}, r"DetectorSettings.jet_radius must be > 0"),
    ],
)
def test_bad_detector_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DetectorSettings(**kwargs)


def test_settings_defaults_and_to_dict():
    settings = SimulationSettings()
    assert settings.ecm == 13000.0
    assert settings.filter_lepton_pt_min < settings.accept_lepton_pt_min == 23.0
    record = json.loads(json.dumps(settings.to_dict()))
    assert record["detector"]["jet_radius"] == 0.4
    assert record["qcd_heavy_flavours"] == ["bbbar", "ccbar"]


def test_a_filter_that_accepts_nothing_stops_with_a_clear_error(tmp_path):
    # No W lepton has pT > 6.5 TeV: the guard must stop generation and say why.
    settings = SimulationSettings(accept_lepton_pt_min=6500.0, min_filter_efficiency=0.5, batch_size=20)
    with pytest.raises(RuntimeError, match=r"process 'wjets' \(seed 3\): only 0 of 5 requested events accepted after \d+ generated"):
        simulate_file("wjets", 5, 3, tmp_path / "none.root", settings)
    assert not (tmp_path / "none.root").exists()
    assert not (tmp_path / "none.root.partial").exists()
