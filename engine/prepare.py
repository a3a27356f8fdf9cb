"""Scene preparation: points read, clipped and resampled onto a grid, with the priors on the same grid."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .aoi import AOI, read_aoi
from .crs import require_metric
from .definitions import EGMS_CRS, STEP_DAYS
from .errors import InputError
from .grid import (NOTE_ABOVE_BYTES, Cube, check_grid_budget, check_outlying_points, grid_points, make_grid,
                   memory_budget_bytes, size_text)
from .params import RunConfig
from .points import PointSeries, read_points, regular_epoch_count, regularize_time, reproject_points
from .priors import Priors, build_priors
from .progress import NullProgress, check_cancel, scaled
from . import store


@dataclass
class Scene:
    """Everything a run learns from, aligned on one grid."""

    points: PointSeries  # inside the AOI, in the grid's CRS, original dates
    regular: PointSeries  # the same points on the regular STEP_DAYS axis
    cube: Cube
    priors: Priors
    aoi: AOI | None
    notes: list[str] = field(default_factory=list)  # for the log and summary.json, one sentence each


def prepare(
    config: RunConfig,
    progress=None,
    until: np.datetime64 | None = None,
    points: PointSeries | None = None,
    budget_bytes: int | None = None,
) -> Scene:
    """Read, clip, resample and grid the points, and put the priors on the same grid.

    With `until`, epochs after that date are dropped before anything else sees them (a backtest:
    the horizon is then config.holdout_days). `points` skips reading them again when the caller
    already has them (inside the AOI). Before the grid is made, its memory is estimated against
    `budget_bytes` (None: half of this computer's memory), with or without an AOI; points far from
    the rest are named. What the inputs needed repaired is in Scene.notes.
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
    observed = points.valid.any(1)
    if not observed.all():  # a copy of the series only when some are empty
        points = points.subset(observed)
    if points.n_points == 0:
        raise InputError(f"{config.points}: every series is empty.")
    try:
        require_metric(points.crs, points.source)
    except InputError:
        points = reproject_points(points, EGMS_CRS)
    budget = memory_budget_bytes() if budget_bytes is None else int(budget_bytes)
    scratch = store.active()
    if scratch is not None and budget_bytes is None:  # the cube and the series go to disk
        budget = max(budget, scratch.free_bytes() // 2)
    horizon_days = config.holdout_days if until is not None else config.horizon_days
    horizon_steps = max(1, math.ceil(horizon_days / STEP_DAYS))
    n_epochs = regular_epoch_count(points.dates, STEP_DAYS)
    check_history(points, n_epochs, horizon_steps)
    if aoi is not None:
        bounds = aoi.to_crs(points.crs).geometry.bounds
        source = f"area of interest {aoi.source}"
    else:
        check_outlying_points(points.x, points.y, points.ids, config.cell_size_m, points.source)
        half = config.cell_size_m / 2
        bounds = (points.x.min() - half, points.y.min() - half, points.x.max() + half, points.y.max() + half)
        source = points.source
    need = check_grid_budget(bounds, config.cell_size_m, n_epochs, budget, source, horizon_steps)
    regular = regularize_time(points, STEP_DAYS, progress=scaled(progress, 0.6, 0.75), max_bytes=budget)
    check_observed_epochs(regular, horizon_steps)
    grid = make_grid(bounds, config.cell_size_m, points.crs)
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
    from .windows import MIN_OWN_RATE_SPAN_DAYS, history_span_days  # imports torch, as check_history does

    notes = [*points.notes, *(aoi.notes if aoi is not None else ()), *priors.notes]
    series, step = points.displacement_mm, max(1, store.chunk_values() // max(len(points.dates), 1))
    young = sum(int((history_span_days(points.dates, np.asarray(series[lo : lo + step]).T)
                     < MIN_OWN_RATE_SPAN_DAYS).sum()) for lo in range(0, points.n_points, step))
    if young:
        notes.append(f"{points.source}: {young:,} points are seen for less than a year; each takes its "
                     "cell's forecast, and a cell with only such points that of its nearest older cells.")
    if need > NOTE_ABOVE_BYTES:
        notes.append(f"{source}: the grid of {grid.width:,} × {grid.height:,} cells over {n_epochs:,} epochs "
                     f"takes about {size_text(need)} of memory.")
    return Scene(points, regular, cube, priors, aoi, notes)


def min_history_epochs(horizon_steps: int) -> int:
    """The fewest regular epochs training accepts for this horizon (windows.split_anchors' rule)."""
    from .windows import split_anchors  # imports torch: only when a run is prepared

    for n_epochs in range(2, 10_000):
        try:
            split_anchors(n_epochs, horizon_steps)
            return n_epochs
        except InputError:
            continue
    raise ValueError(f"no history is long enough for {horizon_steps} steps")


def check_history(points: PointSeries, n_epochs: int, horizon_steps: int) -> None:
    """InputError naming the file when its dates span too few regular epochs to train on."""
    need = min_history_epochs(horizon_steps)
    if n_epochs < need:
        raise InputError(
            f"{points.source}: its dates from {points.dates[0]} to {points.dates[-1]} span {n_epochs} epochs "
            f"of {STEP_DAYS} days, and training needs at least {need} (about "
            f"{need * STEP_DAYS / 365.25:.1f} years); give a longer time series."
        )


def check_observed_epochs(regular: PointSeries, horizon_steps: int) -> None:
    """InputError naming the file when no point is observed on enough regular epochs: two dates
    ten years apart span many epochs but show nothing to learn from. An epoch counts for a point
    when an observation lies on it or close enough to interpolate (regularize_time)."""
    need = min_history_epochs(horizon_steps)
    observed = int(regular.valid.sum(1).max())
    if observed < need:
        raise InputError(
            f"{regular.source}: no point is observed on more than {observed} of its {regular.n_dates} epochs "
            f"of {STEP_DAYS} days from {regular.dates[0]} to {regular.dates[-1]}, and training needs at "
            f"least {need}; give series observed at least every few weeks."
        )
