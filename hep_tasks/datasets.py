"""Versioned datasets (ARCHITECTURE §2): content-derived versions, manifests, atomic commits.

Layout under the data root::

    <data_root>/<stage>/<version>/            a committed version (visible once _manifest.json exists)
    <data_root>/<stage>/<version>/_manifest.json
    <data_root>/<stage>/_tmp/<version>-<attempt>/   work in progress, never read
    <data_root>/<stage>/_tmp/<version>.scratch/     state kept across attempts (training checkpoints)
    <data_root>/<stage>/latest                text file naming the newest version that passed its checks
    <data_root>/_runs/<run_key>.json          what a job run produced (read by the Airflow operator)

A version id is a hash of (stage, input versions, stage parameters, code version): the same inputs and
parameters give the same id, so a rerun finds the committed version and does nothing.

On a local file system the commit is one ``os.rename`` of the temporary directory, atomic and refused
when another attempt committed the same version first. On object stores (s3a://, ...) rename is a
copy; there the manifest is written last and is the commit marker that readers look for.

On a local file system each attempt holds an exclusive ``flock`` on ``_tmp/<version>-<attempt>.lock``
while it lives; the kernel releases it when the process dies, even by SIGKILL. ``begin`` removes the
temporary directories of the stage's attempts whose lock nobody holds any more (killed jobs), never a
live one's.

>>> version_id("simulate", {}, {"events_per_file": 10}, "0.1.0+abc")[:4]
'sim-'
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import hashlib
import json
import logging
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import fsspec

from hep_tasks import __version__
from hep_tasks.errors import PipelineError

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
LATEST = "latest"
TMP = "_tmp"
LOCK = ".lock"
RUNS = "_runs"
#: Attempt locks held by this process (see :meth:`DatasetStore._attempt_lock`).
_HELD_LOCKS: set[str] = set()


class DatasetError(PipelineError):
    """A dataset version is missing, unreadable or not usable; the message names it."""


def code_version(module: str = "hep_tasks") -> str:
    """Package version plus a hash of the sources ``module`` runs, e.g. ``0.1.0+3f2a9c1d0b``.

    The hash covers ``module`` and every ``hep_tasks`` module it imports, directly or not
    (imports inside functions included), except the configuration (parameters enter version ids
    by value) and the package's own ``__init__`` (its version is the prefix): a change to the
    training code does not change the version of an ingest that never runs it. ``"hep_tasks"``
    (default) hashes the whole package.
    """
    return f"{__version__}+{_source_hash(module)}"


_PACKAGE_ROOT = Path(__file__).resolve().parent
#: Modules left out of a stage's code hash (see :func:`code_version`).
_NOT_HASHED = frozenset({"hep_tasks", "hep_tasks.config"})


def _module_file(name: str) -> Path | None:
    """The source file of a ``hep_tasks`` module or package, or None."""
    parts = name.split(".")[1:]
    base = _PACKAGE_ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(name: str, path: Path) -> set[str]:
    """``hep_tasks`` modules that the source of ``name`` imports (statically, anywhere in the file)."""
    stat = path.stat()
    return set(_parsed_imports(name, path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=1024)
def _parsed_imports(name: str, path: Path, mtime_ns: int, size: int) -> frozenset[str]:
    """:func:`_imported_modules` of one state of the file (parsing is most of a code version's cost)."""
    import ast

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    out = set()
    for module in found:
        parts = module.split(".")
        if parts[0] == "hep_tasks":  # the module and the packages it lives in
            out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(m for m in out - _NOT_HASHED if _module_file(m) is not None)


def _source_hash(module: str) -> str:
    files: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        path = _module_file(name)
        if name in files or path is None:
            continue
        files[name] = path
        if name == "hep_tasks" and module == "hep_tasks":
            files.update({p.relative_to(_PACKAGE_ROOT).as_posix(): p for p in _PACKAGE_ROOT.rglob("*.py")})
            break
        pending.extend(_imported_modules(name, path) - set(files))
    digest = hashlib.sha256()
    for path in sorted(set(files.values())):
        digest.update(path.relative_to(_PACKAGE_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def version_id(stage: str, inputs: Mapping[str, str], params: Mapping[str, Any], code: str) -> str:
    """Content-derived version id: ``<stage prefix>-<16 hex digits>``."""
    payload = json.dumps(
        {"stage": stage, "inputs": dict(inputs), "params": dict(params), "code": code},
        sort_keys=True,
        default=str,
    )
    return f"{stage[:3]}-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


def hadoop_url(url: str) -> str:
    """The URL of a data-root location for Spark and for the Python tasks (fsspec, pyarrow, uproot):
    plain paths become ``file://`` URLs, not percent-encoded, since Hadoop's ``Path`` quotes them
    itself and the Python readers take them as they are (``a%20b`` would be another directory)."""
    return url if "://" in url else "file://" + Path(url).resolve().as_posix()


@dataclass(frozen=True)
class DatasetStore:
    """The versioned datasets under one data root (a local path or an fsspec URL)."""

    root: str

    @cached_property
    def _fs_and_path(self) -> tuple[fsspec.AbstractFileSystem, str]:
        return fsspec.core.url_to_fs(self.root)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._fs_and_path[0]

    @property
    def is_local(self) -> bool:
        return "file" in _protocols(self.fs)

    def path(self, *parts: str) -> str:
        """File-system path (no protocol) of ``parts`` under the root."""
        return posixpath.join(self._fs_and_path[1], *parts)

    def url(self, *parts: str) -> str:
        """URL of ``parts`` under the root, as Spark wants it."""
        return hadoop_url(self.path(*parts)) if self.is_local else self.fs.unstrip_protocol(self.path(*parts))
    # -- reading -------------------------------------------------------------------------------
    def exists(self, stage: str, version: str) -> bool:
        return self.fs.exists(self.path(stage, version, MANIFEST))

    def read_manifest(self, stage: str, version: str) -> dict[str, Any]:
        path = self.path(stage, version, MANIFEST)
        try:
            with self.fs.open(path, "r") as f:
                return json.load(f)
        except FileNotFoundError:
            found = ", ".join(self.versions(stage)) or "none"
            raise DatasetError(
                f"{stage} version {version!r} does not exist under {self.root} (committed versions: {found})"
            ) from None

    def versions(self, stage: str) -> list[str]:
        """Committed versions of a stage, oldest first."""
        try:
            entries = self.fs.ls(self.path(stage), detail=False)
        except FileNotFoundError:
            return []
        found = [posixpath.basename(e.rstrip("/")) for e in entries]
        found = [v for v in found if not v.startswith("_") and v != LATEST and self.exists(stage, v)]
        return sorted(found, key=lambda v: self.read_manifest(stage, v)["created_at"])

    def latest(self, stage: str) -> str | None:
        """The version the ``latest`` pointer names (moved only after the quality check passed)."""
        try:
            with self.fs.open(self.path(stage, LATEST), "r") as f:
                return f.read().strip() or None
        except FileNotFoundError:
            return None

    def passed(self, stage: str) -> list[str]:
        """Committed versions whose quality check passed, oldest first."""
        return [v for v in self.versions(stage) if self.read_manifest(stage, v).get("quality", {}).get("status") == "passed"]

    def resolve(self, stage: str, version: str = "") -> str:
        """``version`` itself if committed; when empty, the ``latest`` (published) version, else the
        newest one that passed its check; raises DatasetError."""
        if not version:
            version = self.latest(stage) or next(reversed(self.passed(stage)), "")
            if not version:
                raise DatasetError(
                    f"no {stage} version has passed its checks under {self.root} yet: run {stage} first "
                    "or name a version"
                )
        if not self.exists(stage, version):
            self.read_manifest(stage, version)  # raises with the list of versions
        return version

    def scratch(self, stage: str, version: str, *parts: str) -> str:
        """Path of work that survives attempts of ``version`` (checkpoints), never read as data:
        ``<stage>/_tmp/<version>.scratch/...``; removed once the version is committed."""
        return self.path(stage, TMP, f"{version}.scratch", *parts)

    # -- writing -------------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Raise OSError unless files can be created under the root (checked before Spark starts)."""
        self.fs.makedirs(self.path(), exist_ok=True)
        probe = self.path(f".write-probe-{uuid.uuid4().hex[:8]}")
        with self.fs.open(probe, "w") as f:
            f.write("ok")
        self.fs.rm(probe)

    def write_text_atomic(self, path: str, text: str) -> None:
        """Write ``text`` to ``path`` (a store path) through a temporary file and a rename."""
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with self.fs.open(tmp, "w") as f:
            f.write(text)
        if self.is_local:
            os.replace(tmp, path)
        else:
            self.fs.mv(tmp, path)

    def set_latest(self, stage: str, version: str) -> None:
        self.fs.makedirs(self.path(stage), exist_ok=True)
        self.write_text_atomic(self.path(stage, LATEST), version + "\n")
        log.info("%s latest -> %s", stage, version)

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold ``<root>/_<name>.lock`` exclusively (processes of this machine or sharing its file
        system wait for each other); a no-op on object stores, which have no locks."""
        if not self.is_local:
            yield
            return
        self.fs.makedirs(self.path(), exist_ok=True)
        fd = os.open(self.path(f"_{name}{LOCK}"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock; the file stays for the next one

    def update_manifest(self, stage: str, version: str, **fields: Any) -> dict[str, Any]:
        """Rewrite the manifest of a committed version with ``fields`` replaced (atomically)."""
        manifest = self.read_manifest(stage, version) | fields
        self.write_text_atomic(self.path(stage, version, MANIFEST), _dumps(manifest))
        return manifest

    def write_run_record(self, run_key: str, record: Mapping[str, Any]) -> str:
        """Record what a job run produced, for the process that launched it (spark-submit is opaque)."""
        self.fs.makedirs(self.path(RUNS), exist_ok=True)
        path = self.path(RUNS, f"{run_key}.json")
        self.write_text_atomic(path, _dumps(record))
        return path

    def read_run_record(self, run_key: str) -> dict[str, Any]:
        with self.fs.open(self.path(RUNS, f"{run_key}.json"), "r") as f:
            return json.load(f)

    def find_run_record(self, run_key: str) -> dict[str, Any] | None:
        try:
            return self.read_run_record(run_key)
        except FileNotFoundError:
            return None

    @contextmanager
    def begin(self, stage: str, version: str) -> Iterator[PendingVersion]:
        """Open a temporary location for ``version``; commit it with :meth:`PendingVersion.commit`.

        If the block raises (or the process dies), nothing becomes visible; the temporary
        directory is removed on a Python error, ignored by every reader otherwise, and on a local
        file system removed by the stage's next ``begin`` once its process has died.
        """
        attempt = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        pending = PendingVersion(self, stage, version, self.path(stage, TMP, f"{version}-{attempt}"))
        with self._attempt_lock(pending.path):
            self._remove_abandoned_attempts(stage)
            self.fs.makedirs(pending.path, exist_ok=True)
            try:
                yield pending
                if not pending.committed:
                    raise DatasetError(f"{stage} version {version} was written but never committed")
            finally:
                if self.fs.exists(pending.path):
                    self.fs.rm(pending.path, recursive=True)

    @contextmanager
    def _attempt_lock(self, attempt_path: str) -> Iterator[None]:
        """Hold ``<attempt_path>.lock`` locked while the attempt lives (local file systems only)."""
        if not self.is_local:
            yield
            return
        os.makedirs(posixpath.dirname(attempt_path), exist_ok=True)
        lock = f"{attempt_path}{LOCK}"
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _HELD_LOCKS.add(lock)
            yield
        finally:
            _HELD_LOCKS.discard(lock)
            Path(lock).unlink(missing_ok=True)
            os.close(fd)

    def _remove_abandoned_attempts(self, stage: str) -> None:
        """Remove the temporary directories of ``stage``'s attempts whose process has died."""
        if not self.is_local:
            return
        for lock in Path(self.path(stage, TMP)).glob(f"*{LOCK}"):
            if str(lock) in _HELD_LOCKS:  # flock emulated by POSIX locks (NFS) does not exclude its own process
                continue
            try:
                fd = os.open(lock, os.O_RDWR)
            except FileNotFoundError:  # its attempt just ended
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live attempt
                os.close(fd)
                continue
            attempt = str(lock)[: -len(LOCK)]
            log.warning("removing %s, left by an attempt that did not finish", attempt)
            shutil.rmtree(attempt, ignore_errors=True)
            lock.unlink(missing_ok=True)
            os.close(fd)


@dataclass
class PendingVersion:
    """A version being written; ``path``/``url`` is the temporary location to write into."""

    store: DatasetStore
    stage: str
    version: str
    path: str
    committed: bool = False

    @property
    def url(self) -> str:
        return hadoop_url(self.path) if self.store.is_local else self.store.fs.unstrip_protocol(self.path)
    def commit(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Write the manifest and make the version visible atomically; returns the manifest.

        When another attempt committed the same version first, its manifest is returned (the
        content is the same by construction) and this attempt's files are dropped.
        """
        store, final = self.store, self.store.path(self.stage, self.version)
        manifest = {
            "version": self.version,
            "stage": self.stage,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "quality": {"status": "pending"},
            **manifest,
        }
        text = _dumps(manifest)
        if store.is_local:
            with store.fs.open(posixpath.join(self.path, MANIFEST), "w") as f:
                f.write(text)
            try:
                os.rename(self.path, final)  # refused if another attempt's directory is there
            except OSError:
                if not store.exists(self.stage, self.version):
                    raise
                return self._reuse_committed()
        else:
            if store.exists(self.stage, self.version):  # a copy must not merge into a committed version
                return self._reuse_committed()
            store.fs.mv(self.path, final, recursive=True)
            with store.fs.open(posixpath.join(final, MANIFEST), "w") as f:
                f.write(text)
        self.committed = True
        log.info("committed %s version %s at %s", self.stage, self.version, store.url(self.stage, self.version))
        return manifest

    def _reuse_committed(self) -> dict[str, Any]:
        log.info("%s version %s was committed by another attempt", self.stage, self.version)
        self.committed = True
        return self.store.read_manifest(self.stage, self.version)


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"


def summary(store: DatasetStore, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The small description of a version passed along as XCom and Asset-event ``extra``."""
    stage, version = manifest["stage"], manifest["version"]
    return {
        "stage": stage,
        "version": version,
        "path": store.url(stage, version),
        "rows": manifest.get("counts", {}),
        "quality": manifest.get("quality", {}).get("status", "pending"),
        "created_at": manifest["created_at"],
    }
