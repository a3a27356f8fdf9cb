"""One run, end to end: files on disk -> scene on a grid -> trained MM-STT -> forecast files.

`run_forecast` and `run_backtest` are what the command line, the QGIS task and the
Processing algorithms call. Both write only into the output folder, all at once.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from .aoi import AOI, read_aoi
from .baselines import persistence, timefn_fit
from .checkpoint import load_checkpoint, save_checkpoint
from .crs import require_metric
from .errors import InputError
from .fileio import atomic_dir
from .grid import Cube, make_grid, grid_points
from .metrics import coverage, crps_from_quantiles, mae, nearest_epoch_index, r2, rmse
from .model import ModelConfig
from .outputs import plot_backtest, write_band_stack, write_json, write_points_gpkg, write_series_npz
from .points import PointSeries, read_points, regularize_time, reproject_points
from .priors import Priors, build_priors
from .progress import NullProgress, check_cancel, scaled
from .params import RunConfig
from .train import STEP_DAYS, TrainedModel, fit, forecast_area, make_area, window_level

ATTRIBUTION = "Contains modified Copernicus EGMS data"
BACKTEST_HORIZONS_DAYS = (12, 90, 180, 365)
DEFAULT_CRS = "EPSG:3035"  # the EGMS grid; geographic inputs are projected onto it
Z90 = 1.6448536


@dataclass
class Scene:
    """Everything a run learns from, aligned on one grid."""

    points: PointSeries  # inside the AOI, in the grid's CRS, original dates
    regular: PointSeries  # the same points on the regular STEP_DAYS axis
    cube: Cube
    priors: Priors
    aoi: AOI | None


@dataclass
class Forecast:
    """Quantile forecasts on the grid and at the points, on regular dates after the last epoch."""

    dates: np.ndarray  # [H] datetime64[D]
    quantiles: tuple  # e.g. (0.05, 0.5, 0.95)
    cells_mm: np.ndarray  # [Q, H, rows, cols] cumulative displacement (EGMS reference)
    cells_level_mm: np.ndarray  # [rows, cols] level at the origin
    points_mm: np.ndarray  # [Q, H, N]
    points_level_mm: np.ndarray  # [N]
    interval_scale: np.ndarray  # [H] conformal widening of the raw 90% interval
    trained: TrainedModel


def check_config(config: RunConfig, command: str = "forecast") -> None:
    config.check(command)


def prepare(
    config: RunConfig, progress=None, until: np.datetime64 | None = None, points: PointSeries | None = None
) -> Scene:
    """Read, clip, resample and grid the points, and put the priors on the same grid.

    With `until`, epochs after that date are dropped before anything else sees them.
    `points` skips reading them again when the caller already has them (inside the AOI).
    """
    progress = progress or NullProgress()
    aoi = read_aoi(config.aoi) if config.aoi else None
    if points is None:
        points = read_points(config.points, aoi=aoi, progress=scaled(progress, 0.0, 0.6))
    check_cancel(progress)
    if until is not None:
        keep = points.dates <= until
        if keep.sum() < 2:
            raise InputError(f"{points.source}: fewer than two epochs remain before {until}.")
        points = replace(
            points,
            dates=points.dates[keep],
            displacement_mm=points.displacement_mm[:, keep],
            valid=points.valid[:, keep],
        )
    points = points.subset(points.valid.any(1))
    if points.n_points == 0:
        raise InputError(f"{config.points}: every series is empty.")
    try:
        require_metric(points.crs, points.source)
    except InputError:
        points = reproject_points(points, DEFAULT_CRS)
    regular = regularize_time(points, STEP_DAYS, progress=scaled(progress, 0.6, 0.75))
    if aoi is not None:
        x0, y0, x1, y1 = aoi.to_crs(points.crs).geometry.bounds
    else:
        half = config.cell_size_m / 2
        x0, y0, x1, y1 = (
            points.x.min() - half,
            points.y.min() - half,
            points.x.max() + half,
            points.y.max() + half,
        )
    grid = make_grid((x0, y0, x1, y1), config.cell_size_m, points.crs)
    cube = grid_points(regular, grid, progress=scaled(progress, 0.75, 0.9))
    check_cancel(progress)
    if config.use_priors:
        priors = build_priors(
            grid,
            dem=config.dem,
            geology=config.geology,
            geology_field=config.geology_field,
            soil=config.soil,
            soil_field=config.soil_field,
            points=points,
            progress=scaled(progress, 0.9, 1.0),
        )
    else:
        priors = build_priors(grid)
    return Scene(points, regular, cube, priors, aoi)


def model_config(scene: Scene, horizon_steps: int, config: RunConfig) -> tuple[ModelConfig, dict | None]:
    """The architecture for this scene and, when fine-tuning, the starting weights."""
    fresh = ModelConfig(
        horizon_steps=horizon_steps,
        cell_size_m=scene.cube.grid.cell_size_m,
        initial_range_m=10 * scene.cube.grid.cell_size_m,
    )
    if not config.init_from:
        return fresh, None
    model, meta = load_checkpoint(config.init_from)
    if model.config.cell_size_m != fresh.cell_size_m:
        raise InputError(
            f"{config.init_from}: the model was trained on {model.config.cell_size_m:g} m cells; "
            f"use --cell-size {model.config.cell_size_m:g} to fine-tune it."
        )
    # nothing in the weights depends on the horizon or the area's size: only the window is new
    return replace(model.config, horizon_steps=horizon_steps), model.state_dict()


# the rows of PointModel.design, in order: three departures from the cell, then three pulls
DEPARTURES = ("trend", "recent_rate", "last", "persistence", "own_timefn", "own_line")


@dataclass
class PointModel:
    """How a point departs from its cell: the part of the forecast the grid cannot see.

    Several points share a 100 m cell but not always its motion (a building beside a field).
    A point's forecast is its own level plus its cell's forecast increment plus shares of six
    departures: its time-function trend minus the cell's, its last-year straight-line trend
    minus the cell's, its last value minus its level (short anomalies persist a little), and
    the pull toward persistence, toward its own time-function fit and toward its own
    straight line over the whole history (on real EGMS series the seasonal terms, fitted on a
    few years, often extrapolate worse than the plain velocity a year out). The shares per horizon
    are fitted by least squares on the validation period, like model output statistics in
    weather forecasting: they shrink noisy point trends toward the cell's, and where the
    network was less skilful than a baseline on the validation period they say so.

    `cells_at` applies the same to the grid itself, each cell its own "point": the maps get
    the pulls toward persistence and the cell's own fits, with shares fitted on the cells.
    """

    level: np.ndarray  # [N]
    departures: np.ndarray  # [3, H, N], independent of the network
    trend_own: np.ndarray  # [H, N] the point's own time-function increment
    line_own: np.ndarray  # [H, N] the point's own straight-line increment, whole history
    rows: np.ndarray
    cols: np.ndarray
    inside: np.ndarray

    @classmethod
    def at(cls, scene: Scene, anchor: int, dates_fc: np.ndarray) -> PointModel:
        """The points, from their history before epoch `anchor`."""
        regular, cube = scene.regular, scene.cube
        rows, cols, inside = cube.grid.cell_index(regular.x, regular.y)
        r, c = np.where(inside, rows, 0), np.where(inside, cols, 0)
        own = regular.displacement_mm[:, :anchor]
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
        level = window_level(own[:, recent, None, None])[:, 0, 0]
        trend_own = timefn_fit(dates, own, np.isfinite(own)).predict(dates_fc).T - level
        line_own = linear_trend(dates, own, dates_fc) - level
        rate_own = linear_trend(dates[recent], own[:, recent], dates_fc) - level
        if cell is own:  # a cell as its own point: it departs from nothing
            trend_cell, rate_cell = trend_own, rate_own
        else:
            cell_level = window_level(cell[:, recent, None, None])[:, 0, 0]
            trend_cell = timefn_fit(dates, cell, np.isfinite(cell)).predict(dates_fc).T - cell_level
            rate_cell = linear_trend(dates[recent], cell[:, recent], dates_fc) - cell_level
        last = persistence(own, np.isfinite(own))
        departures = np.stack(
            [trend_own - trend_cell, rate_own - rate_cell, np.broadcast_to(last - level, trend_own.shape)]
        )
        return cls(
            level, np.nan_to_num(departures), np.nan_to_num(trend_own), np.nan_to_num(line_own), rows, cols,
            inside,
        )

    def design(self, cell_increments: np.ndarray) -> np.ndarray:
        """[6, H, N] departures, given the cells' quantile increments [Q, H, rows, cols]."""
        median = cell_increments[len(cell_increments) // 2][:, self.rows, self.cols]
        median = np.nan_to_num(median)
        pulls = np.stack([-median, self.trend_own - median, self.line_own - median])
        return np.concatenate([self.departures, pulls])

    def quantiles(self, cell_increments: np.ndarray, shares: np.ndarray | None = None) -> np.ndarray:
        """[Q, H, N] from the cells' quantile increments [Q, H, rows, cols] and shares [6, H]."""
        q = self.level[None, None] + cell_increments[:, :, self.rows, self.cols]
        if shares is not None:
            q = q + (shares[:, :, None] * self.design(cell_increments)).sum(0)[None]
        q[:, :, ~self.inside] = np.nan
        return q


MAP_CHUNK_CELLS = 50_000  # cells per step of the map calibration: bounded memory on a 1000 x 1000 tile


def cells_with_data(scene: Scene, anchor: int) -> tuple[np.ndarray, np.ndarray]:
    return np.nonzero(np.isfinite(scene.cube.displacement_mm[:anchor]).any(0))


def calibrated_map(scene: Scene, anchor: int, dates_fc, cells: np.ndarray, shares, factor) -> np.ndarray:
    """[Q, H, rows, cols] map quantiles: the cells' PointModel.cells_at, a chunk of cells at a time."""
    out = np.full_like(cells, np.nan)
    rows, cols = cells_with_data(scene, anchor)
    for i in range(0, len(rows), MAP_CHUNK_CELLS):
        r, c = rows[i : i + MAP_CHUNK_CELLS], cols[i : i + MAP_CHUNK_CELLS]
        grid = PointModel.cells_at(scene, anchor, dates_fc, r, c)
        out[:, :, r, c] = widen(grid.quantiles(cells, shares), factor)
    return out


def calibrate_points(scene: Scene, cut: int, cal_cells: np.ndarray, horizon_steps: int, on_cells=False):
    """Shares [6, H] and interval factors [H], fitted where the network forecast the validation period.

    cal_cells [Q, H, rows, cols]: quantile increments forecast from epoch `cut`, the start of
    the validation period that no training target reached. `on_cells`: fit them for the grid
    (PointModel.cells_at), scored against the cells' own values, instead of the points.
    """
    step = np.timedelta64(STEP_DAYS, "D")
    dates = scene.regular.dates
    n_seen = min(len(dates) - cut, horizon_steps)
    dates_cal = dates[0] + (cut + np.arange(n_seen)) * step
    if on_cells:  # an even sample of the cells is plenty for a few shares per step
        rows, cols = cells_with_data(scene, cut)
        pick = np.unique(np.linspace(0, len(rows) - 1, min(len(rows), MAP_CHUNK_CELLS)).astype(int))
        cal = PointModel.cells_at(scene, cut, dates_cal, rows[pick], cols[pick])
        truth = scene.cube.displacement_mm[cut : cut + n_seen, cal.rows, cal.cols]
    else:
        cal = PointModel.at(scene, cut, dates_cal)
        truth = scene.regular.displacement_mm[:, cut : cut + n_seen].T
    cells = cal_cells[:, :n_seen]
    shares = fit_shares(cal.quantiles(cells), cal.design(cells), truth)
    factor = interval_scale(cal.quantiles(cells, shares), truth)
    return extend(shares, horizon_steps), extend(factor, horizon_steps)


def linear_trend(dates: np.ndarray, series: np.ndarray, dates_fc: np.ndarray) -> np.ndarray:
    """[H, N] extrapolation of each row's straight-line fit (no seasonal terms)."""
    fit = timefn_fit(dates, series, np.isfinite(series), annual=False, semiannual=False)
    return fit.predict(dates_fc).T


def fit_shares(raw: np.ndarray, departures: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Least-squares shares [D, H], each in [0, 1], of the departures [D, H, N] that best explain
    truth - raw median.

    The bounds are part of the fit, not a clip afterwards: the departures are strongly
    correlated, and clipping an unconstrained solution can leave a share far from optimal.
    """
    from scipy.optimize import lsq_linear

    D, H = departures.shape[0], raw.shape[1]
    shares = np.zeros((D, H))
    resid = truth - raw[1]
    for h in range(H):
        sl = slice(max(h - 3, 0), h + 4)  # pool neighbouring steps for stability
        y, X = resid[sl].ravel(), departures[:, sl].reshape(D, -1).T
        ok = np.isfinite(y) & np.isfinite(X).all(1)
        if ok.sum() >= 50:
            shares[:, h] = lsq_linear(X[ok].astype(float), y[ok].astype(float), bounds=(0.0, 1.0)).x
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


def forecast_scene(scene: Scene, config: RunConfig, horizon_days: int, progress=None, log=print) -> Forecast:
    """Train on the scene's own history, calibrate on its last months, forecast cells and points."""
    progress = progress or NullProgress()
    horizon_steps = max(1, math.ceil(horizon_days / STEP_DAYS))
    mconfig, init_state = model_config(scene, horizon_steps, config)
    area = make_area(scene.cube, scene.priors, mconfig.tile_cells)
    trained = fit(
        area,
        mconfig,
        config.train_options(),
        progress=scaled(progress, 0.0, 0.85),
        log=log,
        init_state=init_state,
    )

    # calibration: forecast the validation period (unseen by the training targets), score at the points
    # and at the cells
    cut = trained.log["validation_index"]
    cal_cells, _ = forecast_area(trained, area.until(cut))
    shares, factor = calibrate_points(scene, cut, cal_cells, horizon_steps)
    cell_shares, cell_factor = calibrate_points(scene, cut, cal_cells, horizon_steps, on_cells=True)

    check_cancel(progress)
    progress.progress(0.9, "forecasting")
    anchor = len(area.dates)
    step = np.timedelta64(STEP_DAYS, "D")
    dates = area.dates[0] + (anchor + np.arange(horizon_steps)) * step
    cells, cells_level = forecast_area(trained, area, progress=scaled(progress, 0.9, 1.0))
    points = PointModel.at(scene, anchor, dates)
    points_q = widen(points.quantiles(cells, shares), factor)
    cells_q = calibrated_map(scene, anchor, dates, cells, cell_shares, cell_factor)
    trained.log["point_shares"] = {
        name: shares[i, ::10].round(3).tolist() for i, name in enumerate(DEPARTURES)
    }
    # a cell departs from nothing: only its last value and the pulls can have a share
    trained.log["cell_shares"] = {
        name: cell_shares[i, ::10].round(3).tolist() for i, name in enumerate(DEPARTURES) if i >= 2
    }
    trained.log["cell_interval_scale"] = cell_factor[::10].round(3).tolist()
    return Forecast(dates, mconfig.quantiles, cells_q, cells_level, points_q, points.level, factor, trained)


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


def run_forecast(config: RunConfig, progress=None, log=print) -> dict:
    """Forecast config.horizon_days ahead and write the files listed in docs/architecture.md."""
    check_config(config)
    progress = progress or NullProgress()
    t0 = time.perf_counter()
    scene = prepare(config, scaled(progress, 0.0, 0.1))
    t_prepared = time.perf_counter()
    fc = forecast_scene(scene, config, config.horizon_days, scaled(progress, 0.1, 0.92), log=log)
    t_forecast = time.perf_counter()
    check_cancel(progress)
    progress.progress(0.93, "writing results")
    summary = write_forecast(
        config, scene, fc, {"prepare_s": t_prepared - t0, "train_and_forecast_s": t_forecast - t_prepared}
    )
    progress.progress(1.0, "done")
    return summary


def write_forecast(config: RunConfig, scene: Scene, fc: Forecast, timings: dict) -> dict:
    grid, points = scene.cube.grid, scene.points
    iso = [str(d) for d in fc.dates]
    q05, q50, q95 = fc.cells_mm
    exceed = exceedance_probability(fc.cells_mm, fc.cells_level_mm[None], config.threshold_mm)
    exceed[~np.isfinite(q50)] = np.nan
    p05, p50, p95 = fc.points_mm
    p_exceed = exceedance_probability(fc.points_mm[:, -1], fc.points_level_mm, config.threshold_mm)

    fit_pts = timefn_fit(points.dates, points.displacement_mm, points.valid)
    velocity = fit_pts.coefficient("velocity")
    last_obs = persistence(points.displacement_mm, points.valid)
    timefn_fc = fit_pts.predict(fc.dates)  # [N, H], as series.npz documents
    summary = {
        "groundcast_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "attribution": ATTRIBUTION,
        "inputs": {k: v for k, v in asdict(config).items() if k != "out_dir"},
        "product": points.product,
        "n_points": int(points.n_points),
        "observed_from": str(points.dates[0]),
        "observed_to": str(points.dates[-1]),
        "forecast_dates": iso,
        "grid": {
            "crs": grid.crs,
            "transform": list(grid.transform)[:6],
            "width": grid.width,
            "height": grid.height,
            "cell_size_m": grid.cell_size_m,
        },
        "priors": {
            "elevation_source": scene.priors.elevation_source,
            "geology_classes": scene.priors.geology_classes,
            "soil_classes": scene.priors.soil_classes,
        },
        "model": asdict(fc.trained.model.config),
        "n_parameters": sum(p.numel() for p in fc.trained.model.parameters()),
        "scale_mm": fc.trained.scale_mm,
        "interval_scale": [round(float(f), 3) for f in fc.interval_scale],
        "variogram_range_m": fc.trained.model.variogram_range_m(),
        "training": fc.trained.log,
        "device": fc.trained.device,
        "timings_s": timings,
    }
    with atomic_dir(config.out_dir) as tmp:
        tmp = Path(tmp)
        for name, values, unit in (
            ("forecast", q50, "mm"),
            ("forecast_q05", q05, "mm"),
            ("forecast_q95", q95, "mm"),
            ("interval90", q95 - q05, "mm"),
            ("exceedance", exceed, "1"),
        ):
            write_band_stack(tmp / f"{name}.tif", grid, values, iso, unit=unit)
        write_points_gpkg(
            tmp / "points.gpkg",
            points.x,
            points.y,
            points.crs,
            {
                "pid": points.ids.astype(str),
                "velocity_mm_yr": velocity,
                "last_obs_mm": last_obs,
                "forecast_mm": p50[-1],
                "q05_mm": p05[-1],
                "q95_mm": p95[-1],
                "interval90_mm": p95[-1] - p05[-1],
                "p_exceed": p_exceed,
                "horizon_date": np.full(points.n_points, iso[-1]),
            },
        )
        write_series_npz(
            tmp / "series.npz",
            pid=points.ids.astype(str),
            x=points.x,
            y=points.y,
            dates_obs=points.dates,
            obs_mm=np.where(points.valid, points.displacement_mm, np.nan),
            dates_fc=fc.dates,
            q05_mm=p05.T,
            q50_mm=p50.T,
            q95_mm=p95.T,
            timefn_mm=timefn_fc,
            persistence_mm=np.repeat(last_obs[:, None], len(iso), 1),
        )
        save_checkpoint(
            tmp / "model.safetensors",
            fc.trained.model,
            {
                "config": asdict(fc.trained.model.config),
                "scale_mm": fc.trained.scale_mm,
                "interval_scale": fc.interval_scale.tolist(),
                "grid": summary["grid"],
                "priors": summary["priors"],
            },
        )
        write_json(tmp / "summary.json", summary)
    return summary


def run_backtest(config: RunConfig, progress=None, log=print) -> dict:
    """Hold out the last holdout_days, train on the rest, score MM-STT and the baselines at the points."""
    check_config(config, "backtest")
    progress = progress or NullProgress()
    full = read_points(
        config.points, aoi=read_aoi(config.aoi) if config.aoi else None, progress=scaled(progress, 0.0, 0.05)
    )
    cut_date = full.dates[-1] - np.timedelta64(int(config.holdout_days), "D")
    if (full.dates <= cut_date).sum() < 2 or (full.dates > cut_date).sum() < 1:
        raise InputError(
            f"{config.points}: a hold-out of {config.holdout_days} days leaves no history "
            f"or no held-out epoch ({full.dates[0]} – {full.dates[-1]})."
        )
    t0 = time.perf_counter()
    scene = prepare(config, scaled(progress, 0.05, 0.12), until=cut_date, points=full)
    fc = forecast_scene(scene, config, int(config.holdout_days), scaled(progress, 0.12, 0.95), log=log)
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics, examples = score_backtest(full, scene, fc, config)
    metrics["seconds_train"] = float(fc.trained.log["seconds"])
    metrics["seconds_forecast"] = float(seconds - fc.trained.log["seconds"] + time.perf_counter() - t1)
    with atomic_dir(config.out_dir) as tmp:
        write_json(Path(tmp) / "metrics.json", metrics)
        plot_backtest(Path(tmp) / "backtest.png", metrics, examples)
    progress.progress(1.0, "done")
    return metrics


def score_backtest(full: PointSeries, scene: Scene, fc: Forecast, config: RunConfig):
    """Errors at the input points against their observed values, each horizon at the nearest held-out
    epoch."""
    train = scene.points
    keep = np.isin(full.ids, train.ids)
    held = full.subset(keep)
    order = {pid: i for i, pid in enumerate(held.ids)}
    held = held.subset(np.array([order[p] for p in train.ids]))  # same order as the training points
    future = held.dates > train.dates[-1]
    dates_future = held.dates[future]
    truth_all = np.where(held.valid[:, future], held.displacement_mm[:, future], np.nan)
    step_of = np.clip(nearest_epoch_index(fc.dates, dates_future), 0, len(fc.dates) - 1)
    q_at = fc.points_mm[:, step_of]  # [Q, E, N]
    last = persistence(train.displacement_mm, train.valid)
    timefn = timefn_fit(train.dates, train.displacement_mm, train.valid).predict(dates_future).T  # [E, N]

    horizons = [h for h in BACKTEST_HORIZONS_DAYS if h <= config.holdout_days]
    target_dates = train.dates[-1] + np.array(horizons).astype("timedelta64[D]")
    epoch_of = nearest_epoch_index(dates_future, target_dates)
    models = {"mmstt": q_at[1], "persistence": np.broadcast_to(last, truth_all.T.shape), "timefn": timefn}
    metrics = {"horizons_days": horizons, "models": {}}
    for name, pred in models.items():
        scores = {"rmse_mm": [], "mae_mm": [], "r2": []}
        for e in epoch_of:
            truth, guess = truth_all[:, e], pred[e]
            scores["rmse_mm"].append(rmse(truth, guess))
            scores["mae_mm"].append(mae(truth, guess))
            scores["r2"].append(r2(truth, guess))
        metrics["models"][name] = scores
    truth_e = truth_all.T  # [E, N]
    metrics["mmstt_coverage90"] = coverage(truth_e, q_at[0], q_at[2])
    metrics["mmstt_crps_mm"] = crps_from_quantiles(truth_e, list(fc.quantiles), q_at)
    metrics["variogram_range_m"] = fc.trained.model.variogram_range_m()
    metrics["n_points"] = int(train.n_points)
    metrics["n_epochs_train"] = int(len(train.dates))
    metrics["seconds_train"] = 0.0
    metrics["seconds_forecast"] = 0.0
    metrics["device"] = fc.trained.device

    examples = []
    speed = np.abs(timefn_fit(train.dates, train.displacement_mm, train.valid).coefficient("velocity"))
    finite = np.where(np.isfinite(speed) & np.isfinite(q_at[1]).all(0))[0]
    for i in (
        finite[np.argsort(speed[finite])][::-1][:2].tolist()
        + finite[len(finite) // 2 : len(finite) // 2 + 1].tolist()
    ):
        examples.append(
            {
                "label": f"point {train.ids[i]}",
                "dates_obs": train.dates,
                "obs_mm": np.where(train.valid[i], train.displacement_mm[i], np.nan),
                "dates_truth": dates_future,
                "truth_mm": truth_all[i],
                "dates_fc": fc.dates,
                "q05_mm": fc.points_mm[0, :, i],
                "q50_mm": fc.points_mm[1, :, i],
                "q95_mm": fc.points_mm[2, :, i],
                "timefn_mm": timefn_fit(
                    train.dates, train.displacement_mm[i : i + 1], train.valid[i : i + 1]
                ).predict(fc.dates)[0],
                "persistence_mm": np.full(len(fc.dates), last[i]),
            }
        )
    return metrics, examples
