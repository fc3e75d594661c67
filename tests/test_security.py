"""Security: models load in Keras safe mode, nothing unpickles or evaluates data, and the repository
holds no credentials.

- A ``.keras`` model with a ``Lambda`` layer (arbitrary Python code) is refused by the code every
  stage loads models with, naming the model.
- A scan of the Python sources (``hep_tasks``, ``dags``, ``plugins``) finds no deserializer that can
  run code: pickle, cloudpickle, dill, joblib, marshal, shelve, ``pandas.read_pickle``,
  ``numpy.load`` without ``allow_pickle=False``, ``yaml.load`` without a safe loader, ``torch.load``
  without ``weights_only=True``, Keras ``load_model`` without ``safe_mode=True``, ``eval``/``exec``.
  The scanner itself is checked on a snippet with each of these.
- No tracked file holds a password in a URL, an AWS key, a private key or a token; documented
  placeholders (``<password>``, ``${VAR}``, ``$VAR``, ``{format}``, ``…``) are allowed.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("hep_tasks", "dags", "plugins")


# --- Keras safe mode ----------------------------------------------------------------------------------


def _save_model(path: Path, with_lambda: bool) -> None:
    import keras

    features = keras.Input((14,), name="hlf")
    hidden = keras.layers.Lambda(lambda x: x * 2.0)(features) if with_lambda else features
    keras.Model(features, keras.layers.Dense(3)(hidden), name="hlf").save(path)


def test_a_model_with_python_code_is_refused_naming_it(tmp_path):
    from hep_tasks.score.predict import (
        UnsafeModelError,
        load_logits_function,
        load_model_safely,
    )

    _save_model(tmp_path / "plain.keras", with_lambda=False)
    assert load_model_safely(str(tmp_path / "plain.keras"), "plain").name == "hlf"
    _save_model(tmp_path / "lambda.keras", with_lambda=True)
    with pytest.raises(UnsafeModelError, match=r"^model .*/lambda\.keras refused: it holds Python code that Keras "
                       r"safe mode does not load \(Requested the deserialization of a `Lambda` layer"):  # fmt: skip
        load_logits_function(str(tmp_path), str(tmp_path / "lambda.keras"))


# --- deserializers that run code ----------------------------------------------------------------------

#: Modules whose loading runs code from the data.
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "marshal", "shelve"}
#: Calls that run code from their input, by the last part(s) of their dotted name.
UNSAFE_CALLS = {"eval", "exec", "read_pickle", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all"}
#: Loaders that are safe only with a keyword set to a constant: name -> (keyword, required values).
GUARDED_CALLS = {
    "load_model": ("safe_mode", {True}),
    "np.load": ("allow_pickle", {False}),
    "numpy.load": ("allow_pickle", {False}),
    "torch.load": ("weights_only", {True}),
    "yaml.load": ("Loader", {"SafeLoader", "CSafeLoader", "yaml.SafeLoader", "yaml.CSafeLoader"}),
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _keyword_value(call: ast.Call, name: str) -> object:
    for keyword in call.keywords:
        if keyword.arg == name:
            value = keyword.value
            return value.value if isinstance(value, ast.Constant) else _dotted(value)
    return None


def unsafe_deserialization(source: str, filename: str) -> list[str]:
    """Each import of an unsafe module and each unsafe or unguarded call in ``source``: 'file:line: what'."""
    findings = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if module.split(".")[0] in UNSAFE_MODULES:
                    findings.append(f"{filename}:{node.lineno}: imports {module}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if any(name == call or name.endswith("." + call) for call in UNSAFE_CALLS):
            findings.append(f"{filename}:{node.lineno}: calls {name}")
        for guarded, (keyword, safe) in GUARDED_CALLS.items():
            if (name == guarded or name.endswith("." + guarded)) and _keyword_value(node, keyword) not in safe:
                findings.append(f"{filename}:{node.lineno}: calls {name} without {keyword}={' or '.join(map(str, safe))}")
    return findings


UNSAFE_SNIPPET = """
import pickle
from cloudpickle import loads
import joblib, yaml, numpy as np, keras, torch, pandas as pd
pickle.loads(b"")
np.load("x.npy", allow_pickle=True)
np.load("y.npy")
yaml.load(text)
yaml.load(text, Loader=yaml.SafeLoader)
keras.saving.load_model("m.keras")
keras.models.load_model("m.keras", safe_mode=False)
keras.saving.load_model("m.keras", safe_mode=True)
torch.load("w.pt")
pd.read_pickle("f.pkl")
eval("1 + 1")
"""


def test_the_scanner_finds_each_unsafe_deserializer():
    findings = unsafe_deserialization(UNSAFE_SNIPPET, "snippet.py")
    assert [f.split(": ", 1)[1] for f in findings] == [
        "imports pickle",
        "imports cloudpickle",
        "imports joblib",
        "calls np.load without allow_pickle=False",
        "calls np.load without allow_pickle=False",
        "calls yaml.load without Loader=" + " or ".join(map(str, GUARDED_CALLS["yaml.load"][1])),
        "calls keras.saving.load_model without safe_mode=True",
        "calls keras.models.load_model without safe_mode=True",
        "calls torch.load without weights_only=True",
        "calls pd.read_pickle",
        "calls eval",
    ]
    assert [int(f.split(":")[1]) for f in findings] == [2, 3, 4, 6, 7, 8, 10, 11, 13, 14, 15]


def test_no_source_deserializes_data_unsafely():
    files = [p for folder in SOURCES for p in sorted((REPO / folder).rglob("*.py"))]
    assert len(files) > 50
    findings = [f for p in files for f in unsafe_deserialization(p.read_text(), str(p.relative_to(REPO)))]
    assert findings == []


# --- credentials in the repository ---------------------------------------------------------------------

#: Secrets by kind; each pattern is written so that this file does not match it.
SECRET_PATTERNS = {
    "password in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"`]+:([^/\s@'\"`]+)@"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?([A-Za-z0-9/+=]{40})\b"),
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
}
#: What a documented placeholder for a password looks like.
PLACEHOLDER = re.compile(r"^(?:<[^>]*>|\$\{[^}]*\}|\$[A-Za-z_]\w*|\{[^}]*\}|…|\.\.\.|\*+|%s|x+|password)$")
#: Known fake values: (file, value) -> why it is not a credential.
FAKE = {("tests/test_deploy.py", "p"): "the compose file rendered with POSTGRES_PASSWORD=p"}


def find_secrets(text: str, filename: str) -> list[str]:
    """'file:line: kind' for each credential-looking string in ``text`` that is not a placeholder."""
    findings = []
    for kind, pattern in SECRET_PATTERNS.items():
        for match in pattern.finditer(text):
            value = match.group(1) if pattern.groups else match.group(0)
            if pattern.groups and (PLACEHOLDER.match(value) or (filename, value) in FAKE):
                continue
            findings.append(f"{filename}:{text.count(chr(10), 0, match.start()) + 1}: {kind}")
    return findings


def test_the_secret_scan_finds_secrets_and_allows_placeholders():
    aws_key = "AKIA" + "Q" * 16
    samples = [
        "postgresql+psycopg2://airflow:" + "hunter2" + "@db:5432/airflow",
        f"key = {aws_key}",
        "-----BEGIN " + "RSA PRIVATE KEY-----",
        "aws_secret_access_key = " + "a" * 40,
        "gh" + "p_" + "A" * 36,
    ]
    assert [f.split(": ", 1)[1] for f in find_secrets("\n".join(samples), "f")] == [
        "password in a URL", "AWS access key id", "AWS secret access key", "private key", "GitHub token",
    ]  # fmt: skip
    placeholders = ["postgresql://airflow:<password>@db-host:5432/airflow", "s3a://user:${SECRET}@bucket/x",
                    "postgresql://airflow:$POSTGRES_PASSWORD@db/airflow", "redis://:{password}@host:6379/0"]  # fmt: skip
    assert find_secrets("\n".join(placeholders), "f") == []


def test_no_tracked_file_holds_credentials():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    findings = []
    for name in filter(None, tracked):
        path = REPO / name
        if not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        data = path.read_bytes()
        if b"\0" not in data[:8192]:  # text files only
            findings += find_secrets(data.decode("utf-8", errors="replace"), name)
    assert len(tracked) > 100
    assert findings == []
