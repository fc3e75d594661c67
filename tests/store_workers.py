"""Process bodies for tests/test_concurrency.py, in a module light to import: ``spawn`` imports it
in every child process."""

from __future__ import annotations

from pathlib import Path

from hep_tasks.datasets import DatasetError, DatasetStore


def race_to_commit(root: str, racer: int, versions: list[str], start, results) -> None:
    """Write each version's pending files, wait for every racer, then commit: (version, manifest)."""
    store = DatasetStore(root)
    for version in versions:
        with store.begin("prepare", version) as pending:
            Path(pending.path, f"part-{racer}.parquet").write_text(str(racer) * 1000)
            start.wait()  # every racer has written its files: now all commit at once
            results.put((version, pending.commit({"writer": racer})))


def publish(root: str, versions: list[str], rounds: int, start) -> None:
    """Move ingest's ``latest`` through ``versions``, ``rounds`` times."""
    store = DatasetStore(root)
    start.wait()
    for _ in range(rounds):
        for version in versions:
            store.set_latest("ingest", version)


def resolve_latest(root: str, versions: list[str], start, done, results) -> None:
    """Resolve ingest's ``latest`` until ``done``: (reads, reads not one of ``versions``, examples)."""
    store = DatasetStore(root)
    reads, bad = 0, []
    start.wait()
    while not done.is_set():
        try:
            version = store.resolve("ingest")
        except DatasetError as err:
            version = str(err)
        reads += 1
        if version not in versions:
            bad.append(version)
    results.put((reads, len(bad), bad[:3]))


def publish_runs(root: str, run: dict[str, str], rounds: int, start, end) -> None:
    """Publish ``run`` (stage -> version) once per round, all publishers released together."""
    from hep_tasks.catalog import publish

    store = DatasetStore(root)
    for _ in range(rounds):
        start.wait()
        publish(store, run)
        end.wait()
