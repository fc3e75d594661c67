"""Versioned datasets: content-derived ids, atomic commit, latest pointer, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from hep_tasks.datasets import DatasetError, DatasetStore, code_version, summary, version_id


def test_version_id_depends_on_inputs_params_and_code_only():
    a = version_id("ingest", {"simulate": "sim-1"}, {"x": 1, "y": 2}, "0.1+abc")
    assert a == version_id("ingest", {"simulate": "sim-1"}, {"y": 2, "x": 1}, "0.1+abc")
    assert a != version_id("ingest", {"simulate": "sim-2"}, {"x": 1, "y": 2}, "0.1+abc")
    assert a != version_id("ingest", {"simulate": "sim-1"}, {"x": 1, "y": 3}, "0.1+abc")
    assert a != version_id("ingest", {"simulate": "sim-1"}, {"x": 1, "y": 2}, "0.1+abd")
    assert a.startswith("ing-")


def test_commit_makes_the_version_visible_with_its_manifest(tmp_path):
    store = DatasetStore(str(tmp_path))
    with store.begin("prepare", "pre-1") as pending:
        assert not store.exists("prepare", "pre-1")
        assert (tmp_path / "prepare" / "_tmp").is_dir()
        with open(os.path.join(pending.path, "part-0.parquet"), "w") as f:
            f.write("data")
        manifest = pending.commit({"counts": {"total": 1}})
    assert store.exists("prepare", "pre-1")
    assert store.read_manifest("prepare", "pre-1") == manifest
    assert manifest["quality"] == {"status": "pending"}
    assert os.listdir(tmp_path / "prepare" / "_tmp") == []
    assert summary(store, manifest)["path"] == (tmp_path / "prepare" / "pre-1").as_uri()


def test_failure_inside_the_block_leaves_nothing_visible(tmp_path):
    store = DatasetStore(str(tmp_path))
    with pytest.raises(ZeroDivisionError), store.begin("ingest", "ing-1") as pending:
        with open(os.path.join(pending.path, "half.parquet"), "w") as f:
            f.write("half")
        1 / 0
    assert not store.exists("ingest", "ing-1")
    assert store.versions("ingest") == []
    assert os.listdir(tmp_path / "ingest" / "_tmp") == []


def test_a_second_commit_of_the_same_version_keeps_the_first(tmp_path):
    store = DatasetStore(str(tmp_path))
    with store.begin("simulate", "sim-1") as first, store.begin("simulate", "sim-1") as second:
        m1 = first.commit({"n": 1})
        m2 = second.commit({"n": 2})
    assert m2 == m1 == store.read_manifest("simulate", "sim-1")


def test_latest_pointer_and_resolve(tmp_path):
    store = DatasetStore(str(tmp_path))
    with pytest.raises(DatasetError, match="no ingest version has passed its checks"):
        store.resolve("ingest")
    with store.begin("ingest", "ing-a") as pending:
        pending.commit({})
    assert store.latest("ingest") is None
    store.set_latest("ingest", "ing-a")
    assert store.resolve("ingest") == "ing-a"
    with pytest.raises(DatasetError, match=r"ingest version 'ing-zzz' does not exist under .* \(committed versions: ing-a\)"):
        store.resolve("ingest", "ing-zzz")


def test_update_manifest_and_run_records(tmp_path):
    store = DatasetStore(str(tmp_path))
    with store.begin("ingest", "ing-a") as pending:
        pending.commit({"counts": {"total": 3}})
    store.update_manifest("ingest", "ing-a", quality={"status": "passed"})
    assert store.read_manifest("ingest", "ing-a")["quality"] == {"status": "passed"}
    store.write_run_record("dag__run__task__1", {"version": "ing-a"})
    assert store.read_run_record("dag__run__task__1") == {"version": "ing-a"}


def test_a_job_killed_mid_write_leaves_no_visible_version(tmp_path):
    writer = textwrap.dedent(
        f"""
        import os, sys, time
        from hep_tasks.datasets import DatasetStore
        store = DatasetStore({str(tmp_path)!r})
        with store.begin("ingest", "ing-killed") as pending:
            with open(os.path.join(pending.path, "part-0.parquet"), "w") as f:
                f.write("x" * 1000)
            print("writing", flush=True)
            time.sleep(60)
            pending.commit({{}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    store = DatasetStore(str(tmp_path))
    assert not store.exists("ingest", "ing-killed")
    assert store.versions("ingest") == []
    assert not (tmp_path / "ingest" / "ing-killed").exists()
    # the leftover lives only under _tmp, and a rerun commits normally
    assert len(os.listdir(tmp_path / "ingest" / "_tmp")) == 1
    with store.begin("ingest", "ing-killed") as pending:
        pending.commit({"counts": {"total": 0}})
    assert store.versions("ingest") == ["ing-killed"]
    assert json.loads((tmp_path / "ingest" / "ing-killed" / "_manifest.json").read_text())["stage"] == "ingest"


def test_code_version_covers_only_the_modules_a_stage_runs():
    from hep_tasks.datasets import _imported_modules, _module_file

    def closure(module):
        seen, pending = set(), [module]
        while pending:
            name = pending.pop()
            if name not in seen and _module_file(name):
                seen.add(name)
                pending.extend(_imported_modules(name, _module_file(name)))
        return seen

    ingest = closure("hep_tasks.ingest.stage")
    assert {"hep_tasks.physics.isolation", "hep_tasks.ingest.datasource", "hep_tasks.datasets"} <= ingest
    assert not any(m.startswith(("hep_tasks.train", "hep_tasks.simulate", "hep_tasks.evaluate")) for m in ingest)
    assert "hep_tasks.config" not in ingest  # parameters enter version ids by value
    train = closure("hep_tasks.train.stage")
    assert {"hep_tasks.train.loop", "hep_tasks.train.worker", "hep_tasks.train.models"} <= train
    assert code_version("hep_tasks.ingest.stage") != code_version("hep_tasks.train.stage")
    assert code_version("hep_tasks.ingest.stage") == code_version("hep_tasks.ingest.stage")
