"""Scene preparation: points read, clipped and resampled onto a grid, with the priors on the same grid."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .aoi import AOI, read_aoi
from .crs import require_metric
from .definitions import EGMS_CRS, STEP_DAYS
from .errors import InputError
from .grid import Cube, grid_points, make_grid
from .params import RunConfig
from .points import PointSeries, read_points, regularize_time, reproject_points
from .priors import Priors, build_priors
from .progress import NullProgress, check_cancel, scaled


@dataclass
class Scene:
    """Everything a run learns from, aligned on one grid."""

    points: PointSeries  # inside the AOI, in the grid's CRS, original dates
    regular: PointSeries  # the same points on the regular STEP_DAYS axis
    cube: Cube
    priors: Priors
    aoi: AOI | None


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
        points = reproject_points(points, EGMS_CRS)
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
