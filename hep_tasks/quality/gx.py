"""Great Expectations, imported without the libraries that no suite here uses.

``import great_expectations`` imports every core expectation, and three of them import heavy
libraries at their top: ``ExpectColumnKLDivergenceToBeLessThan`` scipy.stats (its test) and altair
(its charts), ``ExpectColumnValuesToMatchJsonSchema``'s metric jsonschema. On 2 cores that is
≈ 0.9 s of GX's ≈ 2.7 s import, paid by every quality check for expectations none of our suites
runs. Importing this module first puts a :class:`DeferredModule` in ``sys.modules`` for each of
:data:`DEFERRED_MODULES` that is installed and not yet imported; GX binds it under its usual name,
and the first attribute read from it imports the real module and answers from that. Code that does
use them (a KL-divergence expectation, another library in the same process) works unchanged and
pays the import when it first needs it.

Import GX through this module, so that the deferral comes first::

    from hep_tasks.quality.gx import gx, gxe   # great_expectations, great_expectations.expectations
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types

#: Imported by GX only for expectations our suites do not use (see the module's docstring).
DEFERRED_MODULES = ("scipy.stats", "altair", "jsonschema")

#: Held while a stand-in is taken out of ``sys.modules``, never while importing: the import
#: system's own per-module locks order concurrent imports, and holding a lock of ours across one
#: could deadlock with a thread that imports a submodule (it holds that submodule's lock while it
#: reads the deferred package's ``__path__``).
_swapping = threading.Lock()


class DeferredModule(types.ModuleType):
    """Stands in ``sys.modules`` for a module not imported yet; the first attribute read from it
    that it does not hold (everything but ``__name__``, ``__spec__``, ``__loader__``) imports the
    real module, which then replaces it in ``sys.modules``; reads go on being answered from it."""

    def __getattr__(self, attr: str):
        return getattr(_load(self.__name__), attr)

    def __dir__(self) -> list[str]:
        return dir(_load(self.__name__))


def _load(name: str) -> types.ModuleType:
    with _swapping:
        if isinstance(sys.modules.get(name), DeferredModule):
            del sys.modules[name]
    return importlib.import_module(name)


def defer_import(name: str) -> None:
    """Put a :class:`DeferredModule` for ``name`` in ``sys.modules``, unless ``name`` is imported
    already or not installed.

    The stand-in holds the module's ``__spec__``: an ``import name`` that finds it in
    ``sys.modules`` reads that and nothing else, so it stays deferred. It holds no ``__path__``:
    importing a submodule of a deferred package reads the package's path, which imports the package
    first, as usual.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)  # imports the parent package (scipy: lazy, ≈ 10 ms)
    if spec is None:
        return
    stand_in = DeferredModule(name)
    stand_in.__spec__, stand_in.__loader__ = spec, spec.loader
    sys.modules[name] = stand_in
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, stand_in)


def _import_great_expectations() -> tuple[types.ModuleType, types.ModuleType]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # before GX reads its settings; our contexts say so too
    for name in DEFERRED_MODULES:
        defer_import(name)
    import great_expectations
    import great_expectations.expectations

    return great_expectations, great_expectations.expectations


gx, gxe = _import_great_expectations()
