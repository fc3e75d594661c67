"""Compare two versions of a stage's output row for row, keyed by ``(source_file, entry)``.

Used to show that a change to how a stage writes (file layout, row order, writer) leaves every
event identical: the Parquet directories named in both versions are read with pyarrow, sorted by
lineage and compared column by column (bit-exact floats, nested lists included).

Run: ``.venv/bin/python bench/compare_outputs.py <version-dir-A> <version-dir-B> [--parts events]``
(``--parts train,test`` for prepare versions). Exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

KEYS = [("source_file", "ascending"), ("entry", "ascending")]


def read_sorted(directory: Path) -> pa.Table:
    files = sorted(str(p) for p in directory.glob("*.parquet"))
    return ds.dataset(files, format="parquet").to_table().sort_by(KEYS)


def differences(a: pa.Table, b: pa.Table) -> list[str]:
    """What differs between two lineage-sorted tables (empty when they are identical)."""
    if a.num_rows != b.num_rows:
        return [f"rows: {a.num_rows} vs {b.num_rows}"]
    if a.column_names != b.column_names:
        return [f"columns: {a.column_names} vs {b.column_names}"]
    return [name for name in a.column_names if not a.column(name).combine_chunks().equals(b.column(name).combine_chunks())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--parts", default="events", help="comma-separated sub-directories to compare")
    args = parser.parse_args()
    failed = False
    for part in args.parts.split(","):
        a, b = read_sorted(args.a / part), read_sorted(args.b / part)
        diff = differences(a, b)
        print(f"{part}: {a.num_rows} rows, {'identical' if not diff else 'DIFFERENT: ' + ', '.join(diff)}")
        failed |= bool(diff)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
