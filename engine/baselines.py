"""Baseline forecasts the MM-STT model is compared against, vectorised over rows.

A row is one point or one flattened grid cell; `obs_mm` is [N, T] with NaN or
`valid == False` where an epoch is missing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .progress import check_cancel

DAYS_PER_YEAR = 365.25
MIN_EPOCHS_PER_TERM = 2      # the full time function needs this many valid epochs per coefficient
MIN_SPAN_FULL_DAYS = 365     # seasonal and acceleration terms alias into the trend over shorter spans
MIN_EPOCHS_LINEAR = 3
MIN_SPAN_LINEAR_DAYS = 60    # a velocity from a few weeks of 6-day epochs is mostly noise
RIDGE = 1e-8                 # relative to the mean diagonal of the normal matrix


def _usable(obs_mm, valid):
    obs = np.asarray(obs_mm)
    mask = np.asarray(valid, dtype=bool)
    if obs.ndim != 2 or obs.shape != mask.shape:
        raise ValueError(f"obs_mm {obs.shape} and valid {mask.shape} must both be [N, T]")
    return obs, mask & np.isfinite(obs)


LEVEL_STEPS = 5  # the forecast origin's level: mean of the last five valid epochs (30 days on the 6-day axis)


def last_finite_mask(values: np.ndarray, n: int) -> np.ndarray:
    """True at the last `n` finite values along the last axis."""
    finite = np.isfinite(values)
    return finite & (np.cumsum(finite[..., ::-1], axis=-1)[..., ::-1] <= n)


def origin_level(values: np.ndarray, axis: int = -1, n_last: int = LEVEL_STEPS) -> np.ndarray:
    """The mean of the last `n_last` finite values along `axis` (NaN = missing); NaN where there is none.

    One definition of the level a forecast starts from, for points [N, T] and for tiles [B, L, S, S].
    """
    if n_last < 1:
        raise ValueError(f"n_last must be at least 1, got {n_last}")
    values = np.moveaxis(np.asarray(values), axis, -1)
    take = last_finite_mask(values, n_last)
    count = take.sum(axis=-1)
    total = np.where(take, values, 0.0).sum(axis=-1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).astype(np.float32)


def persistence(obs_mm, valid, n_last: int = 1) -> np.ndarray:
    """[N] level: the last valid value, or the mean of the last `n_last` valid values; NaN without any."""
    obs, mask = _usable(obs_mm, valid)
    return origin_level(np.where(mask, obs, np.nan), axis=1, n_last=n_last)


def persistence_forecast(level, n_steps: int) -> np.ndarray:
    """[N, n_steps]: the level held constant over the horizon."""
    level = np.asarray(level, dtype=np.float32)
    return np.repeat(level[:, None], n_steps, axis=1)


@dataclass(frozen=True)
class TimeFunction:
    """MintPy-style deformation model; time t in years since a reference date.

    Terms in this order (so a prefix is always a simpler model): offset (mm), velocity (mm/yr),
    acceleration (mm/yr², multiplies t²/2), annual sin/cos, semi-annual sin/cos (mm; amplitude is
    the hypotenuse of each pair), Heaviside steps (mm, 1 on and after the step date).
    """

    acceleration: bool = False
    annual: bool = True
    semiannual: bool = True
    steps: tuple = ()            # datetime64[D]

    @property
    def names(self) -> list[str]:
        names = ["offset", "velocity"]
        if self.acceleration:
            names.append("acceleration")
        if self.annual:
            names += ["annual_sin", "annual_cos"]
        if self.semiannual:
            names += ["semiannual_sin", "semiannual_cos"]
        names += [f"step_{step}" for step in self.steps]
        return names

    @property
    def needs_long_span(self) -> bool:
        return self.acceleration or self.annual or self.semiannual

    def design(self, dates, reference_date) -> np.ndarray:
        """[len(dates), K] float64 design matrix."""
        dates = np.asarray(dates, dtype="datetime64[D]")
        t = (dates - np.datetime64(reference_date, "D")).astype(np.float64) / DAYS_PER_YEAR
        steps = [(dates >= step).astype(np.float64) for step in self.steps]
        return self.design_years(t, steps)

    def design_years(self, t: np.ndarray, steps=()) -> np.ndarray:
        """[len(t), K] design matrix at times t in years; `steps` are the Heaviside columns, if any."""
        columns = [np.ones_like(t), t]
        if self.acceleration:
            columns.append(0.5 * t * t)
        if self.annual:
            columns += [np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)]
        if self.semiannual:
            columns += [np.sin(4 * np.pi * t), np.cos(4 * np.pi * t)]
        return np.stack(columns + list(steps), axis=1)


@dataclass
class TimeFnFit:
    """Per-row least-squares fit of a TimeFunction.

    `n_terms` says what each row got: all K terms, 2 (offset + velocity, too few or too short
    data for the rest), 1 (persistence: offset = last valid value) or 0 (no valid epoch: NaN).
    Coefficients of terms a row did not fit are 0.
    """

    function: TimeFunction
    reference_date: np.datetime64
    coefficients: np.ndarray     # [N, K] float64
    residual_std_mm: np.ndarray  # [N] float64, NaN without degrees of freedom left
    n_valid: np.ndarray          # [N] int
    n_terms: np.ndarray          # [N] int

    def coefficient(self, name: str) -> np.ndarray:
        return self.coefficients[:, self.function.names.index(name)]

    def predict(self, dates) -> np.ndarray:
        """[N, len(dates)] float32 displacement in mm."""
        design = self.function.design(dates, self.reference_date)
        return (self.coefficients @ design.T).astype(np.float32)


def _terms_per_row(n_valid, span_days, function: TimeFunction) -> np.ndarray:
    k_full = len(function.names)
    full = n_valid >= MIN_EPOCHS_PER_TERM * k_full
    if function.needs_long_span:
        full &= span_days >= MIN_SPAN_FULL_DAYS
    linear = (n_valid >= MIN_EPOCHS_LINEAR) & (span_days >= MIN_SPAN_LINEAR_DAYS)
    return np.select([full, linear, n_valid > 0], [k_full, 2, 1], 0)


def _fit_chunk(design, outer, dates_days, obs, mask, function):
    k = design.shape[1]
    weight = mask.astype(np.float64)
    y = np.where(mask, obs, 0.0).astype(np.float64)
    n_valid = mask.sum(axis=1)
    first = np.where(n_valid > 0, mask.argmax(axis=1), 0)
    last = mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)
    span_days = np.where(n_valid > 0, dates_days[last] - dates_days[first], 0)
    n_terms = _terms_per_row(n_valid, span_days, function)

    # Weighted normal equations for every row at once; terms a row does not fit get an
    # identity row/column and a zero right-hand side, so they solve to exactly 0.
    normal = (weight @ outer).reshape(-1, k, k)
    rhs = (weight * y) @ design
    keep = np.arange(k)[None, :] < n_terms[:, None]
    normal *= keep[:, :, None] & keep[:, None, :]
    rhs *= keep
    ridge = RIDGE * np.trace(normal, axis1=1, axis2=2) / k
    diagonal = np.where(keep, ridge[:, None], 1.0)
    normal[:, np.arange(k), np.arange(k)] += diagonal
    coefficients = np.linalg.solve(normal, rhs[:, :, None])[:, :, 0]

    level_only = n_terms == 1
    coefficients[level_only] = 0.0
    coefficients[level_only, 0] = persistence(obs[level_only], mask[level_only])
    coefficients[n_terms == 0] = np.nan

    residual = (y - coefficients @ design.T) * weight
    dof = n_valid - n_terms
    with np.errstate(invalid="ignore", divide="ignore"):
        residual_std = np.where(dof > 0, np.sqrt((residual ** 2).sum(axis=1) / dof), np.nan)
    return coefficients, residual_std, n_valid, n_terms


def timefn_fit(dates_obs, obs_mm, valid, *, acceleration: bool = False, annual: bool = True,
               semiannual: bool = True, steps=(), chunk_rows: int = 16384, progress=None) -> TimeFnFit:
    """Least-squares time-function fit of every row of `obs_mm` [N, T] at `dates_obs` [T].

    Rows with too few valid epochs, or too short a span, for the full function fall back to
    offset + velocity, then to persistence (see TimeFnFit.n_terms). Rows are processed in
    chunks of `chunk_rows` so a million cells fit in memory; `progress` is polled per chunk.
    """
    dates_obs = np.asarray(dates_obs, dtype="datetime64[D]")
    obs, mask = _usable(obs_mm, valid)
    if obs.shape[1] != dates_obs.shape[0]:
        raise ValueError(f"obs_mm has {obs.shape[1]} epochs but dates_obs has {dates_obs.shape[0]}")
    function = TimeFunction(acceleration, annual, semiannual, tuple(np.datetime64(s, "D") for s in steps))
    reference_date = dates_obs[0]
    design = function.design(dates_obs, reference_date)
    k = design.shape[1]
    outer = (design[:, :, None] * design[:, None, :]).reshape(-1, k * k)
    dates_days = (dates_obs - reference_date).astype(np.int64)

    n = obs.shape[0]
    coefficients = np.empty((n, k))
    residual_std = np.empty(n)
    n_valid = np.empty(n, dtype=np.int64)
    n_terms = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk_rows):
        check_cancel(progress)
        rows = slice(start, start + chunk_rows)
        coefficients[rows], residual_std[rows], n_valid[rows], n_terms[rows] = _fit_chunk(
            design, outer, dates_days, obs[rows], mask[rows], function)
        if progress is not None:
            progress.progress(min(start + chunk_rows, n) / n, "fitting time functions")
    return TimeFnFit(function, reference_date, coefficients, residual_std, n_valid, n_terms)
