"""The ``>>>`` examples in hep_tasks docstrings are part of the documentation: they must hold."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hep_tasks

MODULES = sorted(m.name for m in pkgutil.walk_packages(hep_tasks.__path__, "hep_tasks.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
