"""The analysis grid (aligned to the EGMS L3 grid) and gridding point series into a cube."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rasterio.transform import from_origin

from .crs import crs_string, require_metric, same_crs
from .errors import InputError
from .progress import check_cancel
from .store import big_array, chunk_values

_BATCH_VALUES = 4_000_000  # values gathered at once when taking medians: bounds the working memory

# What a run holds per grid cell, measured on the arrays it makes: per epoch the cube's median
# (float32) and count (uint16), the training area's copy and the data masks; per forecast step
# three quantile maps (float32) in about six copies (calibration, blending, the written maps);
# per cell the priors and class maps.
BYTES_PER_CELL_EPOCH = 12
BYTES_PER_CELL_STEP = 72
BYTES_PER_CELL = 64
OUTLIER_MIN_DISTANCE_M = 10_000.0  # nearer than this to the others a point is never an outlier
NOTE_ABOVE_BYTES = 500_000_000     # a run's memory is noted in the log above this


@dataclass(frozen=True)
class Grid:
    crs: str
    x_min: float        # west edge, metres
    y_max: float        # north edge, metres
    cell_size_m: float
    width: int
    height: int

    @property
    def transform(self):
        """The affine.Affine from (col, row) to (x, y) of the cell's corner, north up."""
        return from_origin(self.x_min, self.y_max, self.cell_size_m, self.cell_size_m)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) of the outer cell edges."""
        return (self.x_min, self.y_max - self.height * self.cell_size_m,
                self.x_min + self.width * self.cell_size_m, self.y_max)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def cell_index(self, x, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, col, inside) for coordinates; a cell holds its west and north edges."""
        col = np.floor((np.asarray(x, dtype=np.float64) - self.x_min) / self.cell_size_m)
        row = np.floor((self.y_max - np.asarray(y, dtype=np.float64)) / self.cell_size_m)
        inside = (row >= 0) & (row < self.height) & (col >= 0) & (col < self.width)
        row = np.where(inside, row, -1).astype(np.int64)
        col = np.where(inside, col, -1).astype(np.int64)
        return row, col, inside

    def cell_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """(x [W] of the column centres, y [H] of the row centres), north to south."""
        half = self.cell_size_m / 2
        x = self.x_min + half + self.cell_size_m * np.arange(self.width)
        y = self.y_max - half - self.cell_size_m * np.arange(self.height)
        return x, y

    def window(self, row0: int, col0: int, height: int, width: int) -> Grid:
        """The sub-grid starting at (row0, col0), cut to this grid's extent."""
        if not (0 <= row0 < self.height and 0 <= col0 < self.width and height > 0 and width > 0):
            raise ValueError(f"window ({row0}, {col0}, {height}, {width}) is outside the "
                             f"{self.height} × {self.width} grid")
        return Grid(crs=self.crs, x_min=self.x_min + col0 * self.cell_size_m,
                    y_max=self.y_max - row0 * self.cell_size_m, cell_size_m=self.cell_size_m,
                    width=min(width, self.width - col0), height=min(height, self.height - row0))


@dataclass
class Cube:
    grid: Grid
    dates: np.ndarray            # [T] datetime64[D]
    displacement_mm: np.ndarray  # [T, H, W] float32, median of the points per cell and epoch, NaN where none
    count: np.ndarray            # [T, H, W] uint16, points that contributed

    @property
    def valid(self) -> np.ndarray:
        return self.count > 0

    def window(self, row0: int, col0: int, height: int, width: int) -> Cube:
        """The cube on `grid.window(...)`; the arrays are views, not copies."""
        grid = self.grid.window(row0, col0, height, width)
        rows, cols = slice(row0, row0 + grid.height), slice(col0, col0 + grid.width)
        return Cube(grid=grid, dates=self.dates, displacement_mm=self.displacement_mm[:, rows, cols],
                    count=self.count[:, rows, cols])


def memory_budget_bytes() -> int:
    """What one run may hold: half of this computer's memory (4 GB when that cannot be read)."""
    try:
        import os

        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2)
    except (AttributeError, ValueError, OSError):
        return 4_000_000_000


def size_text(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


def grid_shape(bounds, cell_size_m: float) -> tuple[int, int]:
    """(height, width) of make_grid(bounds, cell_size_m), computed without making anything."""
    x0, y0, x1, y1 = (float(b) for b in bounds)
    size = float(cell_size_m)
    width = math.floor(x1 / size) + 1 - math.floor(x0 / size)
    height = math.ceil(y1 / size) - math.ceil(y0 / size) + 1
    return height, width


def run_bytes(n_cells: int, n_epochs: int, horizon_steps: int = 0) -> int:
    """Estimated memory of a run on `n_cells` grid cells over `n_epochs` regular epochs."""
    return int(n_cells) * (BYTES_PER_CELL + BYTES_PER_CELL_EPOCH * int(n_epochs)
                           + BYTES_PER_CELL_STEP * int(horizon_steps))


def check_grid_budget(bounds, cell_size_m: float, n_epochs: int, budget_bytes: int | None, source: str,
                      horizon_steps: int = 0) -> int:
    """The estimated memory of a run on the grid covering `bounds`, before anything is allocated.

    Over `budget_bytes` (None: memory_budget_bytes()) it is refused in one sentence naming `source`
    (the points or the area of interest) and the remedy. Returns the estimate in bytes.
    """
    if not (math.isfinite(cell_size_m) and cell_size_m > 0):
        raise InputError(f"{source}: the cell size must be a positive number of metres, not {cell_size_m}.")
    if not all(math.isfinite(float(b)) for b in bounds):
        raise InputError(f"{source}: the extent {tuple(bounds)} is not a valid area.")
    budget = memory_budget_bytes() if budget_bytes is None else int(budget_bytes)
    height, width = grid_shape(bounds, cell_size_m)
    need = run_bytes(height * width, n_epochs, horizon_steps)
    if need > budget:
        raise InputError(f"{source}: a grid of {width:,} × {height:,} cells of {cell_size_m:g} m over "
                         f"{n_epochs:,} epochs needs about {size_text(need)} of memory, over the budget of "
                         f"{size_text(budget)}; give a smaller area of interest or a larger cell size.")
    return need


def outlying_points(x, y) -> tuple[np.ndarray, float]:
    """(mask of the points far from the rest, the distance in metres that made them so).

    A point is far when it lies further from the median centre than five times the distance
    within which three quarters of the points lie, and at least OUTLIER_MIN_DISTANCE_M: a
    stray point at 0, 0 or in degrees, not the edge of a spread-out area.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape[0] < 3:
        return np.zeros(x.shape[0], bool), math.inf
    distance = np.hypot(x - np.median(x), y - np.median(y))
    reach = max(5 * float(np.quantile(distance, 0.75)), OUTLIER_MIN_DISTANCE_M)
    return distance > reach, reach


def check_outlying_points(x, y, ids, cell_size_m: float, source: str, max_growth: float = 10.0) -> None:
    """InputError naming the points far from the rest when they spread the grid over more than
    `max_growth` times the cells the others need."""
    far, reach = outlying_points(x, y)
    if not far.any() or far.all():
        return
    x, y, ids = np.asarray(x), np.asarray(y), np.asarray(ids)
    half = cell_size_m / 2

    def cells(keep):
        h, w = grid_shape((x[keep].min() - half, y[keep].min() - half, x[keep].max() + half,
                           y[keep].max() + half), cell_size_m)
        return h * w

    if cells(np.ones(x.shape[0], bool)) <= max_growth * cells(~far):
        return
    n = int(far.sum())
    shown = ", ".join(str(i) for i in ids[far][:10]) + (", …" if n > 10 else "")
    points = "point lies" if n == 1 else "points lie"
    raise InputError(f"{source}: {n:,} {points} more than {reach / 1000:,.0f} km from the rest "
                     f"(ids {shown}); remove them or give an area of interest.")


def make_grid(bounds, cell_size_m: float = 100.0, crs: str = "EPSG:3035") -> Grid:
    """The smallest grid covering `bounds` (x_min, y_min, x_max, y_max) whose edges are multiples
    of `cell_size_m`, so 100 m cells in EPSG:3035 coincide with the EGMS L3 grid."""
    require_metric(crs, "grid")
    x0, y0, x1, y1 = (float(b) for b in bounds)
    if not (all(math.isfinite(b) for b in (x0, y0, x1, y1)) and x0 <= x1 and y0 <= y1):
        raise InputError(f"grid: the bounds {tuple(bounds)} are not a valid extent.")
    if not (math.isfinite(cell_size_m) and cell_size_m > 0):
        raise InputError(f"grid: the cell size must be a positive number of metres, not {cell_size_m}.")
    size = float(cell_size_m)
    # Cells hold their west and north edges, so every point of `bounds` lands inside.
    x_min = math.floor(x0 / size) * size
    x_max = (math.floor(x1 / size) + 1) * size
    y_max = math.ceil(y1 / size) * size
    y_min = (math.ceil(y0 / size) - 1) * size
    return Grid(crs=crs_string(crs, "grid"), x_min=x_min, y_max=y_max, cell_size_m=size,
                width=round((x_max - x_min) / size), height=round((y_max - y_min) / size))


def grid_values(x, y, values: np.ndarray, grid: Grid, valid: np.ndarray | None = None,
                progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Median and count per cell of point values [N, K] (NaN or not `valid` = missing).

    Returns (median [K, H, W] float32, NaN where no value; count [K, H, W] uint16). Points are
    grouped by cell once; cells with the same number of points are reduced together.
    """
    values = np.asarray(values)
    n_layers = values.shape[1]
    row, col, inside = grid.cell_index(x, y)
    members = np.flatnonzero(inside)
    cell = row[members] * grid.width + col[members]
    order = np.argsort(cell, kind="stable")
    members, cell = members[order], cell[order]
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]]) if cell.size else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[starts, cell.size])

    median = big_array((n_layers, grid.height * grid.width), np.float32, np.nan)
    count = big_array((n_layers, grid.height * grid.width), np.uint16, 0)
    distinct_sizes = np.unique(sizes)
    for step, size in enumerate(distinct_sizes):
        group_starts = starts[sizes == size]
        batch = max(1, chunk_values(_BATCH_VALUES) // (int(size) * n_layers))
        for first in range(0, group_starts.size, batch):
            check_cancel(progress)
            heads = group_starts[first:first + batch]
            point_index = members[heads[:, None] + np.arange(size)]       # [G, size]
            block = values[point_index].astype(np.float32, copy=False)    # [G, size, K]
            if valid is not None:
                block[~valid[point_index]] = np.nan
            middle, n = _median_of_groups(block)
            # cells in increasing order: on disk, a write touches each layer's pages once
            median[:, cell[heads]], count[:, cell[heads]] = middle, n
        if progress is not None:
            progress.progress((step + 1) / distinct_sizes.size, "Gridding the points")
    return median.reshape(n_layers, grid.height, grid.width), count.reshape(n_layers, grid.height, grid.width)


def grid_points(points, grid: Grid, progress=None) -> Cube:
    """The cube of per-cell, per-epoch medians of the points on `grid` (points outside are ignored)."""
    if not same_crs(points.crs, grid.crs):
        raise InputError(f"{points.source}: the points are in {points.crs} but the grid is in {grid.crs}; "
                         "reproject the points first.")
    median, count = grid_values(points.x, points.y, points.displacement_mm, grid, points.valid, progress)
    return Cube(grid=grid, dates=points.dates, displacement_mm=median, count=count)


def _median_of_groups(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NaN-ignoring median and count over axis 1 of [G, size, K]; returns [K, G] each."""
    n = (~np.isnan(block)).sum(axis=1, dtype=np.int32)                    # [G, K]
    if block.shape[1] == 1:
        middle = block[:, 0, :]
    else:
        block.sort(axis=1)  # NaN sort last, so the n valid values come first
        low = np.take_along_axis(block, np.maximum(n - 1, 0)[:, None, :] // 2, axis=1)[:, 0, :]
        high = np.take_along_axis(block, (n // 2)[:, None, :], axis=1)[:, 0, :]
        middle = np.where(n > 0, (low + high) / 2, np.nan)
    return middle.T, np.minimum(n, np.iinfo(np.uint16).max).astype(np.uint16).T
