"""The ROOT reader: both layouts, placeholders, entry ranges, and errors that name file and problem."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from hep_tasks.errors import InputFileError
from hep_tasks.ingest.datasource import Split, plan_splits, read_split
from hep_tasks.ingest.inputs import process_from_path, resolve_inputs
from hep_tasks.ingest.rootfile import branch_map, inspect_file, iterate_events
from hep_tasks.ingest.schema import ARROW_SCHEMA
from hep_tasks.physics import PARTICLE_FEATURES, REQUIRED_FIELDS
from hep_tasks.datasets import DatasetStore
from rootfiles import collection, simple_events, write_delphes

DELPHES_KEYS = [k for c, fs in REQUIRED_FIELDS.items() for k in (c, *(f"{c}/{c}.{f}" for f in fs), f"{c}_size")]


def test_branch_map_reads_the_split_layout_delphes_writes():
    branches = branch_map(DELPHES_KEYS + ["Jet/Jet.Mass", "Event/Event.Number"], "delphes.root")
    assert branches["Jet"]["PT"] == "Jet/Jet.PT"
    assert branches["EFlowTrack"]["Z"] == "EFlowTrack/EFlowTrack.Z"
    assert branches["MissingET"] == {"MET": "MissingET/MissingET.MET", "Phi": "MissingET/MissingET.Phi"}


@pytest.mark.parametrize(
    ("charge_key", "expected"),
    [("EFlowTrack/EFlowTrack.Charge", "EFlowTrack/EFlowTrack.Charge"), ("EFlowTrack.Charge", "EFlowTrack.Charge"), (None, None)],
    ids=["delphes-split", "mktree-flat", "absent"],
)
def test_optional_track_charge_branch_is_found_in_both_layouts(charge_key, expected):
    keys = DELPHES_KEYS if charge_key != "EFlowTrack.Charge" else [k.rsplit("/", 1)[-1] for k in DELPHES_KEYS]
    branches = branch_map(keys + ([charge_key] if charge_key else []), "f.root")
    assert branches["EFlowTrack"].get("Charge") == expected
    assert branches["EFlowTrack"]["PT"] in ("EFlowTrack/EFlowTrack.PT", "EFlowTrack.PT")


def test_missing_collections_are_named_with_what_exists():
    keys = [k for k in DELPHES_KEYS if not k.startswith(("Electron", "MuonTight", "MissingET"))]
    with pytest.raises(
        InputFileError,
        match=r"missing collections Electron, MuonTight, MissingET \(found: EFlowNeutralHadron, EFlowPhoton, EFlowTrack, Jet\) in tree 'Delphes' in file real\.root",
    ):
        branch_map(keys, "real.root")


def test_missing_field_names_the_nearest_branches():
    keys = [k for k in DELPHES_KEYS if k != "Jet/Jet.BTag"] + ["Jet/Jet.BTagPhys"]
    with pytest.raises(InputFileError, match=r"missing branches Jet\.BTag \(nearest existing: Jet\.BTagPhys"):
        branch_map(keys, "f.root")


def test_flat_layout_file_is_read(tmp_path):
    path = tmp_path / "ttbar.root"
    write_delphes(path, simple_events(5))
    layout = inspect_file(str(path))
    assert layout.entries == 5 and layout.branches["Jet"]["PT"] == "Jet.PT"
    [(first, events)] = list(iterate_events(layout, 0, 5))
    assert first == 0 and len(events["Jet"]) == 5
    assert events["EFlowTrack"].PT.tolist()[0] == pytest.approx([40.0, 2.0])


def test_placeholder_entries_are_dropped(tmp_path):
    events = simple_events(2)
    events["EFlowPhoton"] = collection(
        [[{"ET": 0.0, "Eta": 999.9, "Phi": 0.0}, {"ET": 3.0, "Eta": 1.0, "Phi": 0.5}], [{"ET": 0.0, "Eta": -999.9}]],
        REQUIRED_FIELDS["EFlowPhoton"],
    )
    path = tmp_path / "placeholders.root"
    write_delphes(path, events)
    [(_, read)] = list(iterate_events(inspect_file(str(path)), 0, 2))
    assert read["EFlowPhoton"].ET.tolist() == [[3.0], []]


def _features_of(path: str, ranges: list[tuple[int, int]], chunk: int) -> pa.Table:
    layout = inspect_file(path)
    splits = [Split(i, path, "ttbar", 1, a, b, layout.branches) for i, (a, b) in enumerate(ranges)]
    return pa.Table.from_batches([b for s in splits for b in read_split(s, chunk, "fail", None)], schema=ARROW_SCHEMA)


def _track_charges(path: str) -> list[list[float]]:
    """Charge of the track rows (isChHad = 1) of every event that ingest writes from ``path``."""
    table = _features_of(path, [(0, inspect_file(path).entries)], chunk=100)
    is_ch_had, charge = PARTICLE_FEATURES.index("isChHad"), PARTICLE_FEATURES.index("Charge")
    return [[row[charge] for row in event if row[is_ch_had] == 1.0] for event in table.column("particles").to_pylist()]


def _charge_test_events(with_charge: bool) -> dict:
    """One event: an isolated e- (its track is skipped) and e-, mu+, pi+, K- tracks."""
    events = simple_events(1)
    tracks = [
        {"PT": 40.0, "Eta": 0.5, "Phi": 1.0, "PID": 11, "Charge": -1},
        {"PT": 5.0, "Eta": -2.0, "Phi": 1.0, "PID": 11, "Charge": 1},  # deliberately not the PID rule's -1
        {"PT": 6.0, "Eta": -2.0, "Phi": -1.0, "PID": -13, "Charge": 1},
        {"PT": 7.0, "Eta": 2.0, "Phi": -2.0, "PID": 211, "Charge": 1},
        {"PT": 8.0, "Eta": -2.0, "Phi": 2.5, "PID": -321, "Charge": -1},
    ]
    fields = REQUIRED_FIELDS["EFlowTrack"] + (("Charge",) if with_charge else ())
    events["EFlowTrack"] = collection([tracks], fields)
    return events


def test_track_charge_comes_from_the_branch_when_the_file_has_it(tmp_path):
    path = tmp_path / "with_charge.root"
    write_delphes(path, _charge_test_events(with_charge=True))
    assert inspect_file(str(path)).branches["EFlowTrack"]["Charge"] == "EFlowTrack.Charge"
    assert _track_charges(str(path)) == [[1.0, 1.0, 1.0, -1.0]]


def test_track_charge_comes_from_the_pdg_id_without_the_branch(tmp_path):
    path = tmp_path / "without_charge.root"
    write_delphes(path, _charge_test_events(with_charge=False))
    assert "Charge" not in inspect_file(str(path)).branches["EFlowTrack"]
    # e- -1, mu+ +1 (-sign(PID) for leptons), pi+ +1, K- -1 (sign(PID) for hadrons)
    assert _track_charges(str(path)) == [[-1.0, 1.0, 1.0, -1.0]]


def test_simulated_samples_carry_the_track_charge(sample_files):
    import uproot

    for path in sample_files.values():
        assert inspect_file(path).branches["EFlowTrack"]["Charge"] == "EFlowTrack.Charge"
        tree = uproot.open(path)["Delphes"]
        assert tree["EFlowTrack.Charge"].interpretation.content.from_dtype == np.dtype(">i4")


def test_whole_file_and_entry_ranges_give_identical_output(sample_files):
    path = sample_files["ttbar"]
    n = inspect_file(path).entries
    whole = _features_of(path, [(0, n)], chunk=10_000)
    ranges = _features_of(path, [(0, 7), (7, 20), (20, n)], chunk=5)
    assert whole.num_rows > 0
    assert whole.equals(ranges)
    assert whole.column("entry").to_pylist() == sorted(whole.column("entry").to_pylist())


def test_plan_splits_covers_every_entry_once():
    files = [{"url": "a", "process": "qcd", "label": 0, "entries": 25, "branches": {}}, {"url": "b", "process": "ttbar", "label": 1, "entries": 10, "branches": {}}]
    splits = plan_splits(files, 10)
    assert [(s.url, s.start, s.stop) for s in splits] == [("a", 0, 10), ("a", 10, 20), ("a", 20, 25), ("b", 0, 10)]
    assert [s.index for s in splits] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("text", r"not a readable ROOT file .* in file .*bad\.root"),
        ("truncate", r"(not a readable ROOT file|unreadable) .* in file .*bad\.root"),
        ("zero-header", r"not a readable ROOT file .* in file .*bad\.root"),
    ],
)
def test_damaged_files_raise_errors_naming_the_file(tmp_path, sample_files, damage, message):
    data = open(sample_files["wjets"], "rb").read()
    bad = tmp_path / "bad.root"
    if damage == "text":
        bad.write_text("this is not a ROOT file\n")
    elif damage == "truncate":
        bad.write_bytes(data[: len(data) // 2])
    else:
        bad.write_bytes(b"\0" * 64 + data[64:])
    with pytest.raises(InputFileError, match=message):
        layout = inspect_file(str(bad))
        for _ in iterate_events(layout, 0, layout.entries):
            pass


def test_corrupt_baskets_fail_at_read_time_naming_the_entries(tmp_path, sample_files):
    import uproot

    branch = uproot.open(sample_files["ttbar"])["Delphes"]["EFlowTrack.PT"]
    seek, size = int(branch.member("fBasketSeek")[0]), int(branch.member("fBasketBytes")[0])
    data = bytearray(open(sample_files["ttbar"], "rb").read())
    data[seek + 100 : seek + size] = bytes(size - 100)  # zero the compressed data of one basket
    bad = tmp_path / "ttbar_corrupt.root"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match=r"(unreadable entries \d+-\d+ of tree 'Delphes'|not a readable ROOT file).* in file .*ttbar_corrupt\.root"):
        layout = inspect_file(str(bad))
        for _ in iterate_events(layout, 0, layout.entries):
            pass


def test_empty_tree_and_missing_tree(tmp_path):
    events = {k: v[:0] for k, v in simple_events(1).items()}
    write_delphes(tmp_path / "empty.root", events)
    with pytest.raises(InputFileError, match=r"empty tree 'Delphes' \(0 entries\) in file .*empty\.root"):
        inspect_file(str(tmp_path / "empty.root"))
    write_delphes(tmp_path / "other.root", simple_events(1), tree="Events")
    with pytest.raises(InputFileError, match=r"no TTree 'Delphes' \(found: Events\) in file .*other\.root"):
        inspect_file(str(tmp_path / "other.root"))
    with pytest.raises(InputFileError, match=r"no such file in file .*nothere\.root"):
        inspect_file(str(tmp_path / "nothere.root"))


def test_processes_come_from_prefixes_or_names(tmp_path):
    assert process_from_path("/eos/ttbar_lepFilter_13TeV/x.root") == "ttbar"
    assert process_from_path("/data/qcd_lepFilter/f.root") == "qcd"
    assert process_from_path("/data/run1/f.root") is None
    for name in ("a.root", "b.root"):
        write_delphes(tmp_path / name, simple_events(1))
    store = DatasetStore(str(tmp_path / "root"))
    files, versions = resolve_inputs(store, f"wjets={tmp_path}/*.root")
    assert [f.process for f in files] == ["wjets", "wjets"] and "files" in versions
    with pytest.raises(Exception, match=r"cannot tell the process of .*a\.root: name it with a prefix, e\.g\. ttbar="):
        resolve_inputs(store, f"{tmp_path}/a.root")
    with pytest.raises(Exception, match=r"input '.*/none\*\.root' matches no file"):
        resolve_inputs(store, f"{tmp_path}/none*.root")
    with pytest.raises(Exception, match=r"unknown process 'higgs' in input"):
        resolve_inputs(store, f"higgs={tmp_path}/a.root")
