"""Helpers shared by the quality-suite tests."""

from __future__ import annotations


def assert_single_failure(report, start: str, end: str) -> None:
    """Exactly one failed expectation of ``report`` starts with ``start``, and it ends with ``end``."""
    lines = [line for line in report.failed if line.startswith(start)]
    assert len(lines) == 1, (start, report.failed)
    assert lines[0].endswith(end), lines[0]
