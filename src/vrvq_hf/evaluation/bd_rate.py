"""Bjontegaard delta rate: the average bitrate change of a test codec against an anchor at equal quality.

Each curve is a set of (rate, quality) points. log10(rate) is modelled as a function of quality on each
curve, both models are integrated over the quality interval the two curves share, and the mean difference
d of log10-rates gives ``BD-rate = (10**d - 1) * 100`` percent. Negative means the test codec needs fewer
bits than the anchor for the same quality.

Two interpolations:

* ``method="pchip"`` (default): piecewise-cubic Hermite interpolation through the points sorted by
  quality (the variant the video-coding community adopted after the original). It passes through every
  point and never overshoots between them, so it stays sensible for curves with few points, uneven spacing
  or saturating quality; it needs at least 2 points. Points of equal quality (a plateau) are merged into
  one at their mean log-rate.
* ``method="cubic"``: Bjontegaard's original least-squares cubic polynomial (VCEG-M33); needs at least
  4 points and can oscillate when points are uneven.

For metrics where lower is better (mel / STFT distance, L1) pass ``higher_is_better=False``: quality is
negated, so the integration runs over the same "better" direction.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["bd_quality", "bd_rate", "is_monotone"]

METHODS = ("pchip", "cubic")


def _curve(rate: Sequence[float], quality: Sequence[float], name: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated (quality ascending, log10 rate) arrays of one curve."""
    rate = np.asarray(rate, dtype=np.float64).reshape(-1)
    quality = np.asarray(quality, dtype=np.float64).reshape(-1)
    if rate.shape != quality.shape:
        raise ValueError(f"{name}: rate and quality need the same number of points, got {rate.size} and {quality.size}")
    needed = 4 if method == "cubic" else 2
    if rate.size < needed:
        raise ValueError(f"{name}: the {method!r} BD-rate needs at least {needed} points, got {rate.size}")
    if not (np.isfinite(rate).all() and np.isfinite(quality).all()):
        raise ValueError(f"{name}: rates and qualities must be finite numbers, got {rate} and {quality}")
    if (rate <= 0).any():
        raise ValueError(f"{name}: rates must be > 0 (their logarithm is interpolated), got {rate}")
    if not is_monotone(rate, quality):
        warnings.warn(
            f"{name}: quality does not increase with rate; the BD figure averages over a non-monotone curve",
            stacklevel=3,
        )
    order = np.argsort(quality, kind="stable")
    quality, log_rate = quality[order], np.log10(rate[order])
    if method == "pchip" and (np.diff(quality) == 0).any():
        # A plateau (e.g. a metric at its floor): one point per quality, at the mean log-rate.
        quality, log_rate = _merge_ties(quality, log_rate)
        if quality.size < 2:
            raise ValueError(f"{name}: all points have the same quality {quality[0]:.6g}; no curve to interpolate")
    return quality, log_rate


def is_monotone(rate: Sequence[float], quality: Sequence[float]) -> bool:
    """Whether a curve's rate never falls as its quality (higher is better) rises, i.e. quality never gets
    worse as the rate rises. BD figures over a curve that is not monotone are averages to read with care."""
    rate = np.asarray(rate, dtype=np.float64).reshape(-1)
    quality = np.asarray(quality, dtype=np.float64).reshape(-1)
    order = np.argsort(quality, kind="stable")
    return not bool((np.diff(rate[order]) < 0).any())


def _overlap(qa: np.ndarray, qt: np.ndarray, what: str) -> tuple[float, float]:
    low, high = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if not low < high:
        raise ValueError(
            f"the curves' {what} ranges do not overlap (anchor {qa[0]:.6g}..{qa[-1]:.6g}, test "
            f"{qt[0]:.6g}..{qt[-1]:.6g}): no common interval to compare at"
        )
    return float(low), float(high)


def _mean_over(x: np.ndarray, y: np.ndarray, low: float, high: float, method: str) -> float:
    """Mean of the interpolant of y(x) over [low, high]."""
    if method == "cubic":
        primitive = np.polyint(np.polyfit(x, y, 3))
        return float((np.polyval(primitive, high) - np.polyval(primitive, low)) / (high - low))
    from scipy.interpolate import PchipInterpolator

    return float(PchipInterpolator(x, y).integrate(low, high) / (high - low))


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    higher_is_better: bool = True,
    method: str = "pchip",
) -> float:
    """Percent bitrate change of the test curve against the anchor at equal quality (negative: test
    saves bits). ``method`` is ``"pchip"`` (default) or ``"cubic"`` (see the module docstring).

    Raises ``ValueError`` for too few points, non-positive rates, or quality ranges that do not overlap.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    sign = 1.0 if higher_is_better else -1.0
    qa, la = _curve(anchor_rate, sign * np.asarray(anchor_quality, dtype=np.float64), "anchor", method)
    qt, lt = _curve(test_rate, sign * np.asarray(test_quality, dtype=np.float64), "test", method)
    low, high = _overlap(qa, qt, "quality")
    difference = _mean_over(qt, lt, low, high, method) - _mean_over(qa, la, low, high, method)
    return float((10.0**difference - 1.0) * 100.0)


def bd_quality(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    method: str = "pchip",
) -> float:
    """Average quality difference (test minus anchor, in the metric's units) at equal bitrate, over the
    shared log-rate interval (the "BD-PSNR" counterpart of :func:`bd_rate`)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    a_rate = np.asarray(anchor_rate, dtype=np.float64).reshape(-1)
    t_rate = np.asarray(test_rate, dtype=np.float64).reshape(-1)
    for name, r in (("anchor", a_rate), ("test", t_rate)):
        if (r <= 0).any():
            raise ValueError(f"{name}: rates must be > 0, got {r}")
    ra, qa = _sorted_by(np.log10(a_rate), np.asarray(anchor_quality, dtype=np.float64).reshape(-1), "anchor", method)
    rt, qt = _sorted_by(np.log10(t_rate), np.asarray(test_quality, dtype=np.float64).reshape(-1), "test", method)
    low, high = _overlap(ra, rt, "log-rate")
    return _mean_over(rt, qt, low, high, method) - _mean_over(ra, qa, low, high, method)


def _sorted_by(x: np.ndarray, y: np.ndarray, name: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    needed = 4 if method == "cubic" else 2
    if x.shape != y.shape or x.size < needed:
        raise ValueError(f"{name}: needs at least {needed} (rate, quality) pairs of equal length")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"{name}: rates and qualities must be finite numbers")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if method == "pchip" and (np.diff(x) == 0).any():
        x, y = _merge_ties(x, y)
        if x.size < 2:
            raise ValueError(f"{name}: all points have the same rate {10 ** x[0]:.6g}; no curve to interpolate")
    return x, y


def _merge_ties(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted x with repeats -> distinct x, each with the mean of its y values."""
    x, inverse = np.unique(x, return_inverse=True)
    return x, np.bincount(inverse, weights=y) / np.bincount(inverse)
