"""Per-epoch training checkpoints of one model, kept across attempts of a train version.

Layout under ``<data_root>/train/_tmp/<version>.scratch/<model>/`` (any fsspec file system):

- ``epoch-NNNN.npz``   model weights, optimizer variables and the best weights so far (NumPy
  ``.npz``, loaded with ``allow_pickle=False``: nothing is unpickled);
- ``state.json``       the commit marker, written last and atomically: completed epochs, history,
  early-stopping state, the ``.npz`` it belongs to and the variable shapes;
- ``model.keras`` and ``result.json`` once the model is finished (a rerun skips it).

A checkpoint that cannot be read or does not fit the model (other shapes) is ignored with a
warning, and training starts from scratch.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

STATE = "state.json"
RESULT = "result.json"
MODEL_FILE = "model.keras"


@dataclass
class TrainingState:
    """What survives an epoch: counters, history, early stopping, and the variables' values."""

    epoch: int = 0  # completed epochs
    history: dict[str, list[float]] = field(default_factory=dict)
    best_val_loss: float = float("inf")
    best_epoch: int = 0
    wait: int = 0
    weights: list[np.ndarray] = field(default_factory=list)
    optimizer: list[np.ndarray] = field(default_factory=list)
    best_weights: list[np.ndarray] = field(default_factory=list)

    def shapes(self) -> dict[str, list[list[int]]]:
        return {
            "weights": [list(a.shape) for a in self.weights],
            "optimizer": [list(a.shape) for a in self.optimizer],
        }


class CheckpointStore:
    """Saves and loads :class:`TrainingState` of one model under ``directory`` of ``fs``."""

    def __init__(self, fs: Any, directory: str):
        self.fs = fs
        self.directory = directory.rstrip("/")

    def _path(self, name: str) -> str:
        return posixpath.join(self.directory, name)

    def _write_atomic(self, name: str, data: bytes) -> None:
        tmp = self._path(f".{name}.{uuid.uuid4().hex[:8]}.tmp")
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, self._path(name))

    def save(self, state: TrainingState) -> None:
        """Write the epoch's arrays, then the state file that points at them; drop older arrays."""
        self.fs.makedirs(self.directory, exist_ok=True)
        arrays = {f"weights/{i}": a for i, a in enumerate(state.weights)}
        arrays |= {f"optimizer/{i}": a for i, a in enumerate(state.optimizer)}
        arrays |= {f"best/{i}": a for i, a in enumerate(state.best_weights)}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        name = f"epoch-{state.epoch:04d}.npz"
        self._write_atomic(name, buffer.getvalue())
        meta = {
            "epoch": state.epoch,
            "history": state.history,
            "best_val_loss": state.best_val_loss,
            "best_epoch": state.best_epoch,
            "wait": state.wait,
            "arrays": name,
            "shapes": state.shapes(),
        }
        self._write_atomic(STATE, json.dumps(meta, indent=1).encode())
        for old in self.fs.glob(self._path("epoch-*.npz")):
            if posixpath.basename(old) != name:
                self.fs.rm(old)

    def load(self, expected_shapes: dict[str, list[list[int]]]) -> TrainingState | None:
        """The last saved state, or None when there is none or it is unusable (with a warning)."""
        if not self.fs.exists(self._path(STATE)):
            return None
        try:
            with self.fs.open(self._path(STATE), "rb") as f:
                meta = json.load(f)
            with self.fs.open(self._path(meta["arrays"]), "rb") as f:
                with np.load(io.BytesIO(f.read()), allow_pickle=False) as npz:
                    arrays = {k: npz[k] for k in npz.files}

            def group(prefix: str) -> list[np.ndarray]:
                n = sum(1 for k in arrays if k.startswith(prefix + "/"))
                return [arrays[f"{prefix}/{i}"] for i in range(n)]

            state = TrainingState(
                epoch=int(meta["epoch"]),
                history={k: [float(x) for x in v] for k, v in meta["history"].items()},
                best_val_loss=float(meta["best_val_loss"]),
                best_epoch=int(meta["best_epoch"]),
                wait=int(meta["wait"]),
                weights=group("weights"),
                optimizer=group("optimizer"),
                best_weights=group("best"),
            )
        except Exception as err:  # noqa: BLE001 - any damage means: start again
            log.warning("ignoring the unreadable checkpoint in %s (%s: %s); training starts from scratch",
                        self.directory, type(err).__name__, err)
            return None
        if state.shapes() != expected_shapes:
            log.warning("ignoring the checkpoint in %s: its variables do not fit the model "
                        "(shapes %s, expected %s); training starts from scratch",
                        self.directory, state.shapes(), expected_shapes)
            return None
        return state

    # -- the finished model ----------------------------------------------------------------------
    def finished(self) -> dict[str, Any] | None:
        """The result of a finished model (``result.json``), or None."""
        if not self.fs.exists(self._path(RESULT)):
            return None
        with self.fs.open(self._path(RESULT), "rb") as f:
            return json.load(f)

    def save_model(self, model_file: str) -> None:
        """Store the trained model (a local ``.keras`` file) next to the checkpoints."""
        self.fs.makedirs(self.directory, exist_ok=True)
        with open(model_file, "rb") as f:
            self._write_atomic(MODEL_FILE, f.read())

    def finish(self, result: dict[str, Any]) -> None:
        """Mark the model finished with its result (written after the model file)."""
        self._write_atomic(RESULT, json.dumps(result, indent=1, default=float).encode())

    @property
    def model_path(self) -> str:
        return self._path(MODEL_FILE)
