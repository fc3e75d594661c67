"""Small kinematics helpers on numpy arrays (ARCHITECTURE §3).

Units: transverse momenta and energies in GeV, angles in radians, η dimensionless. All functions
broadcast like numpy ufuncs and return float64.

>>> round(float(delta_phi(3.1, -3.1)), 4)
-0.0832
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["delta_phi", "delta_r", "four_vector", "wrap_phi"]

_TWO_PI = 2.0 * np.pi


def delta_phi(phi1: ArrayLike, phi2: ArrayLike) -> NDArray[np.float64]:
    """Azimuthal difference ``phi1 - phi2`` in rad, wrapped into [-π, π].

    Any input angle is accepted (not only [-π, π]); differences already inside [-π, π] are
    returned unchanged, the others are shifted by a multiple of 2π.

    >>> round(float(delta_phi(3.1, -3.1)), 4)  # across the ±π seam
    -0.0832
    >>> round(float(delta_phi(-3.1, 3.1)), 4)
    0.0832
    >>> float(delta_phi(0.5, 0.25))
    0.25
    >>> round(float(delta_phi(7.0, 0.0)), 4)  # 7 - 2π
    0.7168
    """
    d = np.subtract(phi1, phi2, dtype=np.float64)
    outside = np.abs(d) > np.pi
    return np.where(outside, d - _TWO_PI * np.floor((d + np.pi) / _TWO_PI), d)


def wrap_phi(phi: ArrayLike) -> NDArray[np.float64]:
    """Angle φ (rad) wrapped into [-π, π]; angles already inside are returned unchanged.

    >>> wrap_phi([0.5, 3.5, -7.0]).round(4).tolist()
    [0.5, -2.7832, -0.7168]
    """
    return delta_phi(phi, 0.0)


def delta_r(
    eta1: ArrayLike, phi1: ArrayLike, eta2: ArrayLike, phi2: ArrayLike
) -> NDArray[np.float64]:
    """ΔR = sqrt(Δη² + Δφ²) with Δφ wrapped into [-π, π] (dimensionless).

    >>> float(delta_r(0.0, 0.0, 0.3, 0.4))
    0.5
    >>> round(float(delta_r(1.0, 3.1, 1.0, -3.1)), 4)
    0.0832
    """
    deta = np.subtract(eta1, eta2, dtype=np.float64)
    dphi = delta_phi(phi1, phi2)
    return np.sqrt(deta * deta + dphi * dphi)


def four_vector(
    pt: ArrayLike, eta: ArrayLike, phi: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Massless four-vector ``(E, Px, Py, Pz)`` in GeV from PT (GeV), η and φ (rad).

    E = PT·cosh η, Px = PT·cos φ, Py = PT·sin φ, Pz = PT·sinh η.

    >>> e, px, py, pz = four_vector(10.0, 0.0, 0.0)
    >>> float(e), float(px), float(py), float(pz)
    (10.0, 10.0, 0.0, 0.0)
    >>> e, px, py, pz = four_vector(2.0, np.log(2.0), np.pi / 2)
    >>> round(float(e), 6), round(float(px), 6), round(float(py), 6), round(float(pz), 6)
    (2.5, 0.0, 2.0, 1.5)
    """
    pt = np.asarray(pt, dtype=np.float64)
    eta = np.asarray(eta, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    return pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
