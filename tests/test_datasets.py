"""Versioned datasets: content-derived ids, atomic commit, latest pointer, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid

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


def _start_writer(data_root, version: str) -> subprocess.Popen:
    """A process that opens a pending ``version``, writes a file, says "writing", and commits when
    it reads a line on stdin."""
    writer = textwrap.dedent(
        f"""
        import os, sys
        from hep_tasks.datasets import DatasetStore
        store = DatasetStore({str(data_root)!r})
        with store.begin("ingest", {version!r}) as pending:
            with open(os.path.join(pending.path, "part-0.parquet"), "w") as f:
                f.write("x" * 1000)
            print("writing", flush=True)
            sys.stdin.readline()
            pending.commit({{}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def _attempt_dirs(data_root) -> list[str]:
    return [p.name for p in (data_root / "ingest" / "_tmp").iterdir() if p.is_dir()]


def test_a_job_killed_mid_write_leaves_no_visible_version(tmp_path):
    proc = _start_writer(tmp_path, "ing-killed")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    store = DatasetStore(str(tmp_path))
    assert not store.exists("ingest", "ing-killed")
    assert store.versions("ingest") == []
    assert not (tmp_path / "ingest" / "ing-killed").exists()
    # the leftover lives only under _tmp; a rerun removes it and commits normally
    assert len(_attempt_dirs(tmp_path)) == 1
    with store.begin("ingest", "ing-killed") as pending:
        pending.commit({"counts": {"total": 0}})
    assert store.versions("ingest") == ["ing-killed"]
    assert json.loads((tmp_path / "ingest" / "ing-killed" / "_manifest.json").read_text())["stage"] == "ingest"
    assert os.listdir(tmp_path / "ingest" / "_tmp") == []


def test_a_new_attempt_keeps_the_pending_files_of_a_live_one(tmp_path):
    proc = _start_writer(tmp_path, "ing-live")
    store = DatasetStore(str(tmp_path))
    with store.begin("ingest", "ing-other") as pending:
        assert len(_attempt_dirs(tmp_path)) == 2  # the live attempt's directory was not removed
        pending.commit({})
    proc.communicate("commit\n", timeout=30)
    assert proc.returncode == 0
    assert sorted(store.versions("ingest")) == ["ing-live", "ing-other"]
    assert (tmp_path / "ingest" / "ing-live" / "part-0.parquet").stat().st_size == 1000
    assert os.listdir(tmp_path / "ingest" / "_tmp") == []


def test_an_object_store_commit_never_merges_into_a_committed_version():
    """On object stores the commit is a copy: a second attempt must not copy its files into the first's version."""
    store = DatasetStore(f"memory://datasets-{uuid.uuid4().hex}")
    with store.begin("ingest", "ing-1") as first, store.begin("ingest", "ing-1") as second:
        for pending, name in ((first, "part-a.parquet"), (second, "part-b.parquet")):
            with store.fs.open(f"{pending.path}/{name}", "w") as f:
                f.write(name)
        m1 = first.commit({"n": 1})
        m2 = second.commit({"n": 2})
    assert m2 == m1 == store.read_manifest("ingest", "ing-1")
    committed = sorted(p.rsplit("/", 1)[-1] for p in store.fs.ls(store.path("ingest", "ing-1"), detail=False))
    assert committed == ["_manifest.json", "part-a.parquet"]
    assert store.fs.ls(store.path("ingest", "_tmp"), detail=False) == []


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
