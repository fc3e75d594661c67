"""A file's content is fixed by its seed: same seed, identical arrays; another seed, other events."""

from __future__ import annotations

import awkward as ak
import numpy as np
import uproot

from hep_tasks.simulate import simulate_file


def _branches(path) -> dict[str, np.ndarray]:
    """Every branch of the tree as one flat numpy array (jagged ones flattened, counters as they are)."""
    with uproot.open(path) as f:
        tree = f["Delphes"]
        out = {}
        for name in tree.keys():
            array = tree[name].array(library="ak")
            out[name] = ak.to_numpy(ak.flatten(array) if array.ndim > 1 else array)
        return out


def test_same_seed_gives_identical_arrays(tmp_path):
    first = simulate_file("ttbar", 15, 2024, tmp_path / "a.root")
    second = simulate_file("ttbar", 15, 2024, tmp_path / "b.root")
    a, b = _branches(tmp_path / "a.root"), _branches(tmp_path / "b.root")
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype
        assert a[name].tobytes() == b[name].tobytes(), f"branch {name} differs"
    assert (first.generated, first.passed_generator_filter, first.sigma_pb) == (
        second.generated,
        second.passed_generator_filter,
        second.sigma_pb,
    )


def test_different_seeds_give_different_events(tmp_path):
    simulate_file("wjets", 10, 1, tmp_path / "a.root")
    simulate_file("wjets", 10, 2, tmp_path / "b.root")
    a, b = _branches(tmp_path / "a.root"), _branches(tmp_path / "b.root")
    assert not np.array_equal(a["EFlowTrack_size"], b["EFlowTrack_size"])
    assert not np.array_equal(a["MissingET.MET"], b["MissingET.MET"])
