"""Training and forecast windows: the area as model inputs, tiles, origins and batches.

The cube is cut into overlapping S x S tiles; an example is one tile at one forecast origin
("anchor"): the L steps before it are the context, the H steps from it the target. Everything
is expressed relative to the origin's level and divided by one scale for the area, so the
model never sees absolute displacement and runs on any area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .baselines import DAYS_PER_YEAR, TimeFunction, origin_level
from .definitions import STEP_DAYS, class_row
from .errors import InputError
from .model import Batch, ModelConfig, time_features
from .store import chunk_values

LOOKBACK_STEPS = 122  # two years of history for the per-window time-function baseline
# The window baselines: (epochs of history, seasonal terms). K0 follows the last two years, K1 the
# last year's rate, K2 (models with three baselines) every epoch of the last five years, as steady
# as the whole series allows; the network learns which to trust where.
BASELINE_FITS = ((LOOKBACK_STEPS, True), (61, False), (305, True))
MIN_HISTORY_STEPS = 61  # an origin needs a year of history
# a point's or cell's own rate counts from a year of history (a whole season: 61 epochs of 6 days);
# seen for less, it is young: it follows its cell, and a young cell its older neighbours
MIN_OWN_RATE_SPAN_DAYS = (MIN_HISTORY_STEPS - 1) * STEP_DAYS
TILE_OVERLAP = 4
SCALE_SAMPLE_CELLS = 250_000  # cells the area's scale is measured on, at most


def forecast_dates(dates: np.ndarray, anchor: int, n_steps: int) -> np.ndarray:
    """[n_steps] regular dates from epoch `anchor` of the regular axis `dates` on."""
    return dates[0] + (anchor + np.arange(n_steps)) * np.timedelta64(STEP_DAYS, "D")


@dataclass
class Area:
    """The model's view of one area: regular-time cube plus static priors, padded to whole tiles."""

    dates: np.ndarray  # [T] datetime64[D], regular STEP_DAYS axis
    displacement_mm: np.ndarray  # [T, Hp, Wp] float32, NaN where no data
    priors: np.ndarray  # [C, Hp, Wp] float32, NaN-free
    geology: np.ndarray  # [Hp, Wp] int64
    soil: np.ndarray  # [Hp, Wp] int64
    height: int  # the grid's own size (before padding)
    width: int
    cell_size_m: float = 0.0

    def until(self, n_steps: int) -> Area:
        """The area as it was known after its first n_steps epochs."""
        return Area(
            self.dates[:n_steps],
            self.displacement_mm[:n_steps],
            self.priors,
            self.geology,
            self.soil,
            self.height,
            self.width,
            self.cell_size_m,
        )


def padded(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """[T, H, W] values in the top-left corner of a no-data (NaN) float32 [T, *shape] array."""
    out = np.full((len(values), *shape), np.nan, np.float32)
    out[:, : values.shape[1], : values.shape[2]] = values
    return out


def make_area(cube, priors, config: ModelConfig) -> Area:
    """Stack the cube and priors into model inputs, padded with no-data to at least one tile."""
    T, H, W = cube.displacement_mm.shape
    Hp, Wp = max(H, config.tile_cells), max(W, config.tile_cells)
    if (Hp, Wp) == (H, W) and cube.displacement_mm.dtype == np.float32:
        disp = cube.displacement_mm  # read only from here on: no copy of a large cube
    else:
        disp = padded(cube.displacement_mm, (Hp, Wp))
    elev = priors.elevation_m.astype(np.float64)
    known = np.isfinite(elev)
    z = (elev - np.nanmean(elev)) / (np.nanstd(elev) + 1e-6) if known.any() else np.zeros_like(elev)
    aspect = np.deg2rad(np.nan_to_num(priors.aspect_deg, nan=0.0))
    flat = ~np.isfinite(priors.aspect_deg)
    channels = [
        z,
        np.nan_to_num(priors.slope_deg, nan=0.0) / 30.0,
        np.where(flat, 0.0, np.sin(aspect)),
        np.where(flat, 0.0, np.cos(aspect)),
        known,
    ]
    prior = np.zeros((len(channels), Hp, Wp), np.float32)
    for i, channel in enumerate(channels):
        prior[i, :H, :W] = np.nan_to_num(channel, nan=0.0)

    def classes(codes, names, n_rows):
        """Class codes -> vocabulary rows (engine.definitions.class_row), folded onto a smaller table."""
        rows = np.array([0] + [class_row(name) for name in names], np.int64)
        rows = np.where(rows >= n_rows, (rows - 1) % max(n_rows - 1, 1) + 1, rows)
        out = np.zeros((Hp, Wp), np.int64)
        out[:H, :W] = rows[np.clip(codes.astype(np.int64), 0, len(names))]
        return out

    geology = classes(priors.geology, priors.geology_classes, config.n_geology_classes)
    soil = classes(priors.soil, priors.soil_classes, config.n_soil_classes)
    return Area(cube.dates, disp, prior, geology, soil, H, W, cube.grid.cell_size_m)


def tile_origins(size: int, tile: int) -> list[int]:
    """Start offsets of overlapping tiles covering [0, size); the last one flush with the end."""
    stride = tile - TILE_OVERLAP
    starts = list(range(0, max(size - tile, 0) + 1, stride))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def observed_cells(displacement: np.ndarray, n_steps: int | None = None) -> np.ndarray:
    """[H, W] True where the cube [T, H, W] holds a value in its first n_steps epochs (all: None).

    A slab of epochs at a time, so a cube on disk is read once and never copied whole."""
    n_steps = displacement.shape[0] if n_steps is None else n_steps
    seen = np.zeros(displacement.shape[1:], bool)
    step = max(1, chunk_values() // max(1, seen.size))
    for start in range(0, n_steps, step):
        seen |= np.isfinite(displacement[start:min(start + step, n_steps)]).any(0)
    return seen


def occupied_tiles(area: Area, tile: int) -> list[tuple[int, int]]:
    seen = observed_cells(area.displacement_mm)
    return [
        (r, c)
        for r in tile_origins(seen.shape[0], tile)
        for c in tile_origins(seen.shape[1], tile)
        if seen[r : r + tile, c : c + tile].any()
    ]


def sample_tiles(tiles: list, n: int, seed: int) -> list:
    """At most `n` of `tiles`, drawn evenly by `seed` and kept in their order; all when fewer."""
    if len(tiles) <= n:
        return list(tiles)
    pick = np.sort(np.random.default_rng([seed, len(tiles)]).choice(len(tiles), size=n, replace=False))
    return [tiles[i] for i in pick]


def window_baselines(hist: np.ndarray, level: np.ndarray, horizon_steps: int,
                     n_baselines: int = 2) -> np.ndarray:
    """[B, K, H, S, S] baseline increments from the level, fitted on hist [B, Lb, S, S].

    The first K of BASELINE_FITS: offset + velocity (+ annual + semi-annual, MintPy-style) over
    the last n epochs of hist (all of it, when shorter).
    """
    if not 1 <= n_baselines <= len(BASELINE_FITS):
        raise ValueError(f"{n_baselines} baselines asked for; there are {len(BASELINE_FITS)}")
    B, Lb, S, _ = hist.shape
    t = (np.arange(Lb) - Lb) * STEP_DAYS / DAYS_PER_YEAR  # years before the origin
    tf = np.arange(horizon_steps) * STEP_DAYS / DAYS_PER_YEAR
    out = np.zeros((B, n_baselines, horizon_steps, S, S), np.float32)
    y = hist.reshape(B, Lb, S * S).transpose(0, 2, 1).reshape(B * S * S, Lb)  # [cells, Lb]
    w = np.isfinite(y)
    y = np.where(w, y, 0.0)
    for k, (recent, seasonal) in enumerate(BASELINE_FITS[:n_baselines]):
        function = TimeFunction(annual=seasonal, semiannual=seasonal)
        first = max(Lb - recent, 0)
        A, Af = function.design_years(t[first:]), function.design_years(tf)
        n_terms = A.shape[1]
        wk, yk = w[:, first:].astype(np.float64), y[:, first:]
        # every cell's normal equations as two matrix products (einsum over cells is ~20x slower)
        AtA = (wk @ (A[:, :, None] * A[:, None, :]).reshape(-1, n_terms**2)).reshape(-1, n_terms, n_terms)
        # shrink seasonal and rate terms towards zero where data are thin (ridge, not the offset)
        ridge = np.full(n_terms, 1.0)
        ridge[0] = 1e-6
        AtA = AtA + np.diag(ridge)
        Aty = (yk * wk) @ A
        coef = np.linalg.solve(AtA, Aty[..., None])[..., 0]  # [cells, terms]
        pred = (coef @ Af.T).reshape(B, S * S, horizon_steps).transpose(0, 2, 1)
        pred = pred.reshape(B, horizon_steps, S, S)
        enough = wk.sum(-1).reshape(B, 1, S, S) >= 6
        out[:, k] = np.where(enough, pred - level[:, None], 0.0)
    return out


@dataclass
class Targets:
    """What a batch's forecasts are scored against, and the level they start from."""

    level_mm: np.ndarray  # [B, S, S] the origin's level
    target: np.ndarray | None = None  # [B, H, S, S] change from the level / scale, 0 where unobserved
    target_mask: np.ndarray | None = None  # [B, H, S, S] bool
    truth: np.ndarray | None = None  # [B, H, S, S] the same from a noise-free truth, when one is known
    truth_mask: np.ndarray | None = None


def make_batch(area: Area, tiles, anchors, config: ModelConfig, scale_mm: float,
               with_target: bool, truth_mm: np.ndarray | None = None,
               seen_epochs: np.ndarray | None = None) -> tuple[Batch, Targets]:
    """Model inputs for a list of (row, col) tiles at forecast origins `anchors` (epoch indices).

    `truth_mm` [T, Hp, Wp] (a synthetic region's noise-free truth) adds `Targets.truth`.
    `seen_epochs` [B, S, S]: each cell's history before its last `seen_epochs` epochs is left out
    (new points among old ones), inputs and baselines alike; the targets stay."""
    S, L, H = config.tile_cells, config.context_steps, config.horizon_steps
    T = len(area.dates)
    Lb = max(max(n for n, _ in BASELINE_FITS[:config.n_baselines]), L)
    n = len(tiles)
    look = np.full((n, Lb, S, S), np.nan, np.float32)
    target = np.full((n, H, S, S), np.nan, np.float32)
    clean = np.full((n, H, S, S), np.nan, np.float32) if truth_mm is not None else None
    tfeat = np.zeros((n, L + H, 5), np.float32)
    for i, ((r, c), a) in enumerate(zip(tiles, anchors)):
        lo = max(a - Lb, 0)
        look[i, Lb - (a - lo) :] = area.displacement_mm[lo:a, r : r + S, c : c + S]
        if with_target:
            hi = min(a + H, T)
            target[i, : hi - a] = area.displacement_mm[a:hi, r : r + S, c : c + S]
            if clean is not None:
                clean[i, : hi - a] = truth_mm[a:hi, r : r + S, c : c + S]
        tfeat[i] = time_features(forecast_dates(area.dates, a - L, L + H))
    if seen_epochs is not None:
        look[np.arange(Lb)[None, :, None, None] < Lb - np.asarray(seen_epochs)[:, None]] = np.nan
    level = origin_level(look[:, -MIN_HISTORY_STEPS:], axis=1)
    hist = look[:, -L:] - level[:, None]
    baselines = window_baselines(look, level, H, config.n_baselines)
    rows = [r for r, _ in tiles]
    cols = [c for _, c in tiles]
    idx = (
        np.array(rows)[:, None, None] + np.arange(S)[None, :, None],
        np.array(cols)[:, None, None] + np.arange(S)[None, None, :],
    )
    batch = Batch(
        history=np.nan_to_num(hist / scale_mm, nan=0.0),
        history_mask=np.isfinite(hist),
        time_features=tfeat,
        priors=area.priors[:, idx[0], idx[1]].transpose(1, 0, 2, 3),
        geology=area.geology[idx],
        soil=area.soil[idx],
        baselines=baselines / scale_mm,
        cell_size_m=area.cell_size_m,
    )
    targets = Targets(level)
    if with_target:
        goal = (target - level[:, None]) / scale_mm
        targets.target, targets.target_mask = np.nan_to_num(goal, nan=0.0), np.isfinite(goal)
        if clean is not None:
            goal = (clean - level[:, None]) / scale_mm
            targets.truth, targets.truth_mask = np.nan_to_num(goal, nan=0.0), np.isfinite(goal)
    return batch, targets


def history_span_days(dates: np.ndarray, by_epoch: np.ndarray) -> np.ndarray:
    """Days from each series' first finite value to its last (shape by_epoch.shape[1:]); -1 where it
    has none. Reads one epoch at a time: `by_epoch` [T, ...] may be a cube on disk."""
    first = np.full(by_epoch.shape[1:], -1, np.int64)
    last = first.copy()
    for t in range(len(dates)):
        seen = np.isfinite(by_epoch[t])
        first[seen & (first < 0)] = t
        last[seen] = t
    days = (np.asarray(dates, "datetime64[D]") - np.asarray(dates[0], "datetime64[D]")).astype(np.int64)
    return np.where(first >= 0, days[last] - days[first], -1)


def area_scale_mm(area: Area) -> float:
    """Typical one-year change of the area, robustly: the unit the model works in.

    On a large area an even sample of SCALE_SAMPLE_COLUMNS grid columns is enough, and keeps
    this from copying the whole cube."""
    d = area.displacement_mm
    if len(d) <= MIN_HISTORY_STEPS:
        return 5.0
    if d.shape[1] * d.shape[2] > SCALE_SAMPLE_CELLS:
        step = -(-d.shape[1] * d.shape[2] // SCALE_SAMPLE_CELLS)
        d = d[:, :, ::step] if d.shape[2] >= step else d[:, ::step]
    change = (d[MIN_HISTORY_STEPS:] - d[:-MIN_HISTORY_STEPS]).ravel()
    change = change[np.isfinite(change)]
    if not len(change):
        return 5.0
    mad = np.median(np.abs(change - np.median(change))) * 1.4826
    return float(np.clip(max(mad, np.sqrt(np.mean(change**2)) * 0.5), 1.0, 200.0))


def split_anchors(n_epochs: int, horizon_steps: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Training origins whose targets end before the validation period, and validation origins."""
    val_steps = int(np.clip(n_epochs // 5, 10, horizon_steps))
    cut = n_epochs - val_steps
    train = np.arange(MIN_HISTORY_STEPS, cut)  # the last one's first target is epoch cut - 1
    val = np.unique(np.linspace(cut, max(cut, n_epochs - 2), 3).astype(int))
    if len(train) < 4:
        raise InputError(
            f"the series has {n_epochs} regular epochs; training needs at least "
            f"{MIN_HISTORY_STEPS + val_steps + 5} (about two years)."
        )
    return train, val, cut


def chunks(items: list, size: int):
    return [items[i : i + size] for i in range(0, len(items), size)]
