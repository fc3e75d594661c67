"""What to ingest: a simulate version, or user-given ROOT paths/globs/URLs with their process.

An input spec is either a simulate version id (empty = the latest one) or comma-separated items
``[process=]path-or-glob``. Without ``process=``, the process is read from the file or directory
name (``ttbar``/``tt``, ``wjets``/``wlnu``, ``qcd``).

>>> process_from_path("/data/ttbar_lepFilter_13TeV/f1.root")
'ttbar'
>>> process_from_path("root://eos.cern.ch//eos/wlnu/f2.root")
'wjets'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import fsspec

from hep_tasks.datasets import DatasetStore
from hep_tasks.errors import PipelineError
from hep_tasks.processes import LABELS, PROCESSES

SIMULATE = "simulate"
#: URL schemes a hep_pipeline run may read ROOT files from besides local paths: XRootD/EOS, object
#: stores, HDFS, HTTP(S) (each needs its fsspec package on every node).
ALLOWED_SCHEMES = ("root", "xroot", "s3", "s3a", "gs", "hdfs", "http", "https")
_VERSION = re.compile(r"^sim-[0-9a-f]{16}$")
#: name fragments that identify a process in a path, checked in this order per path component.
_ALIASES = {
    "ttbar": ("ttbar", "ttjets", "tt_", "tt-"),
    "wjets": ("wjets", "w+jets", "wlnu", "wlepnu", "w_jets"),
    "qcd": ("qcd",),
}


@dataclass(frozen=True)
class InputFile:
    url: str
    process: str

    @property
    def label(self) -> int:
        return LABELS[self.process]


def process_from_path(url: str) -> str | None:
    """The process a path names (innermost component first), or None."""
    for component in reversed(url.lower().split("/")):
        found = {p for p, aliases in _ALIASES.items() if any(a in component for a in aliases)}
        if len(found) == 1:
            return found.pop()
    return None


def names_files(spec: str) -> bool:
    """Whether ``spec`` names ROOT files, rather than a simulate version (empty: the latest one).

    >>> names_files("ttbar=/data/tt/*.root"), names_files("sim-0123456789abcdef"), names_files(" ")
    (True, False, False)
    """
    spec = spec.strip()
    return bool(spec) and not _VERSION.match(spec)


def resolve_inputs(store: DatasetStore, spec: str) -> tuple[list[InputFile], dict[str, str]]:
    """The files to ingest and the input-version record for the version id."""
    spec = spec.strip()
    if not names_files(spec):
        version = store.resolve(SIMULATE, spec)
        manifest = store.read_manifest(SIMULATE, version)
        files = [InputFile(store.url(SIMULATE, version, f["path"]), f["process"]) for f in manifest["files"]]
        return files, {SIMULATE: version}
    files = [f for item in spec.split(",") if item.strip() for f in expand_item(item.strip())]
    listing = []
    for f in files:
        fs, path = fsspec.core.url_to_fs(f.url)
        info = fs.info(path)
        listing.append([f.url, f.process, info.get("size"), str(info.get("mtime") or info.get("ETag") or "")])
    digest = hashlib.sha256(json.dumps(sorted(listing)).encode()).hexdigest()[:16]
    return files, {"files": digest}


def _split_process(item: str) -> tuple[str | None, str]:
    """(process named by a ``process=`` prefix or None, the path or URL)."""
    head, sep, rest = item.partition("=")
    if sep and "/" not in head and ":" not in head:
        if head not in PROCESSES:
            raise PipelineError(f"unknown process {head!r} in input {item!r} (known: {', '.join(PROCESSES)})")
        return head, rest
    return None, item


def check_input_locations(spec: str, roots: Sequence[str]) -> None:
    """Refuse, before any work, an item of ``spec`` (comma-separated ``[process=]path-or-glob-or-URL``)
    that is a URL of a scheme not in :data:`ALLOWED_SCHEMES`, a path with a ``..`` component, or a
    local path (``file://`` included) outside every directory of ``roots``, symlinks resolved.

    >>> check_input_locations("ttbar=/data/in/*.root,root://eos.cern.ch//eos/qcd/f.root", ["/data"])
    >>> check_input_locations("/data/../etc/passwd", ["/data"])
    Traceback (most recent call last):
    ...
    hep_tasks.errors.PipelineError: input '/data/../etc/passwd': '..' is not allowed in an input path
    """
    allowed = [os.path.realpath(r) for r in roots if r]
    for item in filter(None, (i.strip() for i in spec.split(","))):
        _, location = _split_process(item)
        scheme, sep, rest = location.partition("://")
        remote = bool(sep) and scheme.lower() != "file"
        if remote and scheme.lower() not in ALLOWED_SCHEMES:
            raise PipelineError(f"input {item!r}: URL scheme {scheme!r} is not allowed (allowed: "
                                f"{', '.join(ALLOWED_SCHEMES)}, or a local path)")  # fmt: skip
        path = rest if sep else location
        if ".." in PurePosixPath(path).parts:
            raise PipelineError(f"input {item!r}: '..' is not allowed in an input path")
        if remote:
            continue
        fixed = os.path.dirname(re.split(r"[*?\[]", path, maxsplit=1)[0]) if any(c in path for c in "*?[") else path
        real = os.path.realpath(fixed or ".")
        if not any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in allowed):
            raise PipelineError(f"input {item!r} is outside the data root and the allowed input roots "
                                f"({', '.join(allowed) or 'none'}; HEP_INPUT_ROOTS adds directories)")  # fmt: skip


def expand_item(item: str) -> list[InputFile]:
    process, item = _split_process(item)
    fs, path = fsspec.core.url_to_fs(item)
    matches = sorted(fs.glob(path)) if any(c in path for c in "*?[") else [path] if fs.exists(path) else []
    if not matches:
        raise PipelineError(f"input {item!r} matches no file")
    out = []
    for match in matches:
        url = fs.unstrip_protocol(match) if "://" in item else match
        proc = process or process_from_path(url)
        if proc is None:
            raise PipelineError(
                f"cannot tell the process of {url}: name it with a prefix, e.g. ttbar={item} "
                f"(known: {', '.join(PROCESSES)})"
            )
        out.append(InputFile(url, proc))
    return out
