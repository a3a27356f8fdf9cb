"""Forecast scores. Every score uses only the cases where all its inputs are finite, and is
NaN when no such case is left."""
from __future__ import annotations

import numpy as np


def _finite(*arrays):
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in arrays))
    keep = np.logical_and.reduce([np.isfinite(a) for a in arrays])
    return [a[keep] for a in arrays]


def rmse(truth, pred) -> float:
    truth, pred = _finite(truth, pred)
    return float(np.sqrt(np.mean((pred - truth) ** 2))) if truth.size else float("nan")


def mae(truth, pred) -> float:
    truth, pred = _finite(truth, pred)
    return float(np.mean(np.abs(pred - truth))) if truth.size else float("nan")


def r2(truth, pred) -> float:
    """1 - SSE/SST, SST about the mean of the truth; NaN when the truth is constant."""
    truth, pred = _finite(truth, pred)
    sst = np.sum((truth - truth.mean()) ** 2) if truth.size else 0.0
    if sst == 0.0:
        return float("nan")
    return float(1.0 - np.sum((truth - pred) ** 2) / sst)


def coverage(truth, lo, hi) -> float:
    """Fraction of cases with lo <= truth <= hi."""
    truth, lo, hi = _finite(truth, lo, hi)
    return float(np.mean((lo <= truth) & (truth <= hi))) if truth.size else float("nan")


def interval_score(truth, lo, hi, alpha: float = 0.1) -> float:
    """Mean interval (Winkler) score of the central 1 - alpha interval [lo, hi]: its width, plus
    2 / alpha times how far the truth falls outside it. Lower is better; it rewards a band that
    is narrow where it can be and wide where it must be, not only one that covers."""
    truth, lo, hi = _finite(truth, lo, hi)
    if not truth.size:
        return float("nan")
    miss = np.maximum(lo - truth, 0.0) + np.maximum(truth - hi, 0.0)
    return float(np.mean(hi - lo + 2.0 / alpha * miss))


def pinball(truth, pred, level: float) -> float:
    """Mean quantile (pinball) loss of `pred` as the `level` quantile."""
    truth, pred = _finite(truth, pred)
    if not truth.size:
        return float("nan")
    diff = truth - pred
    return float(np.mean(np.maximum(level * diff, (level - 1.0) * diff)))


def crps_from_quantiles(truth, levels, values) -> float:
    """CRPS approximated from a few predicted quantiles; `values` is [len(levels), *truth.shape].

    Uses CRPS = 2 ∫ pinball_τ dτ over τ in (0, 1), replaced by 2 × the mean pinball loss over
    the given levels. With many evenly spread levels this is the midpoint rule and converges
    to the CRPS; with a handful (e.g. 0.05, 0.5, 0.95) it is a coarser but still proper score,
    fit for ranking models scored on the same levels, not for comparing with exact CRPS values.
    """
    levels = np.asarray(levels, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if values.shape != (len(levels), *truth.shape):
        raise ValueError(f"values {values.shape} must be [levels, *truth.shape] = "
                         f"{(len(levels), *truth.shape)}")
    if np.any((levels <= 0.0) | (levels >= 1.0)):
        raise ValueError("quantile levels must lie strictly between 0 and 1")
    keep = np.isfinite(truth) & np.all(np.isfinite(values), axis=0)
    if not keep.any():
        return float("nan")
    losses = [pinball(truth[keep], values[i][keep], level) for i, level in enumerate(levels)]
    return float(2.0 * np.mean(losses))


def nearest_epoch_index(dates, target_dates) -> np.ndarray:
    """Index into increasing `dates` of the epoch nearest each target date (ties: the earlier)."""
    dates = np.asarray(dates, dtype="datetime64[D]").astype(np.int64)
    targets = np.asarray(target_dates, dtype="datetime64[D]").astype(np.int64)
    if dates.size == 0:
        raise ValueError("no epochs to choose from")
    later = np.clip(np.searchsorted(dates, targets), 0, dates.size - 1)
    earlier = np.maximum(later - 1, 0)
    take_later = np.abs(dates[later] - targets) < np.abs(targets - dates[earlier])
    return np.where(take_later, later, earlier)
