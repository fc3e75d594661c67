"""QCD with heavy-hadron decay trials (``qcd_redecays``): isolated-lepton events, determinism, the
weights in the statistics and the manifest, the lepton bound and the replay of decays."""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import pytest
import uproot

from hep_tasks.config import ConfigError, SimulateParams
from hep_tasks.simulate import SimulationSettings, simulate_file
from hep_tasks.simulate import stage as simulate_stage
from test_simulate_determinism import _branches

REDECAYS = 20
N_EVENTS = 6


@pytest.fixture(scope="module")
def redecayed(tmp_path_factory):
    """Two files of the same seed with decay trials on: (stats, path) each."""
    directory = tmp_path_factory.mktemp("redecay")
    settings = SimulationSettings(isolated_leptons_only=True, qcd_redecays=REDECAYS)
    return [(simulate_file("qcd", N_EVENTS, 31, directory / f"{name}.root", settings), directory / f"{name}.root") for name in "ab"]


def test_same_seed_gives_the_same_file(redecayed):
    (first, path_a), (second, path_b) = redecayed
    a, b = _branches(path_a), _branches(path_b)
    assert a.keys() == b.keys() and "EFlowTrack.Charge" in a
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), f"branch {name} differs"
    same = ("generated", "passed_generator_filter", "accepted", "event_weight_sum", "multi_accepted", "sigma_pb")
    assert [getattr(first, f) for f in same] == [getattr(second, f) for f in same]


def test_every_event_has_an_isolated_lepton_that_ingest_keeps(redecayed):
    from hep_tasks.ingest.datasource import Split, read_split
    from hep_tasks.ingest.rootfile import inspect_file
    from hep_tasks.physics import REQUIRED_FIELDS, compute_features

    stats, path = redecayed[0]
    with uproot.open(path) as f:
        arrays = f["Delphes"].arrays(library="ak")
    assert len(arrays) == stats.accepted == N_EVENTS
    events = {name: ak.zip({f: arrays[f"{name}.{f}"] for f in fields}) for name, fields in REQUIRED_FIELDS.items()}
    assert np.all(compute_features(events).selected)
    layout = inspect_file(str(path))
    split = Split(0, str(path), "qcd", 0, 0, layout.entries, layout.branches)
    assert sum(batch.num_rows for batch in read_split(split, 100, "fail", None)) == N_EVENTS


def test_statistics_record_the_trials_and_weights(redecayed):
    stats, _ = redecayed[0]
    assert stats.redecays == REDECAYS and stats.process == "qcd"
    # each written event weighs k/N with 1 <= k <= N accepted trials
    assert stats.accepted / REDECAYS <= stats.event_weight_sum <= stats.accepted
    assert 0 <= stats.multi_accepted <= stats.accepted
    assert math.isclose(stats.event_weight_sum, stats.accepted / REDECAYS, rel_tol=1e-9) == (stats.multi_accepted == 0)
    assert math.isclose(stats.accepted_sigma_pb, stats.sigma_pb * stats.event_weight_sum / stats.generated)
    # trials make written events far more frequent than in ordinary generation (~0.5 %)
    assert stats.generated >= stats.passed_generator_filter >= stats.accepted
    assert stats.filter_efficiency > 0.02


def test_without_trials_the_weights_are_one(tmp_path):
    stats = simulate_file("ttbar", 5, 3, tmp_path / "tt.root", SimulationSettings(qcd_redecays=REDECAYS))
    assert stats.redecays == 0 and stats.event_weight_sum == stats.accepted == 5 and stats.multi_accepted == 0
    assert math.isclose(stats.accepted_sigma_pb, stats.sigma_pb * stats.filter_efficiency)


def test_the_manifest_records_trials_and_weights():
    params = SimulateParams.from_values({"processes": "qcd,ttbar", "files_per_process": 2, "qcd_redecays": 25}, env={})
    common = {"sigma_pb": 100.0, "sha256": "0", "size": 1}
    stats = [
        {"process": "qcd", "file": "q0", "seed": 1, "generated": 400, "accepted": 100, "redecays": 25, "event_weight_sum": 5.0, "multi_accepted": 8},
        {"process": "qcd", "file": "q1", "seed": 2, "generated": 600, "accepted": 100, "redecays": 25, "event_weight_sum": 4.6, "multi_accepted": 3},
        {"process": "ttbar", "file": "t0", "seed": 3, "generated": 180, "accepted": 100, "redecays": 0, "event_weight_sum": 100.0, "multi_accepted": 0},
        {"process": "ttbar", "file": "t1", "seed": 4, "generated": 170, "accepted": 100, "redecays": 0, "event_weight_sum": 100.0, "multi_accepted": 0},
    ]
    manifest = simulate_stage._manifest(params, [s | common for s in stats])
    assert manifest["parameters"]["qcd_redecays"] == 25
    qcd, ttbar = manifest["processes"]["qcd"], manifest["processes"]["ttbar"]
    assert (qcd["redecays"], qcd["nominal_event_weight"], qcd["multi_accepted"]) == (25, 0.04, 11)
    assert (qcd["generated"], qcd["accepted"], qcd["filter_efficiency"]) == (1000, 200, 0.2)
    assert qcd["event_weight_sum"] == pytest.approx(9.6) and qcd["mean_event_weight"] == pytest.approx(0.048)
    assert qcd["weighted_efficiency"] == pytest.approx(0.0096) and qcd["accepted_sigma_pb"] == pytest.approx(0.96)
    assert (ttbar["redecays"], ttbar["nominal_event_weight"], ttbar["mean_event_weight"]) == (0, 1.0, 1.0)
    assert ttbar["accepted_sigma_pb"] == pytest.approx(100.0 * 200 / 350)


def test_the_version_of_a_default_run_does_not_hash_the_new_parameter():
    default = SimulateParams.from_values({}, env={})
    assert "qcd_redecays" not in simulate_stage._version_parameters(default)
    assert simulate_stage._version_parameters(default) == {k: v for k, v in default.to_dict().items() if k != "qcd_redecays"}
    on = SimulateParams.from_values({"qcd_redecays": "25"}, env={})
    assert simulate_stage._version_parameters(on)["qcd_redecays"] == 25


@pytest.mark.parametrize("value", [-1, 1001])
def test_bad_numbers_of_trials_are_rejected(value):
    with pytest.raises(ConfigError, match=rf"simulate\.qcd_redecays={value}: must be 0 \(off\) or a number of decay trials up to 1000"):
        SimulateParams.from_values({"qcd_redecays": value}, env={})
    with pytest.raises(ValueError, match=r"SimulationSettings\.qcd_redecays must be an int from 0 \(off\) to 1000"):
        SimulationSettings(qcd_redecays=value)


def test_decays_replay_exactly_and_leptons_respect_the_bound():
    from hep_tasks.simulate.redecay import HadronDecayer, lepton_pt_bound

    decayer = HadronDecayer(7, SimulationSettings())
    momentum, mass = (20.0, -15.0, 60.0), 5.27934  # a B+ [GeV]
    four = (*momentum, math.sqrt(sum(p * p for p in momentum) + mass * mass))
    state = decayer.state()
    first: list = []
    decayer.decay(521, four, mass, (0, 0), first)
    decayer.restore(state)
    again: list = []
    decayer.decay(521, four, mass, (0, 0), again)
    assert first == again and len(first) > 2

    rows: list = []
    for trial in range(2000):
        decayer.decay(521, four, mass, (trial, 0), rows)
    products = np.array(rows, dtype=np.float64)
    lepton = np.isin(np.abs(products[:, 2]), (11, 13)) & (products[:, 3] > 0)
    lepton_pt = np.hypot(products[lepton, 4], products[lepton, 5])
    p, pt = math.sqrt(sum(x * x for x in momentum)), math.hypot(*momentum[:2])
    bound = lepton_pt_bound(np.array([four[3]]), np.array([p]), np.array([pt]), np.array([mass]))[0]
    assert 700 < lepton.sum() < 1300  # ~0.5 e/mu per B: direct semileptonic ~21 %, the rest from cascades
    assert lepton_pt.max() <= bound and lepton_pt.max() > 0.7 * bound
    # exact conservation in every decay: the final products carry the B's four-momentum
    final = products[products[:, 3] > 0]
    sums = np.stack([np.bincount(final[:, 0].astype(int), weights=final[:, c]) for c in (4, 5, 6, 7)], axis=1)
    np.testing.assert_allclose(sums, np.tile(four, (2000, 1)), atol=1e-6)
