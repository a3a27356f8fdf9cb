"""Synthetic demo region: an EGMS L2b 2020–2024 file, prior maps and the noise-free truth behind it.

The landscape is loosely modelled on the southern edge of the Po plain at Bologna: a plain of
compressible clay and alluvial-fan deposits to the north, Apennine foothills of sandstone, clay,
flysch and limestone to the south. Nothing in it is real data. Every number follows from `seed`,
and `truth.npz` keeps each process apart so tests and benchmarks can score against a known answer.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import fiona
import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio.features import rasterize
from rasterio.transform import from_origin
from scipy import fft
from scipy.ndimage import gaussian_filter
from scipy.signal import lfilter
from shapely.geometry import LineString, MultiPolygon, Polygon, box, mapping
from shapely.ops import unary_union

from .fileio import atomic_dir
from .progress import Progress, check_cancel

CRS = "EPSG:3035"
POINTS_NAME = "EGMS_L2b_demo_2020_2024.csv"

# The 2020–2024 L2b header, column for column; the date columns (yyyymmdd) follow it.
L2B_ATTRIBUTE_COLUMNS = (
    "pid", "mp_type", "latitude", "longitude", "easting", "northing", "height_ortho", "height_ellipse",
    "line", "pixel", "rmse_ts", "temporal_coherence", "amplitude_dispersion", "incidence_angle",
    "track_angle", "los_east", "los_north", "los_up", "mean_velocity", "mean_velocity_std",
    "acceleration", "acceleration_std", "seasonality", "seasonality_std", "gnss_velocity",
)

CENTRE_LON_LAT = (11.33, 44.49)      # the hills' edge at Bologna
DEM_CELL_M = 25.0
MAP_MARGIN_M = 250.0                 # the maps reach past the points, as real maps do
HEADING_DEG = 191.42                 # a descending track, as in the real burst
INCIDENCE_DEG = 37.5                 # at the region centre
INCIDENCE_PER_M = 0.068e-3           # ~29° to ~46° across the 250 km IW swath
WAVELENGTH_MM = 55.47                # Sentinel-1 C band
GEOID_UNDULATION_M = 45.9            # ellipsoidal minus orthometric height near Bologna
YEAR_DAYS = 365.25

GEOLOGY_UNITS = ("alluvium", "clay", "sandstone", "flysch", "limestone")
SOIL_CLASSES = ("clay-rich", "loam", "sandy", "thin-rocky")
COMPRESSIBILITY = {"clay": 1.0, "alluvium": 0.6}          # of the plain's fill, relative
WEAK_UNITS = ("clay", "flysch")
HARDNESS = {"alluvium": 0.7, "clay": 0.7, "sandstone": 1.0, "flysch": 0.85, "limestone": 1.3}  # ridge relief
SWELLING_MM = {"clay-rich": 5.0, "loam": 2.0, "sandy": 0.7, "thin-rocky": 0.0}  # vertical semi-amplitude
STEEP_SLOPE_DEG = 15.0
WET_SEASON_PEAK_DOY = 320            # mid-November: autumn rains on the Po plain
WARMEST_DOY = 200                    # mid-July
TEMPERATURE_C = (13.5, 11.0)         # mean and semi-amplitude of the annual cycle at Bologna
THERMAL_EXPANSION_PER_K = 1.2e-5     # concrete and steel
BACKGROUND_MM_YR = (0.4, 0.9, -0.6)  # east, north, up: the whole region drifting with Adria
# points per km²: clustered on built areas and bare slopes, sparse on fields and woods
DENSITY_PER_KM2 = {"city": 300, "industry": 300, "village": 300, "farm": 400,
                   "rock": 250, "badlands": 150, "fields": 8, "woods": 10}
BUILDING_HEIGHT_M = {"city": (18.0, 0.45), "industry": (10.0, 0.2), "village": (9.0, 0.25),
                     "farm": (7.0, 0.2)}                  # median and log-spread
BUILT_KINDS = ("city", "industry", "village", "farm")


def make_demo(out_dir, seed: int = 0, size_km: float = 8.0,
              progress: Progress | None = None) -> dict[str, str]:
    """Write the demo region into `out_dir` (all files or none) and return their paths by role.

    Roles: points, dem, geology, soil, aoi, truth, description.
    """
    streams = dict(zip(
        ("dates", "terrain", "cover", "points", "aquifer", "swelling", "landslide", "seismic",
         "climate", "atmosphere", "noise", "missing", "ids"),
        (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(13))))
    size_m = round(size_km * 10) * 100.0   # whole 100 m cells of the EGMS L3 grid
    if size_m < 1000:
        raise ValueError("size_km must be at least 1")

    def step(fraction, message):
        check_cancel(progress)
        if progress is not None:
            progress.progress(fraction, message)

    step(0.0, "terrain and maps")
    params = {}
    dates, missing_dates = _acquisition_dates(streams["dates"])
    land = _landscape(streams["terrain"], size_m)
    cover, params["land_cover"] = _land_cover(streams["cover"], land)
    step(0.15, "measurement points")
    pts = _points(streams["points"], land, cover)
    climate = _Climate(streams["climate"], dates)
    step(0.25, "ground motion")
    components = {}
    components["aquifer_mm"], params["aquifer"] = _aquifer(streams["aquifer"], land, pts, dates)
    components["swelling_mm"], params["swelling"] = _swelling(streams["swelling"], pts, climate)
    components["landslide_mm"], params["landslide"] = _landslide(streams["landslide"], land, pts, climate)
    components["seismic_mm"], params["earthquake"] = _earthquake(streams["seismic"], land, pts, dates)
    components["thermal_mm"], params["thermal"] = _thermal(pts, climate)
    components["background_mm"], params["background"] = _background(pts, dates)
    truth = sum(components.values())
    step(0.45, "atmosphere and noise")
    atmosphere, params["atmosphere"] = _atmosphere(streams["atmosphere"], land, pts, dates)
    noise_sigma = np.where(pts.mp_type == 0, streams["noise"].uniform(2.0, 3.0, pts.n),
                           streams["noise"].uniform(2.8, 3.8, pts.n))
    noise = streams["noise"].standard_normal(truth.shape) * noise_sigma[:, None]
    valid, params["missing"] = _missing(streams["missing"], pts.n, dates)
    observed = np.where(valid, truth + atmosphere + noise, np.nan)
    step(0.6, "EGMS attributes")
    attributes = _egms_attributes(streams["ids"], pts, dates, observed, noise_sigma)
    order = np.lexsort((attributes["pixel"], attributes["line"]))  # radar order, like the real files

    step(0.7, "writing files")
    names = {"points": POINTS_NAME, "dem": "dem.tif", "geology": "geology.gpkg", "soil": "soil.gpkg",
             "aoi": "aoi.geojson", "truth": "truth.npz", "description": "demo.json"}
    with atomic_dir(out_dir) as tmp:
        _write_points_csv(tmp / names["points"], attributes, observed, dates, order)
        step(0.85, "writing maps")
        _write_dem(tmp / names["dem"], land)
        _write_polygons(tmp / names["geology"], "geology", "unit", land.geology)
        _write_polygons(tmp / names["soil"], "soil", "soil", land.soil)
        aoi_lon_lat = _write_aoi(tmp / names["aoi"], land)
        _write_truth(tmp / names["truth"], attributes["pid"], pts, dates, truth, components, atmosphere,
                     noise, valid, order)
        description = _description(seed, size_m, land, dates, missing_dates, pts, params, aoi_lon_lat,
                                   names)
        (tmp / names["description"]).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
        step(0.98, "finishing")
    if progress is not None:   # no cancel check here: the files are already in place
        progress.progress(1.0, "demo region written")
    return {role: str(Path(out_dir) / name) for role, name in names.items()}


# --- time ---------------------------------------------------------------------------------------

def _acquisition_dates(rng):
    """Sentinel-1 dates of one track: 6-day with S1A+S1B, 12-day after S1B failed (23 Dec 2021)."""
    six_day = np.arange(np.datetime64("2020-01-03"), np.datetime64("2021-12-30"), 6)
    twelve_day = np.arange(six_day[-1] + 12, np.datetime64("2025-01-01"), 12)
    # a few acquisitions are missing for the whole burst, two in each era (as in the real file)
    dropped = np.concatenate([rng.choice(np.arange(1, six_day.size), 2, replace=False),
                              six_day.size + rng.choice(twelve_day.size - 1, 2, replace=False)])
    dates = np.concatenate([six_day, twelve_day])
    return np.delete(dates, dropped), np.sort(dates[dropped])


def _years(dates, since):
    return (dates - since).astype(np.float64) / YEAR_DAYS


def _season(days, peak_doy):
    """cos of the annual cycle, 1 on day-of-year `peak_doy`."""
    doy = (days - days.astype("datetime64[Y]")).astype(np.float64) + 1
    return np.cos(2 * np.pi * (doy - peak_doy) / YEAR_DAYS)


class _Climate:
    """Daily rainfall, the soil and slope wetness it drives, and air temperature."""

    SOIL_RESPONSE_DAYS = 45.0    # clay soils wet up and dry out over weeks
    SLOPE_RESPONSE_DAYS = 70.0   # pore pressure in a slope lags longer

    def __init__(self, rng, dates):
        self.days = np.arange(dates[0] - 365, dates[-1] + 1)   # a year of spin-up for the filters
        hydro_year = (self.days + 92).astype("datetime64[Y]").astype(int)  # years from 1 October
        year_factor = rng.uniform(0.6, 1.4, hydro_year.max() - hydro_year.min() + 1)
        storms = rng.gamma(0.5, 2.0, self.days.size)             # mean 1, heavy-tailed
        self.rain = (year_factor[hydro_year - hydro_year.min()]
                     * (1 + 0.9 * _season(self.days, WET_SEASON_PEAK_DOY)) * storms)
        self.soil_wetness = _low_pass(self.rain, self.SOIL_RESPONSE_DAYS)
        self.slope_wetness = _low_pass(self.rain, self.SLOPE_RESPONSE_DAYS)
        self.temperature_c = TEMPERATURE_C[0] + TEMPERATURE_C[1] * _season(self.days, WARMEST_DOY)
        self.index = (dates - self.days[0]).astype(int)

    def at(self, series):
        return series[self.index]


def _low_pass(series, days):
    """First-order response (a reservoir emptying with time constant `days`), started at the mean."""
    a = np.exp(-1.0 / days)
    return lfilter([1 - a], [1, -a], series, zi=[a * series.mean()])[0]


def _terzaghi(tv):
    """Average degree of consolidation U(Tv) of a clay layer (Terzaghi's series; 0 before onset)."""
    tv = np.maximum(np.asarray(tv, dtype=np.float64), 0.0)
    m = np.pi * (2 * np.arange(60) + 1) / 2
    series = 1 - np.sum(2 / m[:, None] ** 2 * np.exp(-m[:, None] ** 2 * tv[None, :]), axis=0)
    # the series converges slowly near onset, where sqrt(4 Tv / pi) is exact to 1e-4
    return np.where(tv < 0.2, np.sqrt(4 * tv / np.pi), series)


# --- landscape -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Curve:
    """A sinuous map boundary v(u) = base + amp * wiggle(u), u and v in metres from the region's SW corner."""
    base_m: float
    amp_m: float
    length_m: float
    phases: tuple

    def __call__(self, u):
        p1, p2 = self.phases
        return self.base_m + self.amp_m * (np.sin(2 * np.pi * u / self.length_m + p1)
                                           + 0.4 * np.sin(2 * np.pi * u / (0.41 * self.length_m) + p2))


def _map_transform(x0, y0, size_m):
    """The maps' grid: the region plus a margin, north-up, DEM_CELL_M cells."""
    return from_origin(x0 - MAP_MARGIN_M, y0 + size_m + MAP_MARGIN_M, DEM_CELL_M, DEM_CELL_M)


def _cell_centres(size_m):
    """u and v (metres from the region's SW corner) of the map cells' centres, each [H, W]."""
    n = int(round((size_m + 2 * MAP_MARGIN_M) / DEM_CELL_M))
    u = -MAP_MARGIN_M + DEM_CELL_M * (np.arange(n) + 0.5)
    v = size_m + MAP_MARGIN_M - DEM_CELL_M * (np.arange(n) + 0.5)
    return np.meshgrid(u, v)


@dataclass
class _Landscape:
    x0: float                 # region SW corner, EPSG:3035
    y0: float
    size_m: float
    front: _Curve             # the foot of the hills: plain north of it, hills south
    river_u: object           # u of the river at v (valley in the hills, sandy corridor on the plain)
    geology: dict             # unit -> shapely MultiPolygon, EPSG:3035
    soil: dict
    geology_grid: np.ndarray  # [H, W] index into GEOLOGY_UNITS, on the map grid
    dem: np.ndarray           # [H, W] float32
    slope_deg: np.ndarray
    downslope: np.ndarray     # [2, H, W] east and north components of the downhill unit vector

    @property
    def transform(self):
        return _map_transform(self.x0, self.y0, self.size_m)

    def cell_centres(self):
        return _cell_centres(self.size_m)

    def cell_of(self, x, y):
        row = ((self.y0 + self.size_m + MAP_MARGIN_M - y) // DEM_CELL_M).astype(int)
        col = ((x - self.x0 + MAP_MARGIN_M) // DEM_CELL_M).astype(int)
        return row, col


def _region_corner(size_m):
    x, y = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(*CENTRE_LON_LAT)
    return np.floor((x - size_m / 2) / 100) * 100, np.floor((y - size_m / 2) / 100) * 100


def _smooth_noise(rng, shape, cell_m, min_wavelength_m, max_wavelength_m, exponent):
    """Gaussian random field with a power-law spectrum between two wavelengths, unit std."""
    white = fft.rfft2(rng.standard_normal(shape))
    ky = fft.fftfreq(shape[0], cell_m)[:, None]
    kx = fft.rfftfreq(shape[1], cell_m)[None, :]
    k = np.hypot(kx, ky)
    band = (k >= 1 / max_wavelength_m) & (k <= 1 / min_wavelength_m)
    field = fft.irfft2(white * np.where(band, np.maximum(k, 1e-12) ** -exponent, 0.0), s=shape)
    return field / field.std()


def _landscape(rng, size_m):
    x0, y0 = _region_corner(size_m)
    front = _Curve(0.40 * size_m, 0.03 * size_m, 0.9 * size_m, tuple(rng.uniform(0, 2 * np.pi, 2)))
    apex_u = rng.uniform(0.45, 0.6) * size_m
    river_phase = rng.uniform(0, 2 * np.pi)

    def river_u(v):
        meander = 2 * np.pi * (v - front(apex_u)) / (0.45 * size_m) + river_phase
        return apex_u + 0.05 * size_m * np.sin(meander)

    # hill units in bands that follow the front; each band is wider than twice its boundary's wiggle
    band_depths = np.cumsum([0.07, 0.12, 0.12]) * size_m
    lows = [_Curve(-depth, 0.012 * size_m, 0.7 * size_m, tuple(rng.uniform(0, 2 * np.pi, 2)))
            for depth in band_depths]

    u = np.arange(-MAP_MARGIN_M, size_m + MAP_MARGIN_M + 1, 20.0)
    top, bottom = np.full(u.size, size_m + MAP_MARGIN_M), np.full(u.size, -MAP_MARGIN_M)
    boundaries = [top, front(u)] + [front(u) + low(u) for low in lows] + [bottom]
    map_box = box(x0 - MAP_MARGIN_M, y0 - MAP_MARGIN_M,
                  x0 + size_m + MAP_MARGIN_M, y0 + size_m + MAP_MARGIN_M)

    def band(upper, lower):
        ring = np.concatenate([np.c_[u, np.maximum(upper, lower)], np.c_[u[::-1], lower[::-1]]])
        return Polygon(ring + [x0, y0]).intersection(map_box)

    plain, sandstone, hill_clay, flysch, limestone = (band(a, b) for a, b in zip(boundaries, boundaries[1:]))
    theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    fan_radius = 0.30 * size_m * (1 + 0.15 * np.sin(3 * theta + rng.uniform(0, 2 * np.pi)))
    fan = Polygon(np.c_[x0 + apex_u + fan_radius * np.cos(theta),
                        y0 + front(apex_u) + fan_radius * np.sin(theta)]).intersection(plain)
    plain_clay = plain.difference(fan)
    geology = {"alluvium": fan, "clay": unary_union([plain_clay, hill_clay]), "sandstone": sandstone,
               "flysch": flysch, "limestone": limestone}
    geology = {name: _polygonal(geom) for name, geom in geology.items()}

    river_v = np.arange(front(apex_u), size_m + MAP_MARGIN_M + 1, 20.0)
    corridor = (LineString(np.c_[x0 + river_u(river_v), y0 + river_v]).buffer(0.025 * size_m)
                .intersection(plain))
    soil = {"clay-rich": unary_union([plain_clay, hill_clay]).difference(corridor),
            "loam": unary_union([fan.difference(corridor), flysch]),
            "sandy": unary_union([corridor, sandstone]),
            "thin-rocky": limestone}
    soil = {name: _polygonal(geom) for name, geom in soil.items()}

    cu, cv = _cell_centres(size_m)
    geology_grid = rasterize(
        [(geom, k) for k, geom in enumerate(geology[name] for name in GEOLOGY_UNITS)],
        out_shape=cu.shape, transform=_map_transform(x0, y0, size_m), fill=0, dtype="int16")
    into_hills = np.maximum(front(cu) - cv, 0.0)
    onto_plain = np.maximum(cv - front(cu), 0.0)
    relief = (1 - np.exp(-into_hills / 250.0)) * (50.0 + 0.085 * into_hills)
    valley = 0.6 * relief * np.exp(-((cu - river_u(cv)) / 150.0) ** 2)
    ridges = _smooth_noise(rng, cu.shape, DEM_CELL_M, 150.0, 2500.0, 1.6)
    # hard rock stands in sharper ridges than clay; smoothed so unit boundaries leave no cliffs
    hardness = gaussian_filter(np.array([HARDNESS[name] for name in GEOLOGY_UNITS])[geology_grid], 4.0)
    dem = (40.0 + 18.0 * np.exp(-onto_plain / 2000.0)      # fan surface sloping gently north
           + relief - valley
           + ridges * (1.0 + 30.0 * hardness * (1 - np.exp(-into_hills / 300.0)))).astype(np.float32)
    # slopes from the stored float32 values, so a reader of dem.tif finds the same ones
    d_row, d_col = np.gradient(dem.astype(np.float64), DEM_CELL_M)
    east, north = d_col, -d_row
    steepness = np.hypot(east, north)
    return _Landscape(x0, y0, size_m, front, river_u, geology, soil, geology_grid, dem,
                      slope_deg=np.degrees(np.arctan(steepness)),
                      downslope=-np.stack([east, north]) / np.maximum(steepness, 1e-9))


def _polygonal(geom):
    """The areas of a shapely result as one MultiPolygon (overlays can leave stray lines and points)."""
    parts = shapely.get_parts(shapely.get_parts(geom))
    return MultiPolygon([p for p in parts if isinstance(p, Polygon) and not p.is_empty])


def _land_cover(rng, land):
    """Map cells -> cover class: built kinds on gentle ground, bare rock and badlands on steep slopes."""
    size = land.size_m
    cu, cv = land.cell_centres()
    on_plain = cv > land.front(cu)
    geology = np.array(GEOLOGY_UNITS)[land.geology_grid]
    cover = np.where(on_plain, "fields", "woods").astype("<U9")
    cover[(land.slope_deg >= 20) & np.isin(geology, ("limestone", "sandstone"))] = "rock"
    cover[(land.slope_deg >= 18) & np.isin(geology, WEAK_UNITS) & ~on_plain] = "badlands"

    city_centre = (rng.uniform(0.2, 0.3) * size, rng.uniform(0.74, 0.8) * size)
    outline = _smooth_noise(rng, cu.shape, DEM_CELL_M, 300.0, 1500.0, 1.0)
    city = (((cu - city_centre[0]) / (0.2 * size)) ** 2 + ((cv - city_centre[1]) / (0.14 * size)) ** 2
            + 0.35 * outline) < 1
    industry_centre = (rng.uniform(0.72, 0.8) * size, rng.uniform(0.62, 0.7) * size)
    angle = rng.uniform(0, np.pi)
    du, dv = cu - industry_centre[0], cv - industry_centre[1]
    industry = ((np.abs(du * np.cos(angle) + dv * np.sin(angle)) < 0.08 * size)
                & (np.abs(-du * np.sin(angle) + dv * np.cos(angle)) < 0.05 * size))
    plain_village = (rng.uniform(0.45, 0.6) * size, rng.uniform(0.88, 0.95) * size)
    hill_village_v = land.front(plain_village[0]) - 0.15 * size
    villages = [plain_village, (float(land.river_u(hill_village_v)), hill_village_v)]
    village = np.zeros(cu.shape, bool)
    for centre in villages:
        village |= np.hypot(cu - centre[0], cv - centre[1]) < 0.035 * size
    farm = np.zeros(cu.shape, bool)
    n_farms = rng.poisson(1.5 * (size / 1000) ** 2)
    for fu, fv, radius in zip(rng.uniform(0, size, n_farms), rng.uniform(0, size, n_farms),
                              rng.uniform(30, 50, n_farms)):
        farm |= np.hypot(cu - fu, cv - fv) < radius
    buildable = land.slope_deg < 12
    for kind, mask in (("farm", farm), ("village", village), ("industry", industry & on_plain),
                       ("city", city & on_plain)):
        cover[mask & buildable] = kind
    def xy(uv):
        return [land.x0 + uv[0], land.y0 + uv[1]]

    return cover, {"density_per_km2": DENSITY_PER_KM2, "city_centre_xy": xy(city_centre),
                   "industrial_zone_centre_xy": xy(industry_centre),
                   "village_centres_xy": [xy(c) for c in villages], "farms": int(n_farms),
                   "building_height_m_median_spread": BUILDING_HEIGHT_M}


# --- points --------------------------------------------------------------------------------------

@dataclass
class _Points:
    x: np.ndarray
    y: np.ndarray
    u: np.ndarray              # metres from the region's SW corner
    v: np.ndarray
    cover: np.ndarray          # land-cover class
    building_height_m: np.ndarray   # 0 where the scatterer is not on a building
    mp_type: np.ndarray        # 0 persistent scatterer, 1 distributed scatterer
    ground_m: np.ndarray       # DEM height at the point
    slope_deg: np.ndarray
    downslope: np.ndarray      # [2, N]
    geology: np.ndarray        # unit name
    soil: np.ndarray
    los: np.ndarray            # [3, N] east, north, up: unit vector ground -> satellite
    incidence_deg: np.ndarray
    along_track_m: np.ndarray  # radar coordinates from the region centre: azimuth (south) ...
    ground_range_m: np.ndarray  # ... and range (west, away from the satellite)

    @property
    def n(self):
        return self.x.size

    def project(self, east, north, up):
        """Line-of-sight displacement (positive towards the satellite) of an east/north/up motion."""
        return self.los[0][:, None] * east + self.los[1][:, None] * north + self.los[2][:, None] * up


def _points(rng, land, cover):
    """Scatter points cell by cell, as many as the cover class's EGMS-like density gives."""
    cell_km2 = (DEM_CELL_M / 1000) ** 2
    density = np.vectorize(DENSITY_PER_KM2.get, otypes=[float])(cover)
    cu, cv = land.cell_centres()
    inside = (cu > 0) & (cu < land.size_m) & (cv > 0) & (cv < land.size_m)
    counts = rng.poisson(np.where(inside, density * cell_km2, 0.0))
    cells = np.repeat(np.arange(counts.size), counts.ravel())
    u = cu.ravel()[cells] + rng.uniform(-0.5, 0.5, cells.size) * DEM_CELL_M
    v = cv.ravel()[cells] + rng.uniform(-0.5, 0.5, cells.size) * DEM_CELL_M
    x, y = land.x0 + u, land.y0 + v
    point_cover = cover.ravel()[cells]

    built = np.isin(point_cover, BUILT_KINDS)
    on_building = built & (rng.random(cells.size) < 0.85)   # the rest are roads, yards, walls
    height = np.zeros(cells.size)
    for kind, (median, spread) in BUILDING_HEIGHT_M.items():
        chosen = on_building & (point_cover == kind)
        height[chosen] = np.clip(median * np.exp(spread * rng.standard_normal(chosen.sum())), 4.0, 60.0)
    # buildings and bare rock give persistent scatterers; fields, woods and badlands distributed ones
    mp_type = np.where(built | (point_cover == "rock"), 0, 1)

    row, col = land.cell_of(x, y)
    rel_e, rel_n = u - land.size_m / 2, v - land.size_m / 2
    heading, look = np.radians(HEADING_DEG), np.radians(HEADING_DEG - 90)   # look: ground -> satellite
    along = rel_e * np.sin(heading) + rel_n * np.cos(heading)
    ground_range = -(rel_e * np.sin(look) + rel_n * np.cos(look))
    incidence = INCIDENCE_DEG + INCIDENCE_PER_M * ground_range
    sin_i = np.sin(np.radians(incidence))
    # rounded as in the file, so that projecting with the file's vector gives the truth exactly
    los = np.round(np.stack([sin_i * np.sin(look), sin_i * np.cos(look), np.cos(np.radians(incidence))]), 3)
    return _Points(x=x, y=y, u=u, v=v, cover=point_cover, building_height_m=height, mp_type=mp_type,
                   ground_m=land.dem[row, col].astype(np.float64), slope_deg=land.slope_deg[row, col],
                   downslope=land.downslope[:, row, col], geology=_classify(land.geology, x, y),
                   soil=_classify(land.soil, x, y), los=los, incidence_deg=incidence,
                   along_track_m=along, ground_range_m=ground_range)


def _classify(polygons, x, y):
    """Class name of the polygon under each point (the polygons tile the map)."""
    names = np.full(x.size, "", dtype=object)
    for name, geom in polygons.items():
        shapely.prepare(geom)
        names[(names == "") & shapely.intersects_xy(geom, x, y)] = name
    return names.astype(str)


# --- processes (each returns LOS mm [N, T], zero at the first date, and its parameters) -------------

def _aquifer(rng, land, pts, dates):
    """Compaction bowls over pumped aquifers, only where the plain's fill is compressible.

    Bowl A was pumped before 2020 and is decelerating; bowl B starts mid-series. Both follow
    Terzaghi consolidation: sqrt(t) at first, then an exponential approach to the final settlement.
    """
    size = land.size_m
    radius = 0.17 * size
    # the fill thickens away from the foot of the hills; zero on the hills themselves
    thickness = np.clip((pts.v - land.front(pts.u)) / (0.15 * size), 0.0, 1.0)
    compressibility = np.vectorize(lambda g: COMPRESSIBILITY.get(g, 0.0), otypes=[float])(pts.geology)
    t = _years(dates, dates[0])
    specs = [
        ("A", rng.uniform(0.2, 0.3), rng.uniform(0.72, 0.8), -rng.uniform(3.0, 6.0), rng.uniform(6.0, 9.0)),
        ("B", rng.uniform(0.72, 0.8), rng.uniform(0.62, 0.7),
         _years(np.datetime64("2021-10-01") + rng.integers(0, 365), dates[0]), rng.uniform(4.0, 6.0)),
    ]
    total, bowls = np.zeros((pts.n, t.size)), []
    for name, cu, cv, onset_yr, tau_yr in specs:
        if onset_yr < 0:   # already pumping in 2020: set the settlement by its rate then
            rate = rng.uniform(25.0, 35.0)
            slope_u = (_terzaghi([-onset_yr / tau_yr + 1e-4]) - _terzaghi([-onset_yr / tau_yr - 1e-4])) / 2e-4
            settlement = rate * tau_yr / slope_u[0]
        else:              # set it by the first year's subsidence
            settlement = rng.uniform(25.0, 40.0) / _terzaghi([1.0 / tau_yr])[0]
        consolidation = _terzaghi((t - onset_yr) / tau_yr) - _terzaghi([-onset_yr / tau_yr])[0]
        du, dv = pts.u - cu * size, pts.v - cv * size
        angle, squash = rng.uniform(0, np.pi), rng.uniform(0.7, 1.0)
        a = du * np.cos(angle) + dv * np.sin(angle)
        b = (-du * np.sin(angle) + dv * np.cos(angle)) / squash
        rho = np.minimum(np.hypot(a, b) / radius, 1.0)
        shape = (1 - rho ** 2) ** 3 * thickness * compressibility
        # the ground also moves inwards, most on the bowl's flanks
        inward = 0.35 * rho * (1 - rho ** 2) ** 2 * thickness * compressibility
        dist = np.maximum(np.hypot(du, dv), 1e-9)
        s = settlement * consolidation[None, :]
        total += pts.project(-(inward * du / dist)[:, None] * s, -(inward * dv / dist)[:, None] * s,
                             -shape[:, None] * s)
        onset = dates[0] + int(round(onset_yr * YEAR_DAYS))
        bowls.append({"name": name, "x": land.x0 + cu * size, "y": land.y0 + cv * size,
                      "radius_m": radius, "axis_ratio": squash, "azimuth_deg": (90 - np.degrees(angle)) % 180,
                      "pumping_onset": str(onset), "consolidation_time_years": tau_yr,
                      "final_settlement_mm": settlement, "starts_mid_series": bool(onset > dates[0])})
    return total, {"model": "Terzaghi consolidation U((t - onset) / tau) times a compact bell "
                            "(1 - r²/R²)³ times fill thickness times compressibility",
                   "compressibility": COMPRESSIBILITY, "fill_thickness_ramp_m": 0.15 * size,
                   "bowls": bowls}


def _swelling(rng, pts, climate):
    """Seasonal swelling of the soil, sized by soil class, following the soil wetness (lagging rain)."""
    wet = climate.at(climate.soil_wetness)
    half_range = (np.percentile(climate.soil_wetness, 95) - np.percentile(climate.soil_wetness, 5)) / 2
    amplitude = (np.vectorize(SWELLING_MM.get, otypes=[float])(pts.soil) * rng.uniform(0.8, 1.2, pts.n))
    up = amplitude[:, None] * ((wet - wet[0]) / half_range)[None, :]
    return pts.project(0.0, 0.0, up), {
        "vertical_semi_amplitude_mm": SWELLING_MM, "wet_season_peak_doy": WET_SEASON_PEAK_DOY,
        "soil_response_days": _Climate.SOIL_RESPONSE_DAYS,
        "expected_lag_days": round(np.degrees(np.arctan(2 * np.pi * _Climate.SOIL_RESPONSE_DAYS / YEAR_DAYS))
                                   / 360 * YEAR_DAYS)}


def _landslide(rng, land, pts, climate):
    """Slow earthflows on steep slopes of clay and flysch, creeping faster when the slope is wet."""
    cu, cv = land.cell_centres()
    geology = np.array(GEOLOGY_UNITS)[land.geology_grid]
    candidates = np.flatnonzero((land.slope_deg >= STEEP_SLOPE_DEG + 3) & np.isin(geology, WEAK_UNITS)
                                & (cu > 0) & (cu < land.size_m) & (cv > 0) & (cv < land.size_m))
    n_bodies = max(3, int(round(candidates.size * (DEM_CELL_M / 1000) ** 2 * 4.0)))
    centres = rng.choice(candidates, min(n_bodies, candidates.size), replace=False)
    speed = np.zeros(pts.n)
    bodies = []
    for cell in centres:
        down = land.downslope[:, cell // cu.shape[1], cell % cu.shape[1]]
        length, width, rate = rng.uniform(250, 600), rng.uniform(120, 300), rng.uniform(8.0, 30.0)
        du, dv = pts.u - cu.flat[cell], pts.v - cv.flat[cell]
        along, across = du * down[0] + dv * down[1], -du * down[1] + dv * down[0]
        speed += rate * np.clip(1 - (along / length) ** 2 - (across / width) ** 2, 0.0, None)
        bodies.append({"x": land.x0 + cu.flat[cell], "y": land.y0 + cv.flat[cell], "half_length_m": length,
                       "half_width_m": width, "downslope_azimuth_deg": np.degrees(np.arctan2(*down)),
                       "centre_rate_mm_yr": rate})
    speed *= np.clip((pts.slope_deg - STEEP_SLOPE_DEG) / 5.0, 0.0, 1.0) * np.isin(pts.geology, WEAK_UNITS)

    wetness = climate.slope_wetness / np.percentile(climate.slope_wetness, 99)
    daily_rate = 0.15 + 1.7 * np.clip(wetness, 0, 1.5) ** 2     # pore pressure speeds creep up sharply
    creep = np.cumsum(daily_rate / daily_rate.mean()) / YEAR_DAYS
    creep = climate.at(creep) - climate.at(creep)[0]
    # creep runs parallel to the surface: downhill and down
    slope = np.radians(pts.slope_deg)
    along_slope = speed[:, None] * creep[None, :]
    return pts.project((np.cos(slope) * pts.downslope[0])[:, None] * along_slope,
                       (np.cos(slope) * pts.downslope[1])[:, None] * along_slope,
                       -np.sin(slope)[:, None] * along_slope), {
        "steep_slope_deg": STEEP_SLOPE_DEG, "weak_units": list(WEAK_UNITS),
        "slope_response_days": _Climate.SLOPE_RESPONSE_DAYS,
        "model": "rate x (0.15 + 1.7 wetness²), wetness = rain low-passed; zero below the steep slope "
                 "and outside weak units", "bodies": bodies}


def _okada_point_dip_slip(x, y, depth, dip_deg, potency, poisson=0.25):
    """Surface displacement (x along strike, y to its left, z up) of a buried dip-slip point source.

    Okada (1985), point source; potency = seismic moment / rigidity (m³), positive for a thrust.
    """
    dip = np.radians(dip_deg)
    sd, cd = np.sin(dip), np.cos(dip)
    r = np.sqrt(x ** 2 + y ** 2 + depth ** 2)
    p, q = y * cd + depth * sd, y * sd - depth * cd
    k = 1 - 2 * poisson                                   # mu / (lambda + mu)
    i1 = k * y * (1 / (r * (r + depth) ** 2) - x ** 2 * (3 * r + depth) / (r ** 3 * (r + depth) ** 3))
    i2 = k * x * (1 / (r * (r + depth) ** 2) - y ** 2 * (3 * r + depth) / (r ** 3 * (r + depth) ** 3))
    i3 = k * x / r ** 3 - i2
    i5 = k * (1 / (r * (r + depth)) - x ** 2 * (2 * r + depth) / (r ** 3 * (r + depth) ** 2))
    scale = -potency / (2 * np.pi)
    return (scale * (3 * x * p * q / r ** 5 - i3 * sd * cd),
            scale * (3 * y * p * q / r ** 5 - i1 * sd * cd),
            scale * (3 * depth * p * q / r ** 5 - i5 * sd * cd))


def _earthquake(rng, land, pts, dates):
    """A buried thrust under the hills' edge: an elastic step, then logarithmic afterslip."""
    size = land.size_m
    event = np.datetime64("2022-04-01") + rng.integers(0, 365)
    eu, ev = rng.uniform(0.3, 0.7) * size, rng.uniform(0.3, 0.6) * size
    depth, strike, dip = rng.uniform(5000.0, 8000.0), rng.uniform(100.0, 125.0), rng.uniform(30.0, 45.0)
    magnitude = rng.uniform(5.3, 5.7)
    potency = 10 ** (1.5 * magnitude + 9.1) / 3.0e10
    phi = np.radians(strike)
    de, dn = pts.u - eu, pts.v - ev
    along, left = de * np.sin(phi) + dn * np.cos(phi), -de * np.cos(phi) + dn * np.sin(phi)
    ux, uy, uz = (1000.0 * c for c in _okada_point_dip_slip(along, left, depth, dip, potency))
    step = pts.project((ux * np.sin(phi) - uy * np.cos(phi))[:, None],
                       (ux * np.cos(phi) + uy * np.sin(phi))[:, None], uz[:, None])[:, 0]
    after_days = (dates - event).astype(np.float64)
    relax_days, afterslip_ratio = rng.uniform(10.0, 30.0), rng.uniform(0.2, 0.35)
    # the acquisitions (05:12 UTC) of the event day come before it
    time_fn = np.where(after_days > 0, 1 + afterslip_ratio * np.log1p(np.maximum(after_days, 0) / relax_days)
                       / np.log1p(YEAR_DAYS / relax_days), 0.0)
    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(land.x0 + eu, land.y0 + ev)
    return step[:, None] * time_fn[None, :], {
        "date": str(event), "first_date_with_step": str(dates[after_days > 0][0]),
        "epicentre_x": land.x0 + eu, "epicentre_y": land.y0 + ev, "epicentre_lon": lon, "epicentre_lat": lat,
        "depth_m": depth, "magnitude_mw": magnitude, "strike_deg": strike, "dip_deg": dip, "rake_deg": 90.0,
        "potency_m3": potency, "afterslip_relaxation_days": relax_days,
        "afterslip_after_one_year_ratio": afterslip_ratio,
        "model": "Okada (1985) dip-slip point source; "
                 "step x (1 + ratio log(1 + dt / tau) / log(1 + 1 yr / tau))"}


def _thermal(pts, climate):
    """Buildings grow and shrink with air temperature, in phase, in proportion to their height."""
    temperature = climate.at(climate.temperature_c)
    up = (THERMAL_EXPANSION_PER_K * 1000.0 * pts.building_height_m[:, None]
          * (temperature - temperature[0])[None, :])
    return pts.project(0.0, 0.0, up), {"expansion_per_kelvin": THERMAL_EXPANSION_PER_K,
                                       "warmest_doy": WARMEST_DOY,
                                       "temperature_c_mean_amplitude": list(TEMPERATURE_C)}


def _background(pts, dates):
    return pts.project(*(v * _years(dates, dates[0])[None, :] for v in BACKGROUND_MM_YR)), {
        "velocity_east_north_up_mm_yr": list(BACKGROUND_MM_YR)}


def _atmosphere(rng, land, pts, dates):
    """Turbulent delay per acquisition (exponential covariance, length 1–5 km) plus a height term."""
    cell = 200.0
    pad = 6000.0                                  # beyond the longest length, so the FFT's wrap is harmless
    n = fft.next_fast_len(int(np.ceil((land.size_m + 2 * pad) / cell)))
    lengths = rng.uniform(1000.0, 5000.0, dates.size)
    sigma = np.clip(1.8 * np.exp(0.5 * rng.standard_normal(dates.size)), 0.3, 6.0)
    k = np.hypot(fft.fftfreq(n, cell)[:, None], fft.rfftfreq(n, cell)[None, :])
    # 2-D spectrum of exp(-r / L) is proportional to (1 + (2 pi k L)²)^(-3/2)
    amplitude = (1 + (2 * np.pi * k[None] * lengths[:, None, None]) ** 2) ** -0.75
    fields = fft.irfft2(fft.rfft2(rng.standard_normal((dates.size, n, n))) * amplitude, s=(n, n))
    fields *= (sigma / fields.std(axis=(1, 2)))[:, None, None]
    gx, gy = (pts.u + pad) / cell, (pts.v + pad) / cell
    i, j = np.floor(gy).astype(int), np.floor(gx).astype(int)
    fy, fx = gy - i, gx - j
    turbulent = (fields[:, i, j] * (1 - fy) * (1 - fx) + fields[:, i + 1, j] * fy * (1 - fx)
                 + fields[:, i, j + 1] * (1 - fy) * fx + fields[:, i + 1, j + 1] * fy * fx).T
    stratified_mm_per_m = rng.normal(0.0, 0.004, dates.size)
    height = pts.ground_m + pts.building_height_m
    delay = turbulent + (height - height.mean())[:, None] * stratified_mm_per_m[None, :]
    # L2b series are relative to a reference area: remove each epoch's mean over the burst
    return delay - delay.mean(axis=0, keepdims=True), {
        "correlation_length_m": [1000.0, 5000.0], "turbulent_std_mm_median": 1.8,
        "stratified_std_mm_per_m": 0.004, "white_noise_std_mm": {"persistent": [2.0, 3.0],
                                                                 "distributed": [2.8, 3.8]}}


def _missing(rng, n_points, dates):
    """Points that appear late (new buildings) and points with runs of lost epochs."""
    n_dates = dates.size
    valid = np.ones((n_points, n_dates), bool)
    late = rng.random(n_points) < 0.04
    starts = rng.integers(n_dates // 5, 3 * n_dates // 5, n_points)
    valid[late] = np.arange(n_dates)[None, :] >= starts[late, None]
    gappy = ~late & (rng.random(n_points) < 0.03)
    gap_start = rng.integers(1, n_dates - 15, n_points)
    gap_end = gap_start + rng.integers(3, 13, n_points)
    idx = np.arange(n_dates)[None, :]
    valid[gappy] &= ~((idx >= gap_start[gappy, None]) & (idx < gap_end[gappy, None]))
    return valid, {"late_start_fraction": 0.04, "gap_fraction": 0.03, "gap_epochs": [3, 12]}


# --- EGMS attributes and files --------------------------------------------------------------------

def _fit(observed, columns):
    """Per-point least squares on the valid epochs: coefficients, their std and the residual RMS."""
    design = np.stack(columns, axis=1)                       # [T, K]
    w = np.isfinite(observed)
    y = np.where(w, observed, 0.0)
    normal = np.einsum("nt,tk,tl->nkl", w.astype(float), design, design)
    coef = np.linalg.solve(normal, np.einsum("nt,tk->nk", y, design)[..., None])[..., 0]
    residual = np.where(w, y - coef @ design.T, 0.0)
    dof = np.maximum(w.sum(1) - design.shape[1], 1)
    rms = np.sqrt((residual ** 2).sum(1) / dof)
    std = rms[:, None] * np.sqrt(np.diagonal(np.linalg.inv(normal), axis1=1, axis2=2))
    return coef, std, rms


def _egms_attributes(rng, pts, dates, observed, noise_sigma):
    """The attribute columns of an L2b row, derived as EGMS derives them (fits to the series)."""
    t = _years(dates, dates[0])
    ones, annual = np.ones_like(t), 2 * np.pi * t
    linear, linear_std, _ = _fit(observed, [ones, t])
    quadratic, quadratic_std, _ = _fit(observed, [ones, t, t ** 2])
    seasonal, seasonal_std, rmse = _fit(observed, [ones, t, np.cos(annual), np.sin(annual)])
    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(pts.x, pts.y)
    height = pts.ground_m + pts.building_height_m + rng.normal(0.0, 1.5, pts.n)   # geocoding error
    phase_sigma = 4 * np.pi * noise_sigma / WAVELENGTH_MM
    ids = rng.choice(62 ** 9, pts.n, replace=False) + 62 ** 9 * rng.integers(1, 62, pts.n)
    return {
        "pid": np.array([_base62(i) for i in ids]),
        "mp_type": pts.mp_type,
        "latitude": np.round(lat, 6), "longitude": np.round(lon, 6),
        "easting": np.round(pts.x, 2), "northing": np.round(pts.y, 2),
        "height_ortho": np.round(height, 1), "height_ellipse": np.round(height + GEOID_UNDULATION_M, 1),
        # IW pixel spacing: 13.9 m in azimuth, 2.33 m in slant range
        "line": 1500 + np.round(pts.along_track_m / 13.9).astype(int),
        "pixel": 3000 + np.round(pts.ground_range_m * np.sin(np.radians(pts.incidence_deg)) / 2.33
                                 ).astype(int),
        "rmse_ts": np.round(rmse, 1),
        "temporal_coherence": np.round(np.exp(-phase_sigma ** 2 / 2) * rng.uniform(0.97, 1.0, pts.n), 2),
        "amplitude_dispersion": np.round(phase_sigma * rng.uniform(0.8, 1.15, pts.n), 2),
        "incidence_angle": np.round(pts.incidence_deg, 2),
        "track_angle": np.full(pts.n, HEADING_DEG),
        "los_east": pts.los[0], "los_north": pts.los[1], "los_up": pts.los[2],
        "mean_velocity": np.round(linear[:, 1], 1), "mean_velocity_std": np.round(linear_std[:, 1], 1),
        "acceleration": np.round(2 * quadratic[:, 2], 2),
        "acceleration_std": np.round(2 * quadratic_std[:, 2], 2),
        "seasonality": np.round(np.hypot(seasonal[:, 2], seasonal[:, 3]), 1),
        "seasonality_std": np.round(np.hypot(seasonal_std[:, 2], seasonal_std[:, 3]) / np.sqrt(2), 1),
        "gnss_velocity": np.round(pts.los.T @ np.array(BACKGROUND_MM_YR), 1),
    }


def _base62(number):
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    text = ""
    while number:
        number, rest = divmod(int(number), 62)
        text = digits[rest] + text
    return text


def _write_points_csv(path, attributes, observed, dates, order):
    header = list(L2B_ATTRIBUTE_COLUMNS) + [str(d).replace("-", "") for d in dates]
    columns = [np.asarray(attributes[name])[order].tolist() for name in L2B_ATTRIBUTE_COLUMNS]
    # one decimal, no "-0.0", empty where missing (as the readers expect)
    values = np.round(observed[order], 1) + 0.0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(header) + "\n")
        for k, row in enumerate(values):
            head = ",".join(str(column[k]) for column in columns)
            f.write(head + "," + ",".join(["%.1f" % v for v in row]).replace("nan", "") + "\n")


def _write_dem(path, land):
    n = land.dem.shape[0]
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32", crs=CRS,
                       transform=land.transform, nodata=-9999.0, compress="deflate") as dst:
        dst.write(land.dem, 1)
        dst.set_band_description(1, "elevation_m")


def _write_polygons(path, layer, field, polygons):
    schema = {"geometry": "Polygon", "properties": {field: "str"}}
    with fiona.open(path, "w", driver="GPKG", layer=layer, crs=CRS, schema=schema) as dst:
        for name, geom in polygons.items():
            for part in geom.geoms:
                dst.write({"geometry": mapping(part), "properties": {field: name}})


def _write_aoi(path, land):
    """A polygon over the middle of the region, in lon/lat as a user would draw it."""
    size = land.size_m
    angles = np.radians([20, 85, 150, 210, 275, 330])
    radii = np.array([0.34, 0.30, 0.36, 0.31, 0.35, 0.29]) * size
    x = land.x0 + size / 2 + radii * np.cos(angles)
    y = land.y0 + size / 2 + radii * np.sin(angles)
    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(x, y)
    ring = [[round(a, 6), round(b, 6)] for a, b in zip(lon, lat)]
    ring.append(ring[0])
    geojson = {
        "type": "FeatureCollection", "name": "aoi",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        "features": [{"type": "Feature", "properties": {"name": "demo area of interest"},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}}],
    }
    path.write_text(json.dumps(geojson, indent=1) + "\n", encoding="utf-8")
    return ring


def _write_truth(path, pid, pts, dates, truth, components, atmosphere, noise, valid, order):
    arrays = dict(
        pid=pid[order].astype(str), x=pts.x[order], y=pts.y[order],
        dates=dates.astype("datetime64[D]").astype(np.int64),
        truth_mm=truth[order].astype(np.float32), atmosphere_mm=atmosphere[order].astype(np.float32),
        noise_mm=noise[order].astype(np.float32), valid=valid[order],
        building_height_m=pts.building_height_m[order].astype(np.float32),
        geology=pts.geology[order], soil=pts.soil[order], land_cover=pts.cover[order],
        **{name: value[order].astype(np.float32) for name, value in components.items()})
    # an .npz as np.savez_compressed writes it, at the fastest zlib level (noise barely compresses)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def _description(seed, size_m, land, dates, missing_dates, pts, params, aoi, names):
    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(
        land.x0 + size_m / 2, land.y0 + size_m / 2)

    def plain(value):  # numpy scalars -> JSON numbers
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, (float, np.floating)):
            return round(float(value), 4)
        return value.item() if isinstance(value, np.generic) else value

    return plain({
        "title": "GroundCast synthetic demo region",
        "note": "Synthetic data loosely modelled on the Po plain's southern edge at Bologna (Italy); "
                "not Copernicus EGMS data. The CSV follows the EGMS L2b 2020-2024 format: LOS "
                "displacement in mm (positive towards the satellite), noise-free truth zero at the "
                "first date; the observed first date holds that date's atmosphere and noise, as in "
                "the real files; missing values are empty fields.",
        "seed": seed, "size_km": size_m / 1000, "crs": CRS,
        "bounds": [land.x0, land.y0, land.x0 + size_m, land.y0 + size_m],
        "centre_lon_lat": [lon, lat],
        "files": names,
        "points": int(pts.n), "dates": int(dates.size),
        "first_date": str(dates[0]), "last_date": str(dates[-1]),
        "missing_acquisitions": [str(d) for d in missing_dates],
        "track": {"pass": "descending", "heading_deg": HEADING_DEG, "incidence_deg_at_centre": INCIDENCE_DEG},
        "maps": {"dem": {"cell_size_m": DEM_CELL_M, "margin_m": MAP_MARGIN_M},
                 "geology_field": "unit", "geology_units": list(GEOLOGY_UNITS),
                 "soil_field": "soil", "soil_classes": list(SOIL_CLASSES)},
        "aoi": {"crs": "OGC:CRS84 (EPSG:4326, lon/lat order)", "ring_lon_lat": aoi},
        "processes": params,
        "truth_npz": "pid, x, y, dates (days since 1970), truth_mm [N,T] = sum of the *_mm process "
                     "components (aquifer, swelling, landslide, seismic, thermal, background); "
                     "atmosphere_mm and noise_mm; valid [N,T]; observed = truth + atmosphere + noise "
                     "where valid; building_height_m, geology, soil, land_cover per point",
    })
