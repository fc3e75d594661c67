"""Great Expectations imported with its unused heavy dependencies deferred (hep_tasks.quality.gx)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from hep_tasks.quality.gx import DeferredModule, defer_import


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A package ``hep_probe`` (with a submodule ``part``) that counts how often its body runs."""
    package = tmp_path / "hep_probe"
    package.mkdir()
    (package / "__init__.py").write_text("import builtins\nbuiltins.hep_probe_runs = getattr(builtins, 'hep_probe_runs', 0) + 1\nVALUE = 42\n")
    (package / "part.py").write_text("from hep_probe import VALUE\nDOUBLE = 2 * VALUE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "hep_probe"
    import builtins

    for name in ("hep_probe", "hep_probe.part"):
        sys.modules.pop(name, None)
    if hasattr(builtins, "hep_probe_runs"):
        del builtins.hep_probe_runs


def _runs() -> int:
    import builtins

    return getattr(builtins, "hep_probe_runs", 0)


def test_a_deferred_module_is_imported_on_its_first_attribute_read_only(probe):
    defer_import(probe)
    import hep_probe  # finds the stand-in: reads its __spec__ only
    from hep_probe import VALUE  # a from-import reads an attribute: imports it

    assert _runs() == 1 and VALUE == 42
    assert not isinstance(sys.modules[probe], DeferredModule)
    assert hep_probe.VALUE == 42 and "VALUE" in dir(hep_probe)  # the stand-in answers from the real module
    assert _runs() == 1


def test_a_deferred_module_nobody_reads_is_never_imported(probe):
    defer_import(probe)
    import hep_probe  # noqa: F401

    assert _runs() == 0 and isinstance(sys.modules[probe], DeferredModule)


def test_a_submodule_of_a_deferred_package_imports_the_package_first(probe):
    defer_import(probe)
    import hep_probe.part

    assert hep_probe.part.DOUBLE == 84 and _runs() == 1


def test_concurrent_first_reads_import_the_module_once(probe):
    defer_import(probe)
    stand_in = sys.modules[probe]
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(stand_in.VALUE)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [42] * 8 and _runs() == 1


def test_defer_import_leaves_imported_and_missing_modules_alone(probe):
    import json as before

    defer_import("json")
    defer_import("hep_no_such_module")
    assert sys.modules["json"] is before and "hep_no_such_module" not in sys.modules


def test_great_expectations_imports_without_scipy_stats_altair_jsonschema_which_still_work():
    script = """
import json, sys
from hep_tasks.quality.gx import DEFERRED_MODULES, DeferredModule, gx, gxe
deferred = sorted(n for n in DEFERRED_MODULES if isinstance(sys.modules.get(n), DeferredModule))
loaded = sorted(n for n in ("scipy.stats._stats_py", "altair.vegalite", "jsonschema.validators") if n in sys.modules)
expectation = gxe.ExpectColumnKLDivergenceToBeLessThan(column="x", partition_object={"values": [1, 2], "weights": [0.5, 0.5]}, threshold=0.1)
from scipy import stats
import altair, jsonschema
jsonschema.validate({"a": 1}, {"type": "object"})
print(json.dumps({"deferred": deferred, "loaded": loaded, "entropy": float(stats.entropy([0.5, 0.5])),
                  "chart": altair.Chart.__name__, "real": [type(sys.modules[n]).__name__ for n in DEFERRED_MODULES],
                  "kl": type(expectation).__name__, "context": type(gx.get_context(mode="ephemeral")).__name__}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=110)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["deferred"] == ["altair", "jsonschema", "scipy.stats"]  # GX imported, none of the three
    assert result["loaded"] == []
    assert result["entropy"] == pytest.approx(0.6931471805599453)  # ln 2, from the real scipy.stats
    assert result["chart"] == "Chart" and result["real"] == ["module"] * 3
    assert result["kl"] == "ExpectColumnKLDivergenceToBeLessThan" and result["context"] == "EphemeralDataContext"


def test_stages_prefetch_modules_that_exist():
    """The CLI's prefetch swallows import errors (the stage's own import reports them): a misspelt
    module would only lose the overlap, silently."""
    import importlib.util

    from hep_tasks.stages import STAGES

    assert STAGES["quality"].prefetch == ("hep_tasks.quality.gx",)
    for stage in STAGES.values():
        for module in stage.prefetch:
            assert importlib.util.find_spec(module) is not None, (stage.name, module)
