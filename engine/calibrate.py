"""Calibration: how points and cells depart from the network's cell forecast, and how wide the bands are.

Shares of each departure and conformal interval factors are fitted on the validation period,
which no training target reached, like model output statistics in weather forecasting.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .baselines import last_finite_mask, origin_level, timefn_fit
from .metrics import interval_score
from .prepare import Scene
from .progress import check_cancel
from .store import big_array, thread_map
from .windows import MIN_OWN_RATE_SPAN_DAYS, forecast_dates, history_span_days, observed_cells

Z90 = 1.6448536


# the rows of PointModel.design, in order: four departures from the cell, then three pulls
DEPARTURES = ("trend", "recent_rate", "last", "excursion", "persistence", "own_timefn", "own_line")
EXCURSION_FADE_STEPS = 2.0  # the excursion departure fades as exp(-step / this): excursions revert


@dataclass
class PointModel:
    """How a point departs from its cell: the part of the forecast the grid cannot see.

    Several points share a 100 m cell but not always its motion (a building beside a field).
    A point's forecast is its own level plus its cell's forecast increment plus shares of seven
    rows: its time-function trend minus the cell's, its last-year straight-line trend
    minus the cell's, its last value minus its level (short anomalies persist a little; an outlying
    last epoch counts only up to OUTLIER_SIGMAS of its noise from its recent line), the excursion
    (when the last RUN_EPOCHS epochs all stand beyond that band on the same side, what the clip took
    off the last one, fading over a few steps: a run of epochs is a real excursion, which the next
    weeks follow and later ones mostly undo, where a lone epoch is an outlier), and
    the pull toward persistence, toward its own time-function fit and toward its own
    straight line over the whole history (on real EGMS series the seasonal terms, fitted on a
    few years, often extrapolate worse than the plain velocity a year out). The shares per horizon
    are fitted by least squares on the validation period, like model output statistics in
    weather forecasting: they shrink noisy point trends toward the cell's, and where the
    network was less skilful than a baseline on the validation period they say so.

    `cells_at` applies the same to the grid itself, each cell its own "point": the maps get
    the pulls toward persistence and the cell's own fits, with shares fitted on the cells.

    The band is the cell's, widened by `spread` x the point's own scatter about its recent line,
    in quadrature: points in one cell share its forecast but not its noise, and a noisy point's
    band must be wider than a quiet one's (Calibration.spread says how much, per area). In an
    excursion it is widened by the excursion too, fading with it: whether the next weeks follow
    the run or the line, the band holds both.
    """

    level: np.ndarray  # [N]
    departures: np.ndarray  # [4, H, N], independent of the network
    trend_own: np.ndarray  # [H, N] the point's own time-function increment
    line_own: np.ndarray  # [H, N] the point's own straight-line increment, whole history
    scatter: np.ndarray  # [N] robust scatter (mm, 1 sigma) of the point's recent values about its recent line
    rows: np.ndarray
    cols: np.ndarray
    inside: np.ndarray
    young: np.ndarray  # [N] seen for less than MIN_OWN_RATE_SPAN_DAYS: no pull toward its own fits

    @classmethod
    def at(cls, scene: Scene, anchor: int, dates_fc: np.ndarray, index=None) -> PointModel:
        """The points (those at `index`, all by default), from their history before epoch `anchor`."""
        regular, cube = scene.regular, scene.cube
        index = slice(None) if index is None else index
        rows, cols, inside = cube.grid.cell_index(regular.x[index], regular.y[index])
        r, c = np.where(inside, rows, 0), np.where(inside, cols, 0)
        own = regular.displacement_mm[index, :anchor]
        cell = cube.displacement_mm[:anchor, r, c].T
        return cls.of_series(own, cell, regular.dates[:anchor], dates_fc, r, c, inside)

    @classmethod
    def cells_at(cls, scene: Scene, anchor: int, dates_fc: np.ndarray, rows=None, cols=None) -> PointModel:
        """The cells (rows, cols), by default every cell with data before epoch `anchor`, each as a
        point of its own."""
        cube = scene.cube.displacement_mm[:anchor]
        if rows is None:
            rows, cols = cells_with_data(scene, anchor)
        series = cube[:, rows, cols].T
        inside = np.ones(len(rows), bool)
        return cls.of_series(series, series, scene.regular.dates[:anchor], dates_fc, rows, cols, inside)

    @classmethod
    def of_series(cls, own, cell, dates, dates_fc, rows, cols, inside) -> PointModel:
        """own, cell [N, T]: each point's series and its cell's, on the regular dates [T]."""
        anchor = own.shape[1]
        recent = slice(max(anchor - 61, 0), anchor)
        level = origin_level(own[:, recent])
        trend_own = timefn_fit(dates, own, np.isfinite(own)).predict(dates_fc).T - level
        line_own = linear_trend(dates, own, dates_fc) - level
        # the recent straight line, fitted once: its extrapolation is the rate, its values the clip's centre
        both = linear_trend(dates[recent], own[:, recent], np.concatenate([dates[recent], dates_fc]))
        line, rate_own = both[: anchor - recent.start], both[anchor - recent.start :] - level
        if cell is own:  # a cell as its own point: it departs from nothing
            trend_cell, rate_cell = trend_own, rate_own
        else:
            cell_level = origin_level(cell[:, recent])
            trend_cell = timefn_fit(dates, cell, np.isfinite(cell)).predict(dates_fc).T - cell_level
            rate_cell = linear_trend(dates[recent], cell[:, recent], dates_fc) - cell_level
        # one outlying last epoch (an unwrapping error, a passing vehicle) must not drag the
        # forecast: further than OUTLIER_SIGMAS of the point's own noise from its recent straight
        # line it is clipped to that band (a steady fast mover stays on its line, unclipped)
        bound = OUTLIER_SIGMAS * robust_noise(own[:, recent])
        scatter = robust_sigma(own[:, recent] - line.T)
        values, expected = last_finite(own[:, recent], RUN_EPOCHS, line.T)
        last, expected_last = values[:, -1], expected[:, -1]
        low, high = expected_last - bound, expected_last + bound
        clipped = np.where(np.isfinite(expected_last), np.clip(last, low, high), last)
        off = np.nan_to_num((values - expected) / bound[:, None])
        run = (off > 1).all(1) | (off < -1).all(1)
        fade = np.exp(-np.arange(len(dates_fc)) / EXCURSION_FADE_STEPS)[:, None]
        # a point seen for less than a year has no rate of its own worth extrapolating: a few months
        # of a seasonal cycle read as a line runs off by centimetres a year out, so it takes its cell's
        young = history_span_days(dates, own.T) < MIN_OWN_RATE_SPAN_DAYS
        departures = np.stack([
            np.where(young[None], 0.0, trend_own - trend_cell),
            np.where(young[None], 0.0, rate_own - rate_cell),
            np.broadcast_to(clipped - level, trend_own.shape),
            fade * np.where(run, last - clipped, 0.0)[None],
        ])
        return cls(
            level, np.nan_to_num(departures), np.nan_to_num(trend_own), np.nan_to_num(line_own), scatter,
            rows, cols, inside, young,
        )

    def design(self, cell_increments: np.ndarray) -> np.ndarray:
        """[7, H, N] departures and pulls, given the cells' quantile increments [Q, H, rows, cols]."""
        median = cell_increments[len(cell_increments) // 2][:, self.rows, self.cols]
        median = np.nan_to_num(median)
        own = np.where(self.young, 0.0, 1.0)  # a young point's own fits stand in for nothing
        pulls = np.stack([-median, own * (self.trend_own - median), own * (self.line_own - median)])
        return np.concatenate([self.departures, pulls])

    def quantiles(self, cell_increments: np.ndarray, shares: np.ndarray | None = None,
                  spread: float = 0.0) -> np.ndarray:
        """[Q, H, N] from the cells' quantile increments [Q, H, rows, cols], shares [7, H] and the
        band's spread (how many of its own scatters a point's band adds to its cell's)."""
        q = self.level[None, None] + cell_increments[:, :, self.rows, self.cols]
        excursion = np.abs(self.departures[DEPARTURES.index("excursion")])
        if excursion.any():
            q = widen_in_quadrature(q, excursion)
        if spread:
            q = widen_in_quadrature(q, Z90 * spread * self.scatter)
        if shares is not None:
            q = with_shares(q, self.design(cell_increments), shares)
        q[:, :, ~self.inside] = np.nan
        return q


@dataclass
class Calibration:
    """What the validation period fitted: the shares [7, H] of PointModel's departures and pulls,
    the band's spread (how many of its own scatters a point adds to its cell's band) and the
    conformal factors [H] that make the band cover 90 %."""

    shares: np.ndarray
    factor: np.ndarray
    spread: float = 0.0

    def quantiles(self, model: PointModel, cell_increments: np.ndarray) -> np.ndarray:
        """[3, H, N] calibrated quantiles of the points (or cells) of `model`."""
        return widen(model.quantiles(cell_increments, self.shares, self.spread), self.factor)


# the spreads the validation period chooses from: none (the cell's band, as where every point is a
# cell) up to a band four scatters wider, for areas whose points differ most in noise
SPREADS = (0.0, 0.5, 1.0, 2.0, 4.0)


def widen_in_quadrature(q: np.ndarray, half_width: np.ndarray) -> np.ndarray:
    """Quantiles [3, H, N] with each 5-95 % half-width widened by half_width ([N] or [H, N], mm) in
    quadrature: a point's own noise, or its excursion, is independent of the cell forecast's error."""
    lo, mid, hi = q
    extra = np.broadcast_to(half_width, mid.shape) ** 2
    return np.stack([mid - np.sqrt((mid - lo) ** 2 + extra), mid, mid + np.sqrt((hi - mid) ** 2 + extra)])


def with_shares(raw: np.ndarray, design: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Quantiles [Q, H, N] moved by shares [7, H] of the departures and pulls design [7, H, N]."""
    return raw + (shares[:, :, None] * design).sum(0)[None]


OUTLIER_SIGMAS = 4.0  # a last epoch further than this from its point's recent line is clipped to it
# an excursion is this many last epochs beyond the band: on the 6-day axis of 12-day acquisitions
# one outlying acquisition drags the interpolated epoch before it too, so two are not enough
RUN_EPOCHS = 3


def last_finite(series: np.ndarray, n: int, *aligned: np.ndarray) -> list:
    """For series [N, T]: [N, n] each row's last n finite values, oldest first, and the values of each
    array in `aligned` [N, T] at those epochs; NaN where a row has fewer."""
    take = last_finite_mask(series, n)
    rows, cols = np.nonzero(take)
    slot = np.cumsum(take, axis=1)[rows, cols] - 1 + n - take.sum(1)[rows]  # oldest first, right-aligned
    picked = []
    for values in (series,) + aligned:
        out = np.full((len(series), n), np.nan, np.float64)
        out[rows, slot] = values[rows, cols]
        picked.append(out)
    return picked


def robust_noise(series: np.ndarray) -> np.ndarray:
    """[N] each row's epoch-to-epoch noise (mm), robustly: the MAD of its first differences, which
    a trend or a season barely moves, over sqrt 2; at least 0.5 mm."""
    return robust_sigma(np.diff(series, axis=1), np.sqrt(2.0))


def robust_sigma(values: np.ndarray, divisor: float = 1.0) -> np.ndarray:
    """[N] each row's standard deviation from its MAD (one outlier barely moves it), over divisor;
    at least 0.5 mm, and 0.5 mm for a row with no value."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without a value: NaN, then the floor
        mad = np.nanmedian(np.abs(values - np.nanmedian(values, axis=1, keepdims=True)), axis=1)
    return np.fmax(np.nan_to_num(1.4826 * mad / divisor, nan=0.5), 0.5).astype(np.float32)


MAP_CHUNK_CELLS = 50_000  # cells per step of the map calibration: bounded memory on a 1000 x 1000 tile
POINT_CHUNK = 10_000  # points per step of the point forecast
CALIBRATION_POINTS = 50_000  # the point shares are fitted on an even sample of at most this many points
CALIBRATION_ORIGINS = 4  # forecast origins in the validation period the shares and bands are fitted on


def cells_with_data(scene: Scene, anchor: int) -> tuple[np.ndarray, np.ndarray]:
    return np.nonzero(observed_cells(scene.cube.displacement_mm, anchor))


def calibrated_map(scene: Scene, anchor: int, dates_fc, cells: np.ndarray, calibration: Calibration,
                   progress=None, threads: int | None = None) -> np.ndarray:
    """[Q, H, rows, cols] map quantiles: the cells' PointModel.cells_at, a chunk of cells at a time,
    the chunks on a pool of `threads` (None: every core); the map goes to disk inside a Scratch."""
    out = big_array(cells.shape, cells.dtype, np.nan)
    rows, cols = cells_with_data(scene, anchor)

    def chunk(i):
        check_cancel(progress)
        r, c = rows[i : i + MAP_CHUNK_CELLS], cols[i : i + MAP_CHUNK_CELLS]
        grid = PointModel.cells_at(scene, anchor, dates_fc, r, c)
        return r, c, calibration.quantiles(grid, cells)

    done = 0
    for r, c, values in thread_map(chunk, range(0, len(rows), MAP_CHUNK_CELLS), threads):
        out[:, :, r, c] = values
        done += len(r)
        if progress is not None:
            progress.progress(done / len(rows), "forecasting the maps")
    return out


def point_forecast(scene: Scene, anchor: int, dates_fc, cells: np.ndarray, calibration: Calibration,
                   progress=None, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """([Q, H, N] the points' calibrated quantiles, [N] their levels), POINT_CHUNK points at a time
    on a pool of `threads` (None: every core)."""
    n = scene.regular.n_points
    out = big_array((cells.shape[0], len(dates_fc), n), np.float32)
    level = np.empty(n, np.float64)

    def chunk(i):
        check_cancel(progress)
        index = np.arange(i, min(i + POINT_CHUNK, n))
        points = PointModel.at(scene, anchor, dates_fc, index)
        return index, calibration.quantiles(points, cells), points.level

    for index, values, lv in thread_map(chunk, range(0, n, POINT_CHUNK), threads):
        out[:, :, index[0]:index[-1] + 1] = values
        level[index[0]:index[-1] + 1] = lv
        if progress is not None:
            progress.progress((index[-1] + 1) / n, "forecasting the points")
    return out, level


def calibrate_points(scene: Scene, cut, cal_cells, horizon_steps: int, on_cells=False,
                     progress=None) -> Calibration:
    """The Calibration fitted where the network forecast the validation period.

    cal_cells [Q, H, rows, cols]: quantile increments forecast from epoch `cut`, the start of
    the validation period that no training target reached. `cut` may also be a list of origins in
    that period and `cal_cells` the list of their forecasts (calibration_cases of each, pooled).
    `on_cells`: fit them for the grid (PointModel.cells_at), scored against the cells' own values,
    instead of the points.
    """
    if np.ndim(cut) == 0:
        cut, cal_cells = [cut], [cal_cells]
    n_steps = min(len(scene.regular.dates) - cut[0], horizon_steps)
    cases = [calibration_cases(scene, origin, cells, n_steps, on_cells)
             for origin, cells in zip(cut, cal_cells)]
    return fit_calibration(cases, horizon_steps, progress)


def calibration_cases(scene: Scene, origin: int, cal_cells: np.ndarray, n_steps: int, on_cells=False):
    """(raw quantiles [3, n_steps, N], design [7, n_steps, N], truth [n_steps, N], scatter [N]) of
    the forecast cal_cells [Q, H, rows, cols] made at epoch `origin`; NaN truth past the history's end."""
    n_seen = min(len(scene.regular.dates) - origin, n_steps)
    dates_cal = forecast_dates(scene.regular.dates, origin, n_seen)
    if on_cells:  # an even sample of the cells is plenty for a few shares per step
        rows, cols = cells_with_data(scene, origin)
        pick = np.unique(np.linspace(0, len(rows) - 1, min(len(rows), MAP_CHUNK_CELLS)).astype(int))
        cal = PointModel.cells_at(scene, origin, dates_cal, rows[pick], cols[pick])
        truth = scene.cube.displacement_mm[origin : origin + n_seen, cal.rows, cal.cols]
    else:  # an even sample of the points on a large area
        n = scene.regular.n_points
        pick = np.unique(np.linspace(0, n - 1, min(n, CALIBRATION_POINTS)).astype(int))
        pick = None if len(pick) == n else pick
        cal = PointModel.at(scene, origin, dates_cal, pick)
        sample = slice(None) if pick is None else pick
        truth = scene.regular.displacement_mm[sample, origin : origin + n_seen].T
    cells = cal_cells[:, :n_seen]
    pad = ((0, 0), (0, n_steps - n_seen), (0, 0))
    raw = np.pad(cal.quantiles(cells), pad, constant_values=np.nan)
    design = np.pad(cal.design(cells), pad, constant_values=np.nan)
    return raw, design, np.pad(truth, pad[1:], constant_values=np.nan), cal.scatter


def fit_calibration(cases: list, horizon_steps: int, progress=None) -> Calibration:
    """The Calibration fitted on calibration_cases of one or more origins.

    The shares by least squares; then, for each of SPREADS, the conformal factors, keeping the
    spread whose calibrated band has the lowest interval score: every spread covers 90 % after
    its factors, and the score prefers the band that is narrow on quiet points and wide on noisy ones.
    """
    raw, design, truth, scatter = (np.concatenate(parts, axis=-1) for parts in zip(*cases))
    shares = fit_shares(raw, design, truth, progress)
    moved = with_shares(raw, np.nan_to_num(design), shares).astype(np.float32)
    del raw, design
    best = None
    for spread in SPREADS:
        check_cancel(progress)
        banded = widen_in_quadrature(moved, Z90 * spread * scatter)
        factor = interval_scale(banded, truth)
        lo, _, hi = widen(banded, factor)
        score = interval_score(truth, lo, hi)
        if best is None or score < best[0]:  # NaN (no case) never wins: the first spread, none, stays
            best = (score, spread, factor)
    _, spread, factor = best
    return Calibration(extend(shares, horizon_steps), extend(factor, horizon_steps), spread)


def calibration_origins(cut: int, n_epochs: int, n_origins: int = CALIBRATION_ORIGINS) -> list[int]:
    """Forecast origins evenly through the validation period [cut, n_epochs): one origin leaves the
    short horizons to the noise of a few epochs (one atmosphere), more average it out."""
    span = n_epochs - cut
    return sorted({cut + (k * span) // n_origins for k in range(n_origins)} - {n_epochs})


def linear_trend(dates: np.ndarray, series: np.ndarray, dates_fc: np.ndarray) -> np.ndarray:
    """[H, N] extrapolation of each row's straight-line fit (no seasonal terms)."""
    fit = timefn_fit(dates, series, np.isfinite(series), annual=False, semiannual=False)
    return fit.predict(dates_fc).T


def fit_shares(raw: np.ndarray, departures: np.ndarray, truth: np.ndarray, progress=None) -> np.ndarray:
    """Least-squares shares [D, H], each in [0, 1], of the departures [D, H, N] that best explain
    truth - raw median.

    The bounds are part of the fit, not a clip afterwards: the departures are strongly
    correlated, and clipping an unconstrained solution can leave a share far from optimal.
    Each step's problem pools its neighbouring steps. It is solved on each step's QR factor
    (D x D) instead of its N rows: the same optimum, whatever the number of points. Each problem
    is scaled to values of at most 1 (the shares do not change) and its iterations are bounded,
    so no input can keep the solver going.
    """
    from scipy.optimize import lsq_linear

    D, H = departures.shape[0], raw.shape[1]
    resid = truth - raw[1]
    factors, counts = [], np.zeros(H, int)
    for h in range(H):  # each step's rows reduced to R (D x D) and Q'y: |Xb - y|^2 = |Rb - Q'y|^2 + const
        y, X = resid[h], departures[:, h].T
        ok = np.isfinite(y) & np.isfinite(X).all(1)
        counts[h] = ok.sum()
        if counts[h] >= D:
            q, r = np.linalg.qr(X[ok].astype(float))
            factors.append((r, q.T @ y[ok].astype(float)))
        else:  # too few rows to factor: keep them as they are
            factors.append((X[ok].astype(float), y[ok].astype(float)))
    shares = np.zeros((D, H))
    for h in range(H):
        check_cancel(progress)
        sl = range(max(h - 3, 0), min(h + 4, H))  # pool neighbouring steps for stability
        if counts[sl.start:sl.stop].sum() >= 50:
            X = np.concatenate([factors[i][0] for i in sl])
            y = np.concatenate([factors[i][1] for i in sl])
            scale = max(np.abs(X).max(), np.abs(y).max(), 1e-12)
            shares[:, h] = lsq_linear(X / scale, y / scale, bounds=(0.0, 1.0), max_iter=100).x
        elif h:
            shares[:, h] = shares[:, h - 1]
    return shares


def extend(values: np.ndarray, n: int) -> np.ndarray:
    """Pad the last axis to n by repeating its last value (calibration sees fewer steps than the horizon)."""
    if values.shape[-1] >= n:
        return values[..., :n]
    pad = np.repeat(values[..., -1:], n - values.shape[-1], axis=-1)
    return np.concatenate([values, pad], -1)


def interval_scale(raw: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per horizon step, the factor that widens (or narrows) the raw 5-95% band to cover 90%.

    Split-conformal: the score is how many half-widths outside the median a truth falls; its
    90th percentile over points is the factor. Neighbouring steps are pooled for stability.
    raw [3, H, N] (q05, q50, q95), truth [H, N] (NaN where unobserved).
    """
    lo, mid, hi = raw
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.maximum(
            (mid - truth) / np.maximum(mid - lo, 1e-3), (truth - mid) / np.maximum(hi - mid, 1e-3)
        )
    H = score.shape[0]
    factor = np.ones(H)
    for h in range(H):
        pool = score[max(h - 3, 0) : h + 4]
        pool = pool[np.isfinite(pool)]
        if len(pool) >= 20:
            factor[h] = np.quantile(pool, 0.9)
        elif h:
            factor[h] = factor[h - 1]
    return np.clip(np.maximum.accumulate(factor), 0.3, 10.0)  # uncertainty never shrinks with lead time


def widen(raw: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Apply interval_scale factors [H] to quantiles [3, H, ...]."""
    f = factor.reshape((-1,) + (1,) * (raw.ndim - 2))
    lo, mid, hi = raw
    return np.stack([mid - f * (mid - lo), mid, mid + f * (hi - mid)])


def exceedance_probability(quantiles: np.ndarray, level: np.ndarray, threshold_mm: float) -> np.ndarray:
    """P(displacement since the origin passes threshold_mm), from q05/q50/q95 via a split normal.

    A negative threshold means subsidence below it, a positive one uplift above it.
    """
    from scipy.special import ndtr

    lo, mid, hi = quantiles - level
    sigma_lo = np.maximum((mid - lo) / Z90, 1e-3)
    sigma_hi = np.maximum((hi - mid) / Z90, 1e-3)
    with np.errstate(invalid="ignore"):
        z = np.where(threshold_mm <= mid, (threshold_mm - mid) / sigma_lo, (threshold_mm - mid) / sigma_hi)
        below = ndtr(z)
    return (below if threshold_mm < 0 else 1 - below).astype(np.float32)
