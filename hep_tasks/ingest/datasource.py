"""A PySpark Python data source over Delphes-like ROOT files: ``spark.read.format("delphes")``.

Each Spark partition is one (file, entry range) split, read with uproot inside the task, turned into
the §3 features per chunk with the columnar physics code, and yielded as Arrow record batches.

Options:

- ``files``: JSON list of inspected files ``{"url", "process", "label", "entries", "branches"}``
  (as :func:`file_record` makes them); or ``path`` (the ``load()`` argument): comma-separated
  ``[process=]path-or-glob`` items, inspected on the driver.
- ``entriesPerSplit`` (default 20000), ``chunkEntries`` (default 2000): split and read sizes.
- ``onBadFile``: ``fail`` (default) raises; ``skip`` drops the rest of a damaged split and goes on.

>>> spark.dataSource.register(DelphesDataSource)                     # doctest: +SKIP
>>> spark.read.format("delphes").load("ttbar=/data/tt/*.root").count()  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

from hep_tasks.errors import InputFileError
from hep_tasks.ingest.schema import SPARK_DDL
from hep_tasks.physics import CUTFLOW_STEPS

FORMAT = "delphes"
#: The cut-flow of a split: events read, passing each selection step, written.
CUTFLOW = ("read", *CUTFLOW_STEPS, "written")
#: Entries read and turned into features at a time (one Arrow batch each).
CHUNK_ENTRIES = 2000


@dataclass
class Split(InputPartition):
    """One Spark partition: entries ``[start, stop)`` of one file."""

    index: int
    url: str
    process: str
    label: int
    start: int
    stop: int
    branches: dict[str, dict[str, str]] = field(repr=False)

    def __post_init__(self) -> None:
        super().__init__(self.index)


def plan_splits(files: list[dict[str, Any]], entries_per_split: int) -> list[Split]:
    """Cut every inspected file into entry ranges of at most ``entries_per_split``."""
    splits: list[Split] = []
    for f in files:
        for start in range(0, f["entries"], entries_per_split):
            stop = min(start + entries_per_split, f["entries"])
            splits.append(Split(len(splits), f["url"], f["process"], f["label"], start, stop, f["branches"]))
    return splits


@dataclass
class SplitTally:
    """What reading one split found: cut-flow counts, events rejected per invalid-value problem,
    and the error that quarantined the rest of the split (``onBadFile=skip``)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CUTFLOW, 0))
    invalid_values: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def record(self, split: Split) -> dict[str, Any]:
        return {
            "index": split.index,
            "url": split.url,
            "process": split.process,
            "label": split.label,
            "start": split.start,
            "stop": split.stop,
            "counts": self.counts,
            "invalid_values": self.invalid_values,
            "error": self.error,
        }


def read_split(
    split: Split, chunk_entries: int, on_bad_file: str, tally: SplitTally | None = None
) -> Iterator[Any]:
    """Yield the split's selected events as Arrow batches, counting into ``tally`` its cut-flow, the
    events rejected for invalid values by problem, and the error that quarantined the rest of it."""
    import numpy as np

    from hep_tasks.ingest.rootfile import TreeLayout, iterate_events
    from hep_tasks.ingest.schema import to_record_batch
    from hep_tasks.physics import compute_features, cutflow_counts

    tally = tally if tally is not None else SplitTally()
    counts, invalid = tally.counts, tally.invalid_values
    layout = TreeLayout(split.url, split.stop, split.branches)
    try:
        for first, events in iterate_events(layout, split.start, split.stop, chunk_entries):
            n = len(events["MissingET"])
            try:
                features = compute_features(events)
            except ValueError as err:  # readable, but not shaped as §3 expects (e.g. two MET per event)
                raise InputFileError(split.url, f"unusable entries {first}-{first + n} ({err})") from None
            counts["read"] += n
            for step, passed in cutflow_counts(features.cutflow).items():
                counts[step] += passed
            counts["written"] += features.n_selected
            for problem, n_events in features.value_problems.items():
                invalid[problem] = invalid.get(problem, 0) + n_events
            if features.n_selected:
                yield to_record_batch(features, split.label, split.process, split.url, np.arange(first, first + n))
    except InputFileError as err:
        if on_bad_file == "fail":
            raise
        tally.error = str(err)


class DelphesDataSource(DataSource):
    """``spark.read.format("delphes")``: ingested events (schema :data:`~.schema.SPARK_DDL`)."""

    @classmethod
    def name(cls) -> str:
        return FORMAT

    def schema(self) -> str:
        return SPARK_DDL

    def reader(self, schema: Any) -> DataSourceReader:
        return DelphesReader(self.options)


class DelphesReader(DataSourceReader):
    def __init__(self, options: dict[str, str]) -> None:
        self.on_bad_file = options.get("onBadFile", "fail")
        self.chunk_entries = int(options.get("chunkEntries", CHUNK_ENTRIES))
        if "files" in options:
            files = json.loads(options["files"])
        else:
            files = _inspect_on_driver(options.get("path", ""), self.on_bad_file)
        self.splits = plan_splits(files, int(options.get("entriesPerSplit", 20000)))

    def partitions(self) -> list[Split]:
        return self.splits

    def read(self, partition: Split) -> Iterator[Any]:
        return read_split(partition, self.chunk_entries, self.on_bad_file)


def _inspect_on_driver(spec: str, on_bad_file: str) -> list[dict[str, Any]]:
    from hep_tasks.ingest.inputs import expand_item
    from hep_tasks.ingest.rootfile import inspect_file

    files = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        for f in expand_item(item):
            try:
                layout = inspect_file(f.url)
            except InputFileError:
                if on_bad_file == "fail":
                    raise
                continue
            files.append(file_record(f.url, f.process, layout))
    return files


def file_record(url: str, process: str, layout: Any) -> dict[str, Any]:
    from hep_tasks.processes import LABELS

    return {"url": url, "process": process, "label": LABELS[process], "entries": layout.entries, "branches": layout.branches}
