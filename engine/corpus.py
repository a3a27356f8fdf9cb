"""The pretraining corpus: a family of synthetic regions, each drawn at random from a seed.

A region is a grid of cells observed by InSAR on a regular 6-day axis, with prior maps and the
noise-free truth. Its size and shape, point density and clustering, line of sight (L2b, with a
LOS vector, or L3 vertical / east-west), cell size, processes and noise are all drawn. The
processes tie to the priors as they do in nature (compaction where the ground is compressible,
swelling where the soil is clayey, creep on steep weak slopes), but how strongly, and through
which classes, changes from region to region, so a model must read the priors, not memorise a map.
Patches whose rate changes once, tied to no map, teach it that the whole history is not always
the best guide.

Generator configurations are named; `HELD_OUT_CONFIG` never enters pretraining, and neither do
seeds at or above `HELD_OUT_SEED`, so both can score the base model on regions it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import fft
from scipy.special import ndtr

from .definitions import EGMS_CRS, STEP_DAYS
from .grid import Cube, Grid
from .priors import Priors, slope_aspect

YEAR_DAYS = 365.25
HELD_OUT_SEED = 1_000_000

# How likely each process is in a configuration's regions.
CONFIGS = {
    "mixed": {"aquifer": 0.5, "swelling": 0.6, "creep": 0.35, "earthquake": 0.2, "thermal": 0.4,
              "excavation": 0.2, "tectonic": 0.8, "rate_change": 0.5},
    "basin": {"aquifer": 0.9, "swelling": 0.7, "creep": 0.1, "earthquake": 0.05, "thermal": 0.3,
              "excavation": 0.1, "tectonic": 0.6, "rate_change": 0.4},
    "mountain": {"aquifer": 0.1, "swelling": 0.3, "creep": 0.8, "earthquake": 0.4, "thermal": 0.2,
                 "excavation": 0.05, "tectonic": 0.9, "rate_change": 0.5},
    # held out of pretraining: cities, where structures and works dominate
    "urban": {"aquifer": 0.4, "swelling": 0.3, "creep": 0.05, "earthquake": 0.05, "thermal": 0.95,
              "excavation": 0.9, "tectonic": 0.5, "rate_change": 0.5},
}
HELD_OUT_CONFIG = "urban"
PRETRAIN_CONFIGS = tuple(name for name in CONFIGS if name != HELD_OUT_CONFIG)

GEOLOGY_LOW = ("clay", "silt", "alluvium", "peat", "sand", "gravel", "fill", "loess", "marl")
GEOLOGY_HIGH = ("limestone", "sandstone", "flysch", "marl", "shale", "granite", "conglomerate", "dolomite",
                "mudstone", "basalt", "schist")
SOIL_NAMES = ("clay", "silt", "loam", "sand", "peat", "rock")
DECORATIONS = ("{}", "Quaternary {}", "Holocene {} deposits", "{} (undivided)", "Pliocene {}", "{} unit",
               "{}-rich", "weathered {}", "{} formation")
# relative compressibility of the ground under each word, and soil swelling; each region perturbs them
COMPRESSIBILITY = {"peat": 1.5, "clay": 1.0, "silt": 0.7, "fill": 0.7, "alluvium": 0.6, "loess": 0.4,
                   "marl": 0.3, "sand": 0.25, "gravel": 0.08}
SWELLING = {"clay": 1.0, "peat": 0.7, "silt": 0.5, "loam": 0.45, "sand": 0.1, "rock": 0.0}
WEAK = {"clay", "silt", "marl", "flysch", "shale", "mudstone", "loess"}


@dataclass
class Region:
    """One synthetic region: what an EGMS product and prior maps would show, and the truth."""

    cube: Cube  # observed, cumulative since the first epoch, NaN where no point or epoch
    priors: Priors
    truth_mm: np.ndarray  # [T, H, W] noise-free, in the observations' reference; NaN outside the region
    product: str  # "L2b", "L3-U" or "L3-E"
    config: str
    seed: int
    processes: dict = field(default_factory=dict)  # name -> its own truth [T, H, W] share, for tests


def smooth_field(rng, shape, cell_m: float, length_m: float) -> np.ndarray:
    """A zero-mean, unit-variance random field with correlation length `length_m`.

    Lengths beyond a third of the grid cannot show as wiggles on it: that share of the variance
    becomes a random plane, which is what a long wavelength looks like on a small region.
    """
    H, W = shape[-2:]
    fitting = min(length_m, max(H, W) * cell_m / 3)
    noise = rng.standard_normal(shape)
    ky = fft.fftfreq(H, d=cell_m)[:, None]
    kx = fft.fftfreq(W, d=cell_m)[None, :]
    gain = np.exp(-2 * (np.pi * fitting) ** 2 * (kx**2 + ky**2))
    out = fft.ifft2(fft.fft2(noise, axes=(-2, -1)) * gain, axes=(-2, -1)).real
    out = _unit(out)
    long_share = 1 - fitting / length_m
    if long_share > 0:
        slopes = rng.standard_normal(shape[:-2] + (2, 1, 1))
        plane = slopes[..., 0, :, :] * np.arange(H)[:, None] + slopes[..., 1, :, :] * np.arange(W)[None, :]
        out = np.sqrt(1 - long_share) * out + np.sqrt(long_share) * _unit(plane)
    return out.astype(np.float32)


def _unit(values: np.ndarray) -> np.ndarray:
    values = values - values.mean(axis=(-2, -1), keepdims=True)
    return values / np.maximum(values.std(axis=(-2, -1), keepdims=True), 1e-9)


def _acquisitions(rng, start: np.datetime64, years: float) -> tuple[np.ndarray, np.ndarray]:
    """Regular dates and which of them were acquired: 12-day sampling early on, gaps of weeks."""
    n = int(years * YEAR_DAYS / STEP_DAYS)
    dates = start + np.arange(n) * np.timedelta64(STEP_DAYS, "D")
    acquired = np.ones(n, bool)
    twelve_day_until = int(rng.uniform(0, 0.4) * n)  # one satellite only in the early years
    acquired[1:twelve_day_until:2] = False
    for _ in range(rng.integers(0, 4)):
        at, weeks = rng.integers(10, n - 10), rng.integers(2, 9)
        acquired[at : at + weeks * 7 // STEP_DAYS] = False
    acquired[0] = True
    return dates, acquired


def _decorated(rng, word: str) -> str:
    return DECORATIONS[rng.integers(len(DECORATIONS))].format(word).capitalize()


def make_region(seed: int, config: str | None = None) -> Region:
    """The region of `seed`; its configuration is drawn from the pretraining ones unless given."""
    rng = np.random.default_rng(seed)
    config = config or PRETRAIN_CONFIGS[rng.integers(len(PRETRAIN_CONFIGS))]
    odds = CONFIGS[config]
    cell_m = float(rng.choice([50.0, 100.0, 100.0, 100.0, 200.0]))
    H, W = (int(v) for v in rng.integers(20, 56, size=2))
    years = rng.uniform(4.0, 5.5)
    start = np.datetime64("2016-01-01") + np.timedelta64(int(rng.integers(0, 4 * 365)), "D")
    dates, acquired = _acquisitions(rng, start, years)
    T = len(dates)
    t = ((dates - dates[0]).astype(np.float64) / YEAR_DAYS).astype(np.float32)  # years since the start
    season = ((dates - dates.astype("datetime64[Y]")).astype(np.float64) / YEAR_DAYS).astype(np.float32)
    x = (np.arange(W) + 0.5) * cell_m
    y = (np.arange(H) + 0.5) * cell_m
    xx, yy = np.meshgrid(x, y)

    # --- landscape and prior maps
    relief = rng.uniform(5, 600)
    ramp = (np.cos(np.deg2rad(rng.uniform(0, 360))) * xx + np.sin(np.deg2rad(rng.uniform(0, 360))) * yy)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1.0)
    hills = smooth_field(rng, (H, W), cell_m, rng.uniform(300, 1500))
    elevation = (relief * (0.6 * ramp + 0.4 * (hills - hills.min()) / max(np.ptp(hills), 1e-6))
                 + rng.uniform(0, 300)).astype(np.float32)
    slope, aspect = slope_aspect(elevation, cell_m)
    low_units = list(rng.choice(GEOLOGY_LOW, size=rng.integers(1, 4), replace=False))
    high_units = list(rng.choice(GEOLOGY_HIGH, size=rng.integers(1, 4), replace=False))
    words = low_units + high_units
    height_rank = (elevation - elevation.min()) / max(np.ptp(elevation), 1e-6)
    mixing = smooth_field(rng, (H, W), cell_m, rng.uniform(300, 2000)) * rng.uniform(0.05, 0.3)
    position = np.clip(height_rank + mixing, 0, 0.999)
    geology = (position * len(words)).astype(np.int16) + 1
    geology_classes = [_decorated(rng, w) for w in words]
    soil_words = list(rng.choice(SOIL_NAMES, size=rng.integers(2, 5), replace=False))
    soil_field = np.clip(height_rank + smooth_field(rng, (H, W), cell_m, 800.0) * 0.25, 0, 0.999)
    soil = (soil_field * len(soil_words)).astype(np.int16) + 1
    soil_classes = [_decorated(rng, w) for w in soil_words]
    has_geology, has_soil = rng.random() < 0.8, rng.random() < 0.6

    # the tie between the ground and the motion varies by region: perturbed weights, partly ignored
    tie = rng.uniform(0.0, 1.0)
    comp_by_word = {w: COMPRESSIBILITY.get(w, 0.02) * float(np.exp(rng.normal(0, 0.4))) for w in words}
    compress = np.array([comp_by_word[w] for w in words], np.float32)[geology - 1]
    compress = tie * compress + (1 - tie) * float(compress.mean())
    swell_by_word = {w: SWELLING.get(w, 0.2) * float(np.exp(rng.normal(0, 0.4))) for w in soil_words}
    swell = np.array([swell_by_word[w] for w in soil_words], np.float32)[soil - 1]
    swell = tie * swell + (1 - tie) * float(swell.mean())
    weak = np.isin(np.array(words)[geology - 1], list(WEAK))

    # --- line of sight: (east, north, up) unit vector the product measures along
    product = str(rng.choice(["L2b", "L2b", "L3-U", "L3-E"]))
    if product == "L2b":
        incidence = np.deg2rad(rng.uniform(30, 45))
        heading = np.deg2rad(rng.choice([-12.0, 192.0]) + rng.normal(0, 2))
        los = np.array([-np.sin(incidence) * np.cos(heading), np.sin(incidence) * np.sin(heading),
                        np.cos(incidence)])
    else:
        los = np.array([0.0, 0.0, 1.0]) if product == "L3-U" else np.array([1.0, 0.0, 0.0])

    # --- processes: each [T, H, W] in mm along the line of sight
    processes: dict[str, np.ndarray] = {}
    T3 = t[:, None, None]

    def along(east=0.0, north=0.0, up=0.0):
        return los[0] * east + los[1] * north + los[2] * up

    if rng.random() < odds["aquifer"]:
        bowl = np.zeros((H, W), np.float32)
        for _ in range(rng.integers(1, 4)):
            cx, cy = rng.uniform(0, W * cell_m), rng.uniform(0, H * cell_m)
            sigma = rng.uniform(400, 3000)
            bowl += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)) * rng.uniform(0.5, 1.0)
        amount = rng.uniform(10, 80) * bowl * compress  # mm of eventual consolidation
        onset, tau = rng.uniform(-3, 3), rng.uniform(0.5, 5)
        since = np.maximum(T3 - onset, 0)
        sink = amount * (1 - np.exp(-since / tau)) + rng.uniform(0, 0.3) * amount * since / 5  # Terzaghi-like
        if rng.random() < 0.35:  # pumping stops: partial elastic rebound
            stop = rng.uniform(1, years)
            after = np.maximum(T3 - stop, 0)
            at_stop = amount * (1 - np.exp(-max(stop - onset, 0) / tau))
            rebound = rng.uniform(-0.3, 0.05) * at_stop * (1 - np.exp(-after / 0.7))
            sink = np.where(T3 < stop, sink, at_stop + rebound)
        if rng.random() < 0.5:  # summer pumping
            summer = np.maximum(np.sin(2 * np.pi * (season - 0.3)), 0)[:, None, None]
            sink = sink + amount / 80 * rng.uniform(1, 5) * summer
        processes["aquifer"] = along(up=-sink)
    if rng.random() < odds["swelling"]:
        amplitude, peak = rng.uniform(1, 8), rng.uniform(0, 1)
        cycle = np.cos(2 * np.pi * (season - peak))[:, None, None]
        processes["swelling"] = along(up=amplitude * swell * cycle)
    if rng.random() < odds["creep"]:
        steep = np.nan_to_num(slope) > rng.uniform(3, 15)
        moving = steep & (weak | (rng.random() < 0.2))
        speed = rng.uniform(5, 40) * moving * np.clip(np.nan_to_num(slope) / 20, 0.2, 1.5)
        wet_peak, surge = rng.uniform(0, 1), rng.uniform(0, 3)
        rate = 1 + surge * np.maximum(np.cos(2 * np.pi * (season - wet_peak)), 0)  # faster in the wet season
        travel = np.cumsum(rate) * STEP_DAYS / YEAR_DAYS / rate.mean()  # years of mean-rate motion
        downslope = np.deg2rad(np.nan_to_num(aspect))
        metres = speed * travel[:, None, None]
        processes["creep"] = along(east=metres * np.sin(downslope), north=metres * np.cos(downslope),
                                   up=-0.4 * metres)
    if rng.random() < odds["earthquake"]:
        ex, ey = rng.uniform(-0.5, 1.5) * W * cell_m, rng.uniform(-0.5, 1.5) * H * cell_m
        reach = rng.uniform(2000, 15000)
        decay = np.exp(-np.hypot(xx - ex, yy - ey) / reach)
        when, tau = rng.uniform(1.5, years - 0.3), rng.uniform(0.1, 1.5)
        size = rng.uniform(5, 60) * decay
        after = np.maximum(T3 - when, 0)
        shape = (T3 >= when) * (1 + rng.uniform(0.1, 0.5) * (1 - np.exp(-after / tau)))
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        processes["earthquake"] = along(*(size * shape * d for d in direction))
    if rng.random() < odds["thermal"]:
        towns = smooth_field(rng, (H, W), cell_m, rng.uniform(200, 800)) > rng.uniform(0.3, 1.2)
        height = rng.uniform(5, 40) * towns
        warm = rng.uniform(0.5, 0.6)  # of the year: July to early August
        expansion = 1.2e-5 * 11.0 * 1000  # mm per metre of structure over the temperature cycle
        cycle = np.cos(2 * np.pi * (season - warm))[:, None, None]
        processes["thermal"] = along(up=expansion * height * cycle)
    if rng.random() < odds["excavation"]:
        x0, x1 = rng.uniform(0, W * cell_m, size=2)
        y0, y1 = rng.uniform(0, H * cell_m, size=2)
        seg = np.array([x1 - x0, y1 - y0])
        length = max(np.linalg.norm(seg), 1.0)
        along_line = np.clip(((xx - x0) * seg[0] + (yy - y0) * seg[1]) / length**2, 0, 1)
        off = np.hypot(xx - (x0 + along_line * seg[0]), yy - (y0 + along_line * seg[1]))
        width = rng.uniform(60, 300)
        depth = rng.uniform(5, 40) * np.exp(-(off**2) / (2 * width**2))
        start_t, months = rng.uniform(0.5, years - 0.5), rng.uniform(2, 18)
        passes = start_t + along_line * months / 12  # the face advances along the line
        shape = ndtr((T3 - passes) / 0.08) * (1 + 0.3 * (1 - np.exp(-np.maximum(T3 - passes, 0) / 0.5)))
        processes["excavation"] = along(up=-depth * shape)
    if rng.random() < odds["tectonic"]:
        v = [rng.normal(0, 2) + rng.normal(0, 1.5) * (xx / 10000) + rng.normal(0, 1.5) * (yy / 10000)
             for _ in range(3)]
        accel = rng.normal(0, 0.4) if rng.random() < 0.3 else 0.0
        processes["tectonic"] = along(*(vi * T3 for vi in v)) + accel * T3**2 / 2
    # drawn from a stream of its own, so every other draw of a seed stays what it was
    changes = np.random.default_rng([seed, 1])
    if changes.random() < odds["rate_change"]:
        # patches whose rate changes once (works start or stop, a slope reactivates, pumping
        # moves): a fit over the whole history misses it, the recent rate does not
        shift = np.zeros((T, H, W), np.float32)
        for _ in range(changes.integers(1, 4)):
            length = changes.uniform(200, 1500)
            patch = smooth_field(changes, (H, W), cell_m, length) > changes.uniform(0.0, 1.0)
            when, months = changes.uniform(1.0, years), changes.uniform(0.5, 12)
            ramp = months / 12 * np.logaddexp(0, (T3 - when) / (months / 12))  # a smooth bend of the line
            shift += changes.normal(0, 8) * patch * ramp
        processes["rate_change"] = along(up=shift)
    truth = np.zeros((T, H, W), np.float32)
    for name, values in processes.items():
        processes[name] = np.broadcast_to(values, (T, H, W)).astype(np.float32)
        truth += processes[name]

    # --- where there are points: the region's outline, towns dense, fields sparse
    outline = smooth_field(rng, (H, W), cell_m, max(H, W) * cell_m / 4) + 1.5 * (
        1 - np.hypot((xx / (W * cell_m) - 0.5) * 2, (yy / (H * cell_m) - 0.5) * 2))
    inside = outline > rng.uniform(-0.5, 0.5)
    density = np.exp(smooth_field(rng, (H, W), cell_m, rng.uniform(200, 1000)) * rng.uniform(0.5, 1.5))
    points = rng.poisson(rng.uniform(0.5, 5) * density * (cell_m / 100) ** 2) * inside
    if points.sum() < 20:  # a region always has some points
        points[H // 2 - 2 : H // 2 + 2, W // 2 - 2 : W // 2 + 2] = 3

    # --- noise: white per point (so less in a cell of many), correlated atmosphere per epoch
    white = rng.uniform(1, 5) / np.sqrt(np.maximum(points, 1))
    atmosphere = smooth_field(rng, (T, H, W), cell_m, rng.uniform(1000, 10000)) * rng.uniform(0.5, 3)
    observed = truth + atmosphere + rng.standard_normal((T, H, W)).astype(np.float32) * white
    seen = acquired[:, None, None] & (points > 0)[None] & (rng.random((T, H, W)) > rng.uniform(0.0, 0.1))
    observed = np.where(seen, observed, np.nan)
    first = observed[np.argmax(seen, axis=0), np.arange(H)[:, None], np.arange(W)[None]]
    reference = np.where(seen.any(0), first, 0.0)  # EGMS: cumulative since each point's first epoch
    observed = (observed - reference).astype(np.float32)
    # the truth in the product's own reference: the noise of each point's first epoch shifts every
    # later value alike, so it belongs to what the product would show without noise; scored against
    # truth minus the noise-free first epoch, every forecaster would carry that unknowable offset
    truth = np.where(points[None] > 0, truth - reference, np.nan).astype(np.float32)

    grid = Grid(crs=EGMS_CRS, x_min=4_000_000.0, y_max=2_500_000.0 + H * cell_m, cell_size_m=cell_m,
                width=W, height=H)
    count = np.where(seen, points[None], 0).astype(np.uint16)
    priors = Priors(
        grid=grid, elevation_m=elevation, slope_deg=slope, aspect_deg=aspect,
        geology=geology if has_geology else np.zeros_like(geology),
        geology_classes=geology_classes if has_geology else [],
        soil=soil if has_soil else np.zeros_like(soil), soil_classes=soil_classes if has_soil else [],
        elevation_source="dem",
    )
    return Region(Cube(grid, dates, observed, count), priors, truth, product, config, seed, processes)
