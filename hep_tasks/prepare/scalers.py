"""Feature scalers fitted on the training split only, saved as a small JSON artifact.

- HLF: MinMax per feature, ``(x - min) / (max - min)`` (a constant feature maps to 0).
- Particles: standardisation per feature over real particles only, ``(x - mean) / std``
  (a constant feature keeps std = 1). Padding is a training-time concern and never enters the fit.

Training, evaluation and scoring load the artifact of the prepared version they use.

>>> s = MinMaxScaler(("a",), np.array([0.0]), np.array([4.0]))
>>> s.transform(np.array([[1.0], [4.0]])).ravel().tolist()
[0.25, 1.0]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

ARTIFACT = "scalers.json"


@dataclass(frozen=True)
class MinMaxScaler:
    features: tuple[str, ...]
    minimum: np.ndarray
    maximum: np.ndarray

    def transform(self, values: np.ndarray) -> np.ndarray:
        span = self.maximum - self.minimum
        scaled = values - self.minimum  # then in place: one temporary, the same bits
        scaled /= np.where(span > 0, span, 1.0)
        return scaled

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "min": self.minimum.tolist(), "max": self.maximum.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MinMaxScaler:
        return cls(tuple(d["features"]), np.asarray(d["min"], dtype=np.float64), np.asarray(d["max"], dtype=np.float64))


@dataclass(frozen=True)
class StandardScaler:
    features: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    def transform(self, values: np.ndarray) -> np.ndarray:
        scaled = values - self.mean  # then in place: one temporary, the same bits
        scaled /= np.where(self.std > 0, self.std, 1.0)
        return scaled

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return values * np.where(self.std > 0, self.std, 1.0) + self.mean

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StandardScaler:
        return cls(tuple(d["features"]), np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64))


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations of the rows of a (n, k) array, per column; two
    are merged exactly as if fitted on the rows of both (Chan et al.'s parallel update), so the
    standardisation is fitted batch by batch on the executors and merged on the driver.

    >>> a, b = Moments.of(np.array([[1.0], [3.0]])), Moments.of(np.array([[5.0]]))
    >>> merged = a.merge(b)
    >>> int(merged.n), merged.mean.tolist(), merged.std.tolist()
    (3, [3.0], [1.632993161855452])
    """

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray) -> Moments:
        if not len(rows):
            return cls(0, np.zeros(rows.shape[1]), np.zeros(rows.shape[1]))
        mean = rows.mean(axis=0)
        return cls(len(rows), mean, ((rows - mean) ** 2).sum(axis=0))

    def merge(self, other: Moments) -> Moments:
        if not other.n:
            return self
        if not self.n:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return Moments(n, self.mean + delta * (other.n / n), self.m2 + other.m2 + delta**2 * (self.n * other.n / n))

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (as Spark's ``stddev_pop``)."""
        return np.sqrt(self.m2 / self.n)


@dataclass(frozen=True)
class FeatureScalers:
    """The fitted scalers of one prepared version, with what they were fitted on."""

    hlf: MinMaxScaler
    particles: StandardScaler
    fitted_on: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"hlf": self.hlf.to_dict(), "particles": self.particles.to_dict(), "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureScalers:
        return cls(MinMaxScaler.from_dict(d["hlf"]), StandardScaler.from_dict(d["particles"]), dict(d["fitted_on"]))

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def loads(cls, text: str) -> FeatureScalers:
        return cls.from_dict(json.loads(text))
