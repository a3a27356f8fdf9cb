"""One run, end to end: files on disk -> scene on a grid -> trained MM-STT -> forecast files.

`run_forecast` and `run_backtest` are what the command line, the QGIS task and the
Processing algorithms call. Both write only into the output folder, all at once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .aoi import read_aoi
from .calibrate import (DEPARTURES, calibrated_map, calibration_cases, calibration_origins, fit_calibration,
                        point_forecast)
from .checkpoint import load_checkpoint
from .definitions import STEP_DAYS
from .errors import InputError
from .evaluate import score_backtest
from .model import MMSTT, ModelConfig
from .params import RunConfig
from .points import read_points
from .results import OutputFolder, write_backtest_folder, write_forecast_folder
from .prepare import Scene, prepare
from .progress import NullProgress, check_cancel, scaled
from .sample import forecast_area
from .store import Scratch
from .train import TrainedModel, fit, pick_device
from .windows import area_scale_mm, forecast_dates, make_area, split_anchors

BASE_MODEL_NAME = "groundcast_base.safetensors"


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


def base_model_path() -> Path:
    """The shipped base model: resources/models/ of the plugin folder (the engine's parent)."""
    return Path(__file__).resolve().parent.parent / "resources" / "models" / BASE_MODEL_NAME


def model_config(scene: Scene, horizon_steps: int, config: RunConfig) -> tuple[ModelConfig, dict | None]:
    """The architecture for this scene and, unless trained from scratch, the starting weights."""
    if config.model == "scratch" and not config.init_from:
        fresh = ModelConfig(
            horizon_steps=horizon_steps,
            cell_size_m=scene.cube.grid.cell_size_m,
            initial_range_m=10 * scene.cube.grid.cell_size_m,
        )
        return fresh, None
    path = Path(config.init_from) if config.init_from else base_model_path()
    if config.init_from and not path.is_file():
        raise InputError(f"{path}: no such model file; give a model.safetensors, or choose base, zero-shot "
                         "or scratch.")
    if not path.is_file():
        raise InputError(f"{path}: the base model is not installed; reinstall the plugin, or choose the "
                         "model trained from scratch.")
    model, _ = load_checkpoint(path)
    # positions are the batch's own metres and nothing in the weights depends on the horizon or the
    # area's size: only the window is new
    return replace(model.config, horizon_steps=horizon_steps), model.state_dict()


def start_model(area, mconfig: ModelConfig, init_state: dict | None, config: RunConfig, progress,
                log) -> TrainedModel:
    """Fine-tune (or train, or with zero-shot only load) the network for this area."""
    if config.model != "zero-shot" or config.init_from:
        return fit(area, mconfig, config.train_options(), progress=progress, log=log, init_state=init_state)
    model = MMSTT(mconfig)
    model.load_state_dict(init_state)
    device = pick_device(config.device)
    _, _, cut = split_anchors(len(area.dates), mconfig.horizon_steps)
    log_info = {"epochs_run": 0, "mode": "zero-shot", "validation_from": str(area.dates[cut]), "seconds": 0.0}
    return TrainedModel(model.to(device).eval(), area_scale_mm(area), device, cut, log_info)


def forecast_scene(scene: Scene, config: RunConfig, horizon_days: int, progress=None, log=print) -> Forecast:
    """Train on the scene's own history, calibrate on its last months, forecast cells and points."""
    progress = progress or NullProgress()
    horizon_steps = max(1, math.ceil(horizon_days / STEP_DAYS))
    mconfig, init_state = model_config(scene, horizon_steps, config)
    area = make_area(scene.cube, scene.priors, mconfig)
    # the points' forecast and the map grow with the area while training does not: their share
    # of the bar grows with the points, so the time-left estimate holds on a million points
    late = 0.05 + 0.3 * min(1.0, scene.regular.n_points / 1e6)
    trained_at = 0.85 - late
    trained = start_model(area, mconfig, init_state, config, scaled(progress, 0.0, trained_at), log)
    progress.progress(trained_at, "calibrating")

    # calibration: forecast the validation period (unseen by the training targets), score at the points
    # and at the cells
    cut = trained.validation_index
    n_steps = min(len(area.dates) - cut, horizon_steps)
    point_cases, cell_cases = [], []
    for origin in calibration_origins(cut, len(area.dates)):  # one forecast in memory at a time
        check_cancel(progress)
        cal_cells, _ = forecast_area(trained, area.until(origin))
        point_cases.append(calibration_cases(scene, origin, cal_cells, n_steps))
        cell_cases.append(calibration_cases(scene, origin, cal_cells, n_steps, on_cells=True))
        del cal_cells
    calibration = fit_calibration(point_cases, horizon_steps, progress)
    cell_calibration = fit_calibration(cell_cases, horizon_steps, progress)

    check_cancel(progress)
    progress.progress(trained_at + 0.05, "forecasting")
    anchor = len(area.dates)
    dates = forecast_dates(area.dates, anchor, horizon_steps)
    cells, cells_level = forecast_area(trained, area,
                                       progress=scaled(progress, trained_at + 0.05, 1.0 - late))
    points_q, points_level = point_forecast(scene, anchor, dates, cells, calibration,
                                            progress=scaled(progress, 1.0 - late, 1.0 - late / 3))
    cells_q = calibrated_map(scene, anchor, dates, cells, cell_calibration,
                             progress=scaled(progress, 1.0 - late / 3, 1.0))
    trained.log["point_shares"] = {
        name: calibration.shares[i, ::10].round(3).tolist() for i, name in enumerate(DEPARTURES)
    }
    # a cell departs from nothing: only its last value and the pulls can have a share
    trained.log["cell_shares"] = {
        name: cell_calibration.shares[i, ::10].round(3).tolist()
        for i, name in enumerate(DEPARTURES) if i >= 2
    }
    trained.log["cell_interval_scale"] = cell_calibration.factor[::10].round(3).tolist()
    trained.log["band_spread"] = {"points": calibration.spread, "cells": cell_calibration.spread}
    return Forecast(dates, mconfig.quantiles, cells_q, cells_level, points_q, points_level,
                    calibration.factor, trained)


def run_forecast(config: RunConfig, progress=None, log=print) -> dict:
    """Forecast config.horizon_days ahead and write the files listed in docs/architecture.md."""
    config.check("forecast")
    progress = progress or NullProgress()
    with OutputFolder(config, "forecast") as out, Scratch(out.path):  # checked and locked before any training
        t0 = time.perf_counter()
        scene = prepare(config, scaled(progress, 0.0, 0.1))
        for note in scene.notes:
            log(note)
        t_prepared = time.perf_counter()
        # writing takes a larger part of the run as points grow (measured: a third at a million),
        # so the time-left estimate holds through it
        writing = 0.08 + 0.3 * min(1.0, scene.points.n_points / 1e6)
        fc = forecast_scene(scene, config, config.horizon_days, scaled(progress, 0.1, 1.0 - writing), log=log)
        t_forecast = time.perf_counter()
        check_cancel(progress)
        timings = {"prepare_s": t_prepared - t0, "train_and_forecast_s": t_forecast - t_prepared}
        summary = write_forecast_folder(out, config, scene, fc, timings, scaled(progress, 1.0 - writing, 1.0))
    progress.progress(1.0, "done")
    return summary


def run_backtest(config: RunConfig, progress=None, log=print) -> dict:
    """Hold out the last holdout_days, train on the rest, score MM-STT and the baselines at the points."""
    config.check("backtest")
    progress = progress or NullProgress()
    with OutputFolder(config, "backtest") as out, Scratch(out.path):  # checked and locked before any training
        aoi = read_aoi(config.aoi) if config.aoi else None
        full = read_points(config.points, aoi=aoi, progress=scaled(progress, 0.0, 0.05))
        cut_date = full.dates[-1] - np.timedelta64(int(config.holdout_days), "D")
        if (full.dates <= cut_date).sum() < 2 or (full.dates > cut_date).sum() < 1:
            raise InputError(
                f"{config.points}: a hold-out of {config.holdout_days} days leaves no history "
                f"or no held-out epoch ({full.dates[0]} – {full.dates[-1]})."
            )
        t0 = time.perf_counter()
        scene = prepare(config, scaled(progress, 0.05, 0.12), until=cut_date, points=full)
        for note in scene.notes:
            log(note)
        fc = forecast_scene(scene, config, int(config.holdout_days), scaled(progress, 0.12, 0.95), log=log)
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        metrics, examples = score_backtest(full, scene, fc, config)
        metrics["seconds_train"] = float(fc.trained.log["seconds"])
        metrics["seconds_forecast"] = float(seconds - fc.trained.log["seconds"] + time.perf_counter() - t1)
        metrics = write_backtest_folder(out, metrics, examples)
    progress.progress(1.0, "done")
    return metrics
