"""Numba kernels for the pairwise ΔR work of ARCHITECTURE §3, over flat arrays + offsets.

Every collection is a set of flat columns plus ``offsets`` (int64, ``n_events + 1``): the
members of event ``k`` are ``offsets[k]:offsets[k + 1]``. Query and cone collections passed to
one kernel must describe the same events; cone collections are sorted by η inside each event
(:func:`sort_within_events`), so that a query visits only its η window.
Units: PT/ET in GeV, φ in rad.

The loops here run over the pairs of one event inside compiled code; nothing loops over events
in Python.

>>> import numpy as np
>>> off = np.array([0, 2], dtype=np.int64)
>>> eta = np.array([0.0, 0.1])  # sorted by η inside the event
>>> phi = np.array([0.0, 0.0]); pt = np.array([10.0, 5.0])
>>> cone_sums(off, eta, phi, off, eta, phi, pt, 0.3).tolist()
[15.0, 15.0]
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

from .kinematics import wrap_phi

__all__ = [
    "sort_within_events",
    "cone_sums",
    "isolation",
    "first_index_per_event",
    "keep_unmatched_capped",
]

_PI = math.pi
_TWO_PI = 2.0 * math.pi


@numba.njit(cache=True, inline="always")
def _wrap(d: float) -> float:
    """Angle difference (rad) wrapped into [-π, π], as ``kinematics.delta_phi`` does."""
    if d > _PI or d < -_PI:
        d = d - _TWO_PI * math.floor((d + _PI) / _TWO_PI)
    return d


@numba.njit(cache=True, inline="always")
def _abs_delta_phi(phi1: float, phi2: float) -> float:
    """|Δφ| in [0, π] (rad) for two angles that are both inside [-π, π]."""
    d = abs(phi1 - phi2)
    if d > _PI:
        d = _TWO_PI - d
    return d


@numba.njit(cache=True, nogil=True)
def sort_within_events(offsets: NDArray[np.int64], key: NDArray[np.float64]) -> NDArray[np.int64]:
    """Permutation (flat indices) ordering the members of each event by ascending ``key``.

    Stable; events keep their place. Used to sort cone collections by η once per batch.

    >>> sort_within_events(np.array([0, 3, 5]), np.array([0.2, -1.0, 0.1, 5.0, 4.0])).tolist()
    [1, 2, 0, 4, 3]
    """
    perm = np.empty(key.shape[0], dtype=np.int64)
    for ev in range(offsets.shape[0] - 1):
        start = offsets[ev]
        stop = offsets[ev + 1]
        perm[start:stop] = start + np.argsort(key[start:stop], kind="mergesort")
    return perm


@numba.njit(cache=True, nogil=True)
def cone_sums(
    q_offsets: NDArray[np.int64],
    q_eta: NDArray[np.float64],
    q_phi: NDArray[np.float64],
    c_offsets: NDArray[np.int64],
    c_eta: NDArray[np.float64],
    c_phi: NDArray[np.float64],
    c_pt: NDArray[np.float64],
    cone: float,
) -> NDArray[np.float64]:
    """For each query particle, Σ ``c_pt`` (GeV) of the same event's members with ΔR < ``cone``.

    All φ must lie in [-π, π] (see ``kinematics.wrap_phi``; :func:`isolation` takes care of
    it). The cone collection must be sorted by ascending η inside each event (see
    :func:`sort_within_events`): each query only visits its η window (η − cone, η + cone).
    Queries may come in any order; when they too are sorted by η the window slides forward
    (no search at all), otherwise it is found again by binary search. No self-subtraction
    here: a query that is itself a member of the cone collection counts its own PT (ΔR = 0).
    """
    out = np.zeros(q_eta.shape[0], dtype=np.float64)
    cone2 = cone * cone
    n_events = q_offsets.shape[0] - 1
    for ev in range(n_events):
        c0 = c_offsets[ev]
        c1 = c_offsets[ev + 1]
        if c0 == c1:
            continue
        lo = c0
        hi = c0
        previous = np.nan
        for i in range(q_offsets[ev], q_offsets[ev + 1]):
            eta = q_eta[i]
            phi = q_phi[i]
            low = eta - cone
            high = eta + cone
            if not eta >= previous:  # first query, unsorted queries or NaN: search again
                lo = c0 + np.searchsorted(c_eta[c0:c1], low, side="right")
                hi = lo
            previous = eta
            while lo < c1 and c_eta[lo] <= low:
                lo += 1
            if hi < lo:
                hi = lo
            while hi < c1 and c_eta[hi] < high:
                hi += 1
            total = 0.0
            for j in range(lo, hi):
                deta = c_eta[j] - eta
                dphi = _abs_delta_phi(c_phi[j], phi)
                total += c_pt[j] if deta * deta + dphi * dphi < cone2 else 0.0
            out[i] = total
    return out


def isolation(
    q_offsets: NDArray[np.int64],
    q_pt: NDArray[np.float64],
    q_eta: NDArray[np.float64],
    q_phi: NDArray[np.float64],
    c_offsets: NDArray[np.int64],
    c_pt: NDArray[np.float64],
    c_eta: NDArray[np.float64],
    c_phi: NDArray[np.float64],
    cone: float,
    *,
    self_in_collection: bool,
) -> NDArray[np.float64]:
    """Relative isolation (dimensionless): cone sum of the collection / PT of the query.

    The cone collection (``c_*``) must be sorted by η inside each event. Angles outside
    [-π, π] are wrapped first. ``self_in_collection=True`` subtracts 1, for queries whose own
    PT is in the sum (a track against the track collection; an electron or muon against the
    tracks, since every charged lepton also appears in ``EFlowTrack``). Photons and neutral
    hadrons get no subtraction.

    >>> off = np.array([0, 2], dtype=np.int64)
    >>> pt = np.array([10.0, 5.0]); eta = np.array([0.0, 0.1]); phi = np.zeros(2)
    >>> isolation(off, pt, eta, phi, off, pt, eta, phi, 0.3, self_in_collection=True).tolist()
    [0.5, 2.0]
    """
    q_phi = _inside_pi(q_phi)
    c_phi = _inside_pi(c_phi)
    sums = cone_sums(q_offsets, q_eta, q_phi, c_offsets, c_eta, c_phi, c_pt, cone)
    iso = sums / q_pt
    if self_in_collection:
        iso -= 1.0
    return iso


def _inside_pi(phi: NDArray[np.float64]) -> NDArray[np.float64]:
    """``phi`` itself when all of it lies in [-π, π], else a wrapped copy."""
    if phi.size and not (np.abs(phi) <= _PI).all():
        return wrap_phi(phi)
    return phi


@numba.njit(cache=True, nogil=True)
def first_index_per_event(offsets: NDArray[np.int64], mask: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Flat index of the first member with ``mask`` true in each event, or -1 when none.

    >>> first_index_per_event(np.array([0, 3, 3, 5]), np.array([0, 1, 1, 1, 0], bool)).tolist()
    [1, -1, 3]
    """
    n_events = offsets.shape[0] - 1
    out = np.full(n_events, -1, dtype=np.int64)
    for ev in range(n_events):
        for i in range(offsets[ev], offsets[ev + 1]):
            if mask[i]:
                out[ev] = i
                break
    return out


@numba.njit(cache=True, nogil=True)
def keep_unmatched_capped(
    offsets: NDArray[np.int64],
    eta: NDArray[np.float64],
    phi: NDArray[np.float64],
    ref_eta: NDArray[np.float64],
    ref_phi: NDArray[np.float64],
    match_dr: float,
    cap: int,
) -> NDArray[np.bool_]:
    """Keep mask: members not within ΔR < ``match_dr`` of their event's reference, first ``cap``.

    ``ref_eta``/``ref_phi`` hold one reference direction (the chosen lepton) per event. The skip
    happens before the cap, so a skipped track does not use up one of the ``cap`` places.
    """
    keep = np.zeros(eta.shape[0], dtype=np.bool_)
    match2 = match_dr * match_dr
    n_events = offsets.shape[0] - 1
    for ev in range(n_events):
        r_eta = ref_eta[ev]
        r_phi = ref_phi[ev]
        kept = 0
        for i in range(offsets[ev], offsets[ev + 1]):
            if kept >= cap:
                break
            deta = eta[i] - r_eta
            dphi = _wrap(phi[i] - r_phi)
            if deta * deta + dphi * dphi < match2:
                continue
            keep[i] = True
            kept += 1
    return keep
