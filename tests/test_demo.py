"""The synthetic demo region: EGMS-shaped files, and each process tied to the prior maps as in nature."""
from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from scipy.spatial import cKDTree
from shapely.geometry import shape

from engine.demo import make_demo
from engine.errors import Cancelled

REAL_L2B = Path(__file__).resolve().parent / "data" / "EGMS_L2b_022_0845_IW2_VV_2020_2024_1.zip"

# The EGMS L2b 2020–2024 columns before the dates, as in the real files.
L2B_COLUMNS = [
    "pid", "mp_type", "latitude", "longitude", "easting", "northing", "height_ortho", "height_ellipse",
    "line", "pixel", "rmse_ts", "temporal_coherence", "amplitude_dispersion", "incidence_angle",
    "track_angle", "los_east", "los_north", "los_up", "mean_velocity", "mean_velocity_std",
    "acceleration", "acceleration_std", "seasonality", "seasonality_std", "gnss_velocity",
]
S1B_LOST = np.datetime64("2021-12-23")


@dataclass
class Demo:
    folder: Path
    header: list
    rows: list            # CSV text fields
    dates: np.ndarray     # datetime64[D] from the CSV header
    observed: np.ndarray  # [N, T], NaN where empty
    truth: dict
    meta: dict

    def column(self, name):
        k = self.header.index(name)
        return np.array([float(row[k]) for row in self.rows])


def load(folder) -> Demo:
    folder = Path(folder)
    with open(folder / "EGMS_L2b_demo_2020_2024.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    dates = np.array([np.datetime64(f"{d[:4]}-{d[4:6]}-{d[6:]}") for d in header[25:]])
    observed = np.array([[float(v) if v else np.nan for v in row[25:]] for row in rows])
    with np.load(folder / "truth.npz", allow_pickle=False) as z:
        truth = {name: z[name] for name in z.files}
    meta = json.loads((folder / "demo.json").read_text(encoding="utf-8"))
    return Demo(folder, header, rows, dates, observed, truth, meta)


@pytest.fixture(scope="module")
def demo(demo_data_dir) -> Demo:
    return load(demo_data_dir)


def classes_at(path, field, x, y):
    """The class of the polygon under each point, read back from the GeoPackage."""
    names = np.full(x.size, "", dtype=object)
    with fiona.open(path) as layer:
        assert layer.crs.to_epsg() == 3035
        for feature in layer:
            inside = shapely.intersects_xy(shape(feature["geometry"]), x, y)
            names[inside & (names == "")] = feature["properties"][field]
    assert (names != "").all(), "some points lie outside every polygon"
    return names.astype(str)


def slope_at(folder, x, y):
    with rasterio.open(folder / "dem.tif") as dem:
        assert dem.crs.to_epsg() == 3035
        elevation = dem.read(1).astype(np.float64)
        d_row, d_col = np.gradient(elevation, dem.res[0])
        row, col = rasterio.transform.rowcol(dem.transform, x, y)
    return np.degrees(np.arctan(np.hypot(d_row, d_col)))[np.asarray(row), np.asarray(col)]


def window_change(series, dates, start, days):
    """Change of the [.., T] series over `days` from the epoch nearest `start`."""
    i = np.searchsorted(dates, start)
    j = np.searchsorted(dates, start + days)
    return series[..., j] - series[..., i]


# --- files ---------------------------------------------------------------------------------------

def test_returns_the_paths_it_wrote(tmp_path):
    paths = make_demo(tmp_path / "demo", seed=3, size_km=3.0)
    assert set(paths) == {"points", "dem", "geology", "soil", "aoi", "truth", "description"}
    assert all(Path(p).is_file() and Path(p).parent == tmp_path / "demo" for p in paths.values())
    assert Path(paths["points"]).name == "EGMS_L2b_demo_2020_2024.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]   # no temporary folder left


def test_header_is_the_l2b_2020_2024_header(demo):
    assert demo.header[:25] == L2B_COLUMNS
    assert all(len(row) == len(demo.header) for row in demo.rows)


def test_header_matches_the_real_file(demo):
    with zipfile.ZipFile(REAL_L2B) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".csv"))
        with archive.open(name) as raw:
            real = next(csv.reader(io.TextIOWrapper(raw, encoding="utf-8")))
    assert demo.header[:25] == real[:25]
    assert demo.header[25] == real[25]        # both start on 3 January 2020


def test_dates_follow_sentinel1(demo):
    dates = demo.dates
    assert dates[0] == np.datetime64("2020-01-03")
    assert dates[-1].astype("datetime64[Y]") == np.datetime64("2024")
    steps = np.diff(dates).astype(int)
    before = dates[1:] <= S1B_LOST + 6
    assert (steps[before] % 6 == 0).all() and np.median(steps[before]) == 6
    assert (steps[~before] % 12 == 0).all() and np.median(steps[~before]) == 12
    # a few acquisitions are missing for every point
    assert 1 <= (steps[before] > 6).sum() + (steps[~before] > 12).sum() <= 8
    assert np.array_equal(demo.truth["dates"], dates.astype(np.int64))


def test_values_are_mm_with_one_decimal_and_gaps_are_empty(demo):
    fields = [v for row in demo.rows for v in row[25:]]
    filled = [v for v in fields if v]
    assert all(len(v.split(".")[1]) == 1 for v in filled)
    assert "-0.0" not in filled
    missing = np.isnan(demo.observed)
    assert np.array_equal(~missing, demo.truth["valid"])
    late = missing[:, 0]
    gappy = ~late & missing.any(axis=1)
    assert late.sum() >= 5 and gappy.sum() >= 5
    assert not missing.all(axis=1).any()


def test_points_are_consistent_egms_rows(demo):
    x, y = demo.column("easting"), demo.column("northing")
    lon, lat = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True).transform(
        demo.column("longitude"), demo.column("latitude"))
    assert np.abs(lon - x).max() < 0.5 and np.abs(lat - y).max() < 0.5    # 6 decimals of a degree
    west, south, east, north = demo.meta["bounds"]
    assert (x > west).all() and (x < east).all() and (y > south).all() and (y < north).all()
    assert 40 < demo.column("latitude").mean() < 46 and 9 < demo.column("longitude").mean() < 13   # Emilia
    los = np.stack([demo.column("los_east"), demo.column("los_north"), demo.column("los_up")])
    assert np.allclose(np.linalg.norm(los, axis=0), 1.0, atol=0.003)
    # descending: the satellite looks west from the east, heading south-south-west
    assert (los[0] > 0.5).all() and (los[1] < 0).all() and (los[2] > 0.7).all()
    assert np.allclose(demo.column("track_angle"), 191.42)
    pid = [row[0] for row in demo.rows]
    assert len(set(pid)) == len(pid) and list(demo.truth["pid"]) == pid
    assert set(demo.column("mp_type")) == {0.0, 1.0}
    assert np.allclose(demo.column("height_ellipse") - demo.column("height_ortho"), 45.9, atol=0.11)


def test_observed_is_truth_plus_atmosphere_plus_noise(demo):
    t = demo.truth
    assert np.array_equal(t["truth_mm"][:, 0], np.zeros(len(demo.rows)))   # relative to the first date
    parts = sum(t[k] for k in ("aquifer_mm", "swelling_mm", "landslide_mm", "seismic_mm", "thermal_mm",
                               "background_mm"))
    assert np.allclose(parts, t["truth_mm"], atol=1e-3)
    expected = t["truth_mm"] + t["atmosphere_mm"] + t["noise_mm"]
    valid = t["valid"]
    assert np.abs(demo.observed[valid] - expected[valid]).max() <= 0.051


def test_velocity_attribute_is_the_fit_to_the_series(demo):
    years = (demo.dates - demo.dates[0]).astype(float) / 365.25
    full = ~np.isnan(demo.observed).any(axis=1)
    slope = np.polyfit(years, demo.observed[full].T, 1)[0]
    # the file's values and the attribute are both rounded to 0.1 mm
    assert np.abs(slope - demo.column("mean_velocity")[full]).max() <= 0.06


def test_prior_maps_are_readable(demo):
    folder = demo.folder
    with rasterio.open(folder / "dem.tif") as dem:
        assert dem.crs.to_epsg() == 3035 and dem.res == (25.0, 25.0)
        west, south, east, north = demo.meta["bounds"]
        assert dem.bounds.left < west and dem.bounds.right > east
        assert dem.bounds.bottom < south and dem.bounds.top > north
    with fiona.open(folder / "geology.gpkg") as layer:
        units = {f["properties"]["unit"] for f in layer}
    assert units == {"alluvium", "clay", "sandstone", "flysch", "limestone"}
    with fiona.open(folder / "soil.gpkg") as layer:
        soils = {f["properties"]["soil"] for f in layer}
    assert soils == {"clay-rich", "loam", "sandy", "thin-rocky"}


def test_aoi_is_a_lon_lat_polygon_inside_the_region(demo):
    with fiona.open(demo.folder / "aoi.geojson") as layer:
        assert layer.crs.to_epsg() == 4326 or "CRS84" in layer.crs.to_string()
        polygon = shape(next(iter(layer))["geometry"])
    lon, lat = polygon.exterior.xy
    assert 9 < min(lon) and max(lon) < 13 and 43 < min(lat) and max(lat) < 46
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True).transform(lon, lat)
    west, south, east, north = demo.meta["bounds"]
    assert west < min(x) and max(x) < east and south < min(y) and max(y) < north
    inside = shapely.intersects_xy(shapely.Polygon(np.c_[x, y]), demo.truth["x"], demo.truth["y"])
    assert 0.1 < inside.mean() < 0.9


def test_same_seed_same_files_other_seed_other_region(tmp_path):
    first, again, other = (make_demo(tmp_path / name, seed=seed, size_km=3.0)
                           for name, seed in (("a", 5), ("b", 5), ("c", 6)))
    for role in ("points", "dem", "aoi", "description"):
        assert Path(first[role]).read_bytes() == Path(again[role]).read_bytes()
    for role in ("points", "dem", "description"):     # the AOI is the same drawing for every seed
        assert Path(first[role]).read_bytes() != Path(other[role]).read_bytes()
    with np.load(first["truth"]) as a, np.load(again["truth"]) as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files)


def test_cancel_leaves_nothing(tmp_path):
    class CancelMidway:
        def progress(self, fraction, message):
            self.last = fraction

        def should_cancel(self):
            return getattr(self, "last", 0.0) >= 0.8

    with pytest.raises(Cancelled):
        make_demo(tmp_path / "demo", seed=0, size_km=3.0, progress=CancelMidway())
    assert list(tmp_path.iterdir()) == []


# --- processes -----------------------------------------------------------------------------------

def test_aquifer_compaction_only_on_compressible_fill(demo):
    t = demo.truth
    geology = classes_at(demo.folder / "geology.gpkg", "unit", t["x"], t["y"])
    assert np.array_equal(geology, t["geology"])
    moving = np.abs(t["aquifer_mm"]).max(axis=1) > 0
    assert moving.sum() >= 20
    assert set(geology[moving]) <= {"clay", "alluvium"}
    # mostly subsidence (away from the satellite); flanks moving inwards can show slightly positive
    assert t["aquifer_mm"][moving, -1].mean() < 0
    assert t["aquifer_mm"][:, -1].min() < -10


def test_pumped_bowl_decelerates_like_consolidation(demo):
    t, dates = demo.truth, demo.dates
    bowl = next(b for b in demo.meta["processes"]["aquifer"]["bowls"] if not b["starts_mid_series"])
    centre = np.hypot(t["x"] - bowl["x"], t["y"] - bowl["y"]) < 0.3 * bowl["radius_m"]
    assert centre.sum() >= 5
    series = t["aquifer_mm"][centre].mean(axis=0)
    quarter, half = series[dates.size // 4], series[dates.size // 2]
    assert series[-1] < half < quarter < 0          # bigger late than early
    first_year = window_change(series, dates, dates[0], 365)
    last_year = window_change(series, dates, dates[-1] - 365, 365)
    assert first_year < 1.5 * last_year < 0         # but the rate slows (both negative)


def test_late_bowl_is_still_before_pumping_starts(demo):
    t, dates = demo.truth, demo.dates
    bowl = next(b for b in demo.meta["processes"]["aquifer"]["bowls"] if b["starts_mid_series"])
    onset = np.datetime64(bowl["pumping_onset"])
    assert dates[0] + 365 < onset < dates[-1] - 365
    centre = np.hypot(t["x"] - bowl["x"], t["y"] - bowl["y"]) < 0.3 * bowl["radius_m"]
    assert centre.sum() >= 5
    before = dates <= onset
    assert np.abs(t["aquifer_mm"][centre][:, before]).max() == 0
    series = t["aquifer_mm"][centre].mean(axis=0)
    assert series[-1] < -5
    first_year = window_change(series, dates, onset, 365)
    later_year = window_change(series, dates, onset + 365, 365)
    assert first_year < 1.5 * later_year < 0        # sqrt-like start, then slower


def test_swelling_follows_soil_class_and_lags_the_wet_season(demo):
    t, dates = demo.truth, demo.dates
    soil = classes_at(demo.folder / "soil.gpkg", "soil", t["x"], t["y"])
    amplitude = t["swelling_mm"].std(axis=1)
    clay_rich, rocky = amplitude[soil == "clay-rich"], amplitude[soil == "thin-rocky"]
    assert clay_rich.size >= 10 and rocky.size >= 10
    assert clay_rich.mean() > 1.0 and rocky.max() < 0.1
    days = (dates - np.datetime64("2020-01-01")).astype(float)
    omega = 2 * np.pi / 365.25
    design = np.c_[np.cos(omega * days), np.sin(omega * days), np.ones_like(days), days]
    c = np.linalg.lstsq(design, t["swelling_mm"][soil == "clay-rich"].mean(axis=0), rcond=None)[0]
    peak_doy = (np.arctan2(c[1], c[0]) / omega) % 365.25 + 1      # uplift is towards the satellite
    lag = (peak_doy - demo.meta["processes"]["swelling"]["wet_season_peak_doy"]) % 365.25
    assert 14 <= lag <= 100                                         # weeks after the rains


def test_landslides_only_on_steep_weak_slopes_and_faster_when_wet(demo):
    t, dates = demo.truth, demo.dates
    moving = np.abs(t["landslide_mm"]).max(axis=1) > 0
    assert moving.sum() >= 5
    slope = slope_at(demo.folder, t["x"], t["y"])
    assert slope[moving].min() >= 15.0 - 0.01
    geology = classes_at(demo.folder / "geology.gpkg", "unit", t["x"][moving], t["y"][moving])
    assert set(geology) <= {"clay", "flysch"}
    speed = np.abs(np.diff(t["landslide_mm"][moving], axis=1)).mean(axis=0) / np.diff(dates).astype(float)
    month = (dates[:-1] + np.diff(dates) // 2).astype("datetime64[M]").astype(int) % 12 + 1
    wet, dry = np.isin(month, (12, 1, 2, 3)), np.isin(month, (6, 7, 8, 9))
    assert speed[wet].mean() > 1.5 * speed[dry].mean()


def test_earthquake_step_is_smooth_and_relaxes_logarithmically(demo):
    t, dates = demo.truth, demo.dates
    quake = demo.meta["processes"]["earthquake"]
    event = np.datetime64(quake["date"])
    k = np.searchsorted(dates, event, side="right")             # first acquisition after the event
    seismic = t["seismic_mm"]
    assert np.abs(seismic[:, :k]).max() == 0
    step = seismic[:, k]
    assert np.abs(step).max() > 5
    after = np.abs(np.diff(seismic[:, k:], axis=1)).max()
    assert np.abs(step).max() > 5 * after                        # a step, not a ramp
    # smooth in space: neighbours differ far less than the field varies over the region
    _, nearest = cKDTree(np.c_[t["x"], t["y"]]).query(np.c_[t["x"], t["y"]], k=2)
    spread = np.percentile(step, 95) - np.percentile(step, 5)
    assert np.median(np.abs(step - step[nearest[:, 1]])) < 0.02 * spread
    # afterslip grows like log(time): the second 270 days add less than the first
    strongest = seismic[np.argmax(np.abs(step))]
    post_1 = window_change(strongest, dates, dates[k], 270)
    post_2 = window_change(strongest, dates, dates[k], 540)
    assert 1.0 < post_2 / post_1 < 1.5


def test_thermal_dilation_only_on_buildings_in_phase_with_summer(demo):
    t, dates = demo.truth, demo.dates
    height = t["building_height_m"]
    on_building = height > 0
    assert on_building.sum() >= 20
    assert set(t["land_cover"][on_building]) <= {"city", "industry", "village", "farm"}
    assert np.array_equal(np.abs(t["thermal_mm"]).max(axis=1) > 0, on_building)
    amplitude = t["thermal_mm"][on_building].std(axis=1)
    assert np.corrcoef(amplitude, height[on_building])[0, 1] > 0.99
    warmest = dates[np.argmax(t["thermal_mm"][np.argmax(height)])]
    assert warmest.astype("datetime64[M]").astype(int) % 12 + 1 in (6, 7, 8)


def test_noise_has_egms_size(demo):
    noise = demo.truth["noise_mm"]
    assert 2.0 <= noise.std() <= 4.0
    per_point = noise.std(axis=1)
    assert per_point.min() > 1.5 and per_point.max() < 4.5


def test_atmosphere_is_spatially_correlated(demo):
    t = demo.truth
    residual = demo.observed - t["truth_mm"]                      # what a perfect model would leave
    full = ~np.isnan(residual).any(axis=1)
    residual, x, y = residual[full], t["x"][full], t["y"][full]
    residual = (residual - residual.mean(axis=1, keepdims=True)) / residual.std(axis=1, keepdims=True)
    rng = np.random.default_rng(1)
    i, j = rng.integers(0, x.size, (2, 20000))
    distance = np.hypot(x[i] - x[j], y[i] - y[j])
    corr = (residual[i] * residual[j]).mean(axis=1)
    near, far = (distance > 0) & (distance < 300), distance > 2500
    assert near.sum() > 100 and far.sum() > 100
    assert corr[near].mean() > corr[far].mean() + 0.1
