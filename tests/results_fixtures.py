"""A tiny synthetic forecast, written through engine.results without training a model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from engine.grid import Grid
from engine.model import MMSTT, ModelConfig
from engine.params import RunConfig
from engine.points import PointSeries
from engine.results import OutputFolder, write_backtest_folder, write_forecast_folder

GRID = Grid("EPSG:3035", 4_321_000.0, 3_210_000.0, 100.0, width=6, height=4)
N_POINTS, N_OBS, N_FC = 5, 12, 3


def tiny_scene_and_forecast(seed: int = 0):
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2020-01-03") + 6 * np.arange(N_OBS).astype("timedelta64[D]")
    displacement = np.cumsum(rng.normal(0, 1, (N_POINTS, N_OBS)), 1).astype(np.float32)
    points = PointSeries(
        ids=np.array([f"P{i}" for i in range(N_POINTS)]),
        x=GRID.x_min + 50 + 100 * np.arange(N_POINTS, dtype=float),
        y=np.full(N_POINTS, GRID.y_max - 150.0),
        crs="EPSG:3035", dates=dates, displacement_mm=displacement,
        valid=np.ones((N_POINTS, N_OBS), bool), attributes={}, source="synthetic", product="L2b")
    fc_dates = dates[-1] + 6 * np.arange(1, N_FC + 1).astype("timedelta64[D]")
    level = rng.normal(0, 1, (GRID.height, GRID.width))
    median = level[None] + np.linspace(-1, -3, N_FC)[:, None, None]
    cells = np.stack([median - 2, median, median + 2])
    cells[:, :, 0, 0] = np.nan  # a cell far from every point
    p_level = displacement[:, -1].astype(float)
    p_median = p_level[None] + np.linspace(-1, -3, N_FC)[:, None]
    model = MMSTT(ModelConfig(d_model=8, n_heads=2, n_layers=1, horizon_steps=N_FC))
    trained = SimpleNamespace(model=model, scale_mm=1.0, log={"epochs_run": 1}, device="cpu")
    fc = SimpleNamespace(dates=fc_dates, quantiles=(0.05, 0.5, 0.95), cells_mm=cells, cells_level_mm=level,
                         points_mm=np.stack([p_median - 2, p_median, p_median + 2]), points_level_mm=p_level,
                         interval_scale=np.ones(N_FC), trained=trained)
    priors = SimpleNamespace(elevation_source=None, geology_classes=None, soil_classes=None)
    scene = SimpleNamespace(points=points, cube=SimpleNamespace(grid=GRID), priors=priors, notes=[])
    return scene, fc


def config_for(out, **values) -> RunConfig:
    values.setdefault("points", "synthetic.csv")
    return RunConfig(out_dir=str(out), **values)


def write_tiny_forecast(out, seed: int = 0, **values) -> dict:
    config = config_for(out, **values)
    scene, fc = tiny_scene_and_forecast(seed)
    with OutputFolder(config, "forecast") as folder:
        return write_forecast_folder(folder, config, scene, fc, {"prepare_s": 0.0})


def write_tiny_backtest(out, **values) -> dict:
    config = config_for(out, **values)
    models = {"mmstt": {"rmse_mm": [1.0], "mae_mm": [0.8], "r2": [0.5]},
              "persistence": {"rmse_mm": [2.0], "mae_mm": [1.5], "r2": [0.1]}}
    metrics = {"horizons_days": [12], "models": models,
               "mmstt_coverage90": 0.9, "mmstt_crps_mm": 0.5, "variogram_range_m": 300.0, "n_points": 5,
               "n_epochs_train": 12, "seconds_train": 1.0, "seconds_forecast": 0.1, "device": "cpu"}
    with OutputFolder(config, "backtest") as folder:
        return write_backtest_folder(folder, metrics, [])
