"""A corpus of bad input files, each made here from a good sample file, ingested in ONE batch with
the good files by the real ingest stage; every kind gets its documented behaviour (RELIABILITY.md,
"Bad input files") and every readable file is ingested in full.

- unreadable files (zero bytes, truncated, random bytes after a ROOT header, text named ``.root``,
  wrong tree name, missing collections, empty tree): a manifest ``quarantine`` entry naming the
  file with the reason, and none of its events written;
- NaN, ±inf and absurd values (PT < 0, |Eta| > 10): those events rejected and listed in the
  manifest's ``invalid_values`` per problem, the file's other events kept;
- an event with more than 2,000 particles: kept, its particle list capped at 801 rows (ARCHITECTURE
  §3: the lepton, up to 450 tracks, 150 photons and 200 neutral hadrons);
- the good files, and the readable part of every other file: exactly the events that a direct
  uproot read and the §3 selection give.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from rootfiles import collection, write_delphes

from hep_tasks.config import IngestParams
from hep_tasks.datasets import DatasetStore
from hep_tasks.ingest import stage as ingest
from hep_tasks.ingest.rootfile import inspect_file, iterate_events
from hep_tasks.physics import (
    MAX_NEUTRAL_HADRONS,
    MAX_PARTICLES,
    MAX_PHOTONS,
    MAX_TRACKS,
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    compute_features,
)

pytestmark = pytest.mark.slow

UNREADABLE = r"not a readable ROOT file \(|unreadable (TTree|entries)"
#: Each unreadable kind: the quarantine reason it must get.
QUARANTINED = {
    "zero_bytes": UNREADABLE,
    "truncated_in_header": UNREADABLE,
    "truncated_in_half": UNREADABLE,
    "truncated_near_end": UNREADABLE,
    "random_after_header": UNREADABLE,
    "text_named_root": UNREADABLE,
    "wrong_tree_name": r"^no TTree 'Delphes' \(found: Events\)$",
    "missing_collections": r"^missing collections Electron, MissingET \(found: .*\) in tree 'Delphes'$",
    "empty_tree": r"^empty tree 'Delphes' \(0 entries\)$",
    "wrong_branch_type": r"branch Jet\.PT holds float, not a list of numbers per event",
}
#: Each kind with invalid values: the field made invalid in one event each, the value and the problem
#: named in the manifest.
INVALID = {
    "nan_and_inf": {"Jet.PT": (np.nan, "NaN/inf"), "EFlowTrack.PT": (np.inf, "NaN/inf"),
                    "MissingET.MET": (-np.inf, "NaN/inf")},
    "absurd_values": {"Electron.PT": (-40.0, "negative"), "EFlowPhoton.Eta": (12.0, "beyond |10|")},
}  # fmt: skip
HUGE_EVENT = "over_2000_particles"
GOOD = ("ttbar", "wjets", "qcd")


# --- making the corpus from the good samples --------------------------------------------------------


def read_collections(path: str) -> dict[str, ak.Array]:
    """Every collection the features read, as jagged records, straight from a sample file."""
    tree = uproot.open(path)["Delphes"]
    events = {}
    for name, required in REQUIRED_FIELDS.items():
        fields = [f for f in (*required, *OPTIONAL_FIELDS.get(name, ())) if f"{name}.{f}" in tree]
        arrays = tree.arrays([f"{name}.{f}" for f in fields])
        events[name] = ak.zip({f: arrays[f"{name}.{f}"] for f in fields})
    return events


def with_invalid_values(events: dict[str, ak.Array], kind: str) -> tuple[dict[str, ak.Array], dict[int, str]]:
    """``events`` with each field of ``INVALID[kind]`` set to its value in the first member of one
    event (a different event each), and those events with their problem."""
    damaged: dict[int, str] = {}
    for name_field, (value, problem) in INVALID[kind].items():
        name, field = name_field.split(".")
        column = events[name][field]
        sizes = ak.to_numpy(ak.num(column))
        event = next(i for i in np.flatnonzero(sizes) if i not in damaged)
        flat = ak.to_numpy(ak.flatten(column)).copy()
        flat[sizes[:event].sum()] = value
        events = events | {name: ak.with_field(events[name], ak.unflatten(flat, sizes), field)}
        damaged[int(event)] = f"{name_field} {problem}"
    return events, damaged


def write_scalar_jet_pt(path: Path, events: dict[str, ak.Array]) -> None:
    """A file whose ``Jet.PT`` is one float per event instead of a list per jet."""
    jets = events["Jet"]
    records = events | {"Jet": ak.zip({f: jets[f] for f in ak.fields(jets) if f != "PT"})}
    leading = ak.to_numpy(ak.fill_none(ak.max(jets.PT, axis=1), 0.0)).astype(np.float32)
    with uproot.recreate(path) as f:
        types = {name: array.type.content for name, array in records.items()} | {"Jet.PT": np.float32}
        f.mktree("Delphes", types, field_name=lambda outer, inner: f"{outer}.{inner}",
                 counter_name=lambda name: f"{name}_size")  # fmt: skip
        f["Delphes"].extend(records | {"Jet.PT": leading})


def selected_lepton(events: dict[str, ak.Array]) -> tuple[int, float, float]:
    """(event, lepton Eta, lepton Phi) of the first event the §3 selection keeps."""
    features = compute_features(events)
    hlf = features.hlf[0]
    return int(np.flatnonzero(features.selected)[0]), float(hlf[7]), float(hlf[8])


def with_huge_event(events: dict[str, ak.Array]) -> dict[str, ak.Array]:
    """``events`` plus a copy of a selected event given 1,500 more tracks and 300 more photons and
    neutral hadrons each, all at ΔR > 0.3 from the lepton (it stays isolated): over 2,000 particles."""
    event, eta, phi = selected_lepton(events)
    far = {"Eta": eta - 1.0 if eta > 0 else eta + 1.0, "Phi": phi}
    extra = {
        "EFlowTrack": [{"PT": 1.0, "PID": 211, "Charge": 1, **far}] * 1500,
        "EFlowPhoton": [{"ET": 2.0, **far}] * 300,
        "EFlowNeutralHadron": [{"ET": 2.0, **far}] * 300,
    }
    huge = {}
    for name, array in events.items():
        copy = array[event : event + 1]
        if name in extra:
            copy = ak.concatenate([copy, collection([extra[name]], tuple(ak.fields(array)))], axis=1)
        huge[name] = ak.concatenate([array, copy])
    return huge


def make_corpus(folder: Path, samples: dict[str, str]) -> tuple[dict[str, Path], dict[str, dict[int, str]]]:
    """Write every kind of bad file, and a copy of each good sample, into ``folder``: (the file of
    each kind, the events given invalid values per kind with their problem)."""
    data = Path(samples["wjets"]).read_bytes()
    events = read_collections(samples["wjets"])
    invalid = {kind: with_invalid_values(events, kind) for kind in INVALID}
    rng = np.random.default_rng(7)
    bytes_of: dict[str, bytes] = {
        "zero_bytes": b"",
        "truncated_in_header": data[:50],
        "truncated_in_half": data[: len(data) // 2],
        "truncated_near_end": data[:-1000],
        "random_after_header": data[:100] + rng.integers(0, 256, len(data) - 100, dtype=np.uint8).tobytes(),
        "text_named_root": b"run,event,pt\n1,2,40.5\n",
    }
    writers: dict[str, Callable[[Path], None]] = {
        "wrong_tree_name": lambda p: write_delphes(p, events, tree="Events"),
        "missing_collections": lambda p: write_delphes(p, {k: v for k, v in events.items() if k not in ("Electron", "MissingET")}),
        "empty_tree": lambda p: write_delphes(p, {k: v[:0] for k, v in events.items()}),
        "wrong_branch_type": lambda p: write_scalar_jet_pt(p, events),
        **{kind: lambda p, kind=kind: write_delphes(p, invalid[kind][0]) for kind in INVALID},
        HUGE_EVENT: lambda p: write_delphes(p, with_huge_event(events)),
    }
    paths = {kind: folder / f"wjets_{kind}.root" for kind in [*bytes_of, *writers]}
    for kind, content in bytes_of.items():
        paths[kind].write_bytes(content)
    for kind, write in writers.items():
        write(paths[kind])
    for process in GOOD:
        paths[process] = folder / f"{process}_good.root"
        paths[process].write_bytes(Path(samples[process]).read_bytes())
    return paths, {kind: damaged for kind, (_, damaged) in invalid.items()}


# --- one ingest run over the whole corpus -----------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(spark, tmp_path_factory, sample_files):
    """(file of each kind, events given invalid values per kind, the ingest manifest, events written
    per file: entry -> number of particles) of one ingest run over all of them."""
    folder = tmp_path_factory.mktemp("corpus")
    paths, damaged = make_corpus(folder, sample_files)
    store = DatasetStore(str(tmp_path_factory.mktemp("corpus-data")))
    params = IngestParams.from_values({"input": f"{folder}/*.root", "max_quarantined_fraction": 1.0}, env={})
    version = ingest.run(spark, store, params)["version"]
    manifest = store.read_manifest("ingest", version)
    rows = spark.read.parquet(store.url("ingest", version, "events")).select("source_file", "entry", "n_particles").collect()
    written: dict[str, dict[int, int]] = {}
    for row in rows:
        written.setdefault(row["source_file"], {})[row["entry"]] = row["n_particles"]
    return paths, damaged, manifest, written


def expected_entries(path: Path) -> list[int]:
    """The entries that a direct uproot read and the §3 selection keep, without Spark."""
    layout = inspect_file(str(path))
    assert layout.entries == uproot.open(path)["Delphes"].num_entries
    kept = []
    for first, events in iterate_events(layout, 0, layout.entries):
        kept += (first + np.flatnonzero(compute_features(events).selected)).tolist()
    return kept


def _quarantine_of(manifest: dict, path: Path) -> list[dict]:
    return [q for q in manifest["quarantine"] if q["url"].endswith(path.name)]


def _written_by(written: dict[str, dict[int, int]], path: Path) -> dict[int, int]:
    return next((entries for url, entries in written.items() if url.endswith(path.name)), {})


@pytest.mark.parametrize("kind", list(QUARANTINED))
def test_an_unreadable_file_is_quarantined_with_its_reason_and_nothing_of_it_written(corpus, kind):
    paths, _, manifest, written = corpus
    [entry] = _quarantine_of(manifest, paths[kind])
    assert re.search(QUARANTINED[kind], entry["reason"]), entry["reason"]
    assert _written_by(written, paths[kind]) == {}


@pytest.mark.parametrize("kind", INVALID)
def test_events_with_invalid_values_are_rejected_and_named_and_the_rest_kept(corpus, kind):
    paths, damaged, manifest, written = corpus
    [record] = [r for url, r in manifest["invalid_values"].items() if url.endswith(paths[kind].name)]
    assert record == {"process": "wjets", "events": len(damaged[kind]),
                      "problems": {problem: 1 for problem in damaged[kind].values()}}  # fmt: skip
    assert _quarantine_of(manifest, paths[kind]) == []
    kept = sorted(_written_by(written, paths[kind]))
    assert kept == [e for e in expected_entries(paths["wjets"]) if e not in damaged[kind]]  # the same sample
    assert kept == expected_entries(paths[kind])


def test_an_event_with_over_2000_particles_is_kept_with_801_rows(corpus):
    paths, _, manifest, written = corpus
    huge_entry = uproot.open(paths[HUGE_EVENT])["Delphes"].num_entries - 1
    counts = read_collections(str(paths[HUGE_EVENT]))
    assert sum(int(ak.num(counts[c])[huge_entry]) for c in ("EFlowTrack", "EFlowPhoton", "EFlowNeutralHadron")) > 2000
    assert MAX_PARTICLES == 1 + MAX_TRACKS + MAX_PHOTONS + MAX_NEUTRAL_HADRONS == 801
    rows = _written_by(written, paths[HUGE_EVENT])
    assert rows[huge_entry] == MAX_PARTICLES
    assert sorted(rows) == expected_entries(paths[HUGE_EVENT])
    assert _quarantine_of(manifest, paths[HUGE_EVENT]) == []


@pytest.mark.parametrize("process", GOOD)
def test_a_good_file_in_the_bad_batch_is_ingested_in_full(corpus, process):
    paths, _, manifest, written = corpus
    assert sorted(_written_by(written, paths[process])) == expected_entries(paths[process])
    assert _quarantine_of(manifest, paths[process]) == []
    assert not [url for url in manifest["invalid_values"] if url.endswith(paths[process].name)]


def test_the_cutflow_reads_every_entry_of_every_readable_file(corpus):
    paths, _, manifest, written = corpus
    quarantined = {kind for kind, path in paths.items() if _quarantine_of(manifest, path)}
    readable = [path for kind, path in paths.items() if kind not in quarantined]
    assert sum(row["read"] for row in manifest["cutflow"].values()) == sum(
        uproot.open(path)["Delphes"].num_entries for path in readable
    )
    assert manifest["input_files"]["total"] == len(paths)
    assert manifest["counts"]["total"] == sum(len(entries) for entries in written.values())
