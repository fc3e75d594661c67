"""Exceptions with messages that say what is wrong, where, and what exists instead."""

from __future__ import annotations


class PipelineError(Exception):
    """Base of the errors a stage reports to its user as a one-line message (no traceback)."""


class InputFileError(PipelineError):
    """An input file cannot be used; the message names the file and the problem."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{problem} in file {path}")
        self.path = path
        self.problem = problem
