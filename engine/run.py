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
from .aoi import read_aoi
from .baselines import persistence, timefn_fit
from .calibrate import DEPARTURES, PointModel, calibrate_points, calibrated_map, exceedance_probability, widen
from .checkpoint import load_checkpoint, save_checkpoint
from .definitions import ATTRIBUTION, STEP_DAYS
from .errors import InputError
from .evaluate import score_backtest
from .fileio import atomic_dir
from .model import ModelConfig
from .outputs import plot_backtest, write_band_stack, write_json, write_points_gpkg, write_series_npz
from .params import RunConfig
from .points import read_points
from .prepare import Scene, prepare
from .progress import NullProgress, check_cancel, scaled
from .sample import forecast_area
from .train import TrainedModel, fit
from .windows import forecast_dates, make_area


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


def forecast_scene(scene: Scene, config: RunConfig, horizon_days: int, progress=None, log=print) -> Forecast:
    """Train on the scene's own history, calibrate on its last months, forecast cells and points."""
    progress = progress or NullProgress()
    horizon_steps = max(1, math.ceil(horizon_days / STEP_DAYS))
    mconfig, init_state = model_config(scene, horizon_steps, config)
    area = make_area(scene.cube, scene.priors, mconfig)
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
    cut = trained.validation_index
    cal_cells, _ = forecast_area(trained, area.until(cut))
    shares, factor = calibrate_points(scene, cut, cal_cells, horizon_steps)
    cell_shares, cell_factor = calibrate_points(scene, cut, cal_cells, horizon_steps, on_cells=True)

    check_cancel(progress)
    progress.progress(0.9, "forecasting")
    anchor = len(area.dates)
    dates = forecast_dates(area.dates, anchor, horizon_steps)
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
