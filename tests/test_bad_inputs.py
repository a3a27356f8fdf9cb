"""Bad inputs: each is one sentence naming the file and the remedy, or a repair the run reports.

No input hangs or takes the memory: every case here ends in bounded time, and the user's
files are never changed. The data is generated in each test.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
import time
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from engine.aoi import read_aoi
from engine.errors import Cancelled, InputError
from engine.grid import (check_grid_budget, check_outlying_points, grid_shape, make_grid, outlying_points,
                         run_bytes)
from engine.params import RunConfig
from engine.points import MAX_DISPLACEMENT_MM, read_points, regularize_time

REPO = Path(__file__).resolve().parent.parent
X0, Y0 = 4_500_000.0, 2_200_000.0  # a place in Europe, EPSG:3035 metres
FIRST = np.datetime64("2020-01-03")


def one_sentence(message: str, name: str) -> bool:
    return name in message and "\n" not in message and "Error" not in message and message.endswith(".")


@contextmanager
def unchanged(*paths: Path):
    """The files' bytes are the same after the block as before it."""
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    yield
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths} == before


def points_csv(path: Path, n_points=40, n_epochs=150, step_days=6, dates=None, ids=None, xy=None,
               values=None, columns=("pid", "easting", "northing")) -> Path:
    """A generic points CSV: a 2 km cluster in EPSG:3035, smooth series in mm."""
    rng = np.random.default_rng(0)
    dates = FIRST + np.arange(n_epochs) * step_days if dates is None else np.asarray(dates, "datetime64[D]")
    if xy is None:
        xy = np.column_stack([X0 + rng.uniform(0, 2000, n_points), Y0 + rng.uniform(0, 2000, n_points)])
    ids = [f"p{i}" for i in range(len(xy))] if ids is None else ids
    if values is None:
        t = (dates - dates[0]).astype(float) / 365.25
        values = rng.normal(-5, 3, (len(xy), 1)) * t + rng.normal(0, 1, (len(xy), len(dates)))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*columns, *[str(d).replace("-", "") for d in dates]])
        for pid, (x, y), row in zip(ids, xy, values):
            writer.writerow([pid, repr(float(x)), repr(float(y)), *[f"{v:.2f}" for v in row]])
    return path


def config(points: Path, tmp_path: Path, **values) -> RunConfig:
    return RunConfig(points=str(points), out_dir=str(tmp_path / "out"), horizon_days=30, **values)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "forecast", *args, "--epochs", "1",
                           "--horizon-days", "30"], capture_output=True, text=True, cwd=REPO, timeout=timeout)


class Cancelling:
    def progress(self, fraction, message):
        pass

    def should_cancel(self):
        return True


# ---------------------------------------------------------------------------- 2. inputs that hang


def test_displacement_beyond_ten_metres_is_missing_and_counted(tmp_path):
    values = np.zeros((5, 150))
    for row, value in enumerate([1e29, 1e6, 1e12, 1e20, -99999]):
        values[row, 10 + row] = value
    values[0, 20] = -9999.0  # 10 m less a millimetre: a measurement still
    path = points_csv(tmp_path / "huge.csv", n_points=5, values=values)
    with unchanged(path):
        points = read_points(path)
    implausible = np.zeros((5, 150), bool)
    implausible[np.arange(5), 10 + np.arange(5)] = True
    assert not points.valid[implausible].any() and points.valid[~implausible].all()
    assert np.abs(points.displacement_mm[points.valid]).max() <= MAX_DISPLACEMENT_MM
    assert points.displacement_mm[0, 20] == -9999.0
    assert len(points.notes) == 1 and "5 displacement values beyond ±10 m" in points.notes[0]
    assert one_sentence(points.notes[0], "huge.csv")


def test_a_file_of_only_no_data_codes_is_one_sentence(tmp_path):
    path = points_csv(tmp_path / "codes.csv", n_points=3, n_epochs=4, values=np.full((3, 4), -99999.0))
    with pytest.raises(InputError, match="every displacement value is empty or beyond ±10 m") as error:
        read_points(path)
    assert one_sentence(str(error.value), "codes.csv")


def test_fit_shares_ends_on_huge_departures_and_can_be_cancelled():
    from engine.calibrate import fit_shares

    rng = np.random.default_rng(3)
    departures = rng.normal(0, 3, (6, 20, 400))
    truth = 0.5 * departures[0] + rng.normal(0, 0.5, (20, 400))
    departures[2, 5, 7], truth[5, 9] = 1e29, -1e29
    started = time.perf_counter()
    shares = fit_shares(np.zeros((3, 20, 400)), departures, truth)
    assert time.perf_counter() - started < 20
    assert np.isfinite(shares).all() and ((shares >= 0) & (shares <= 1)).all()
    with pytest.raises(Cancelled):
        fit_shares(np.zeros((3, 20, 400)), departures, truth, progress=Cancelling())


def _class_polygons(path: Path, n: int, crs="EPSG:3035", field="unit", invalid=0):
    """n polygons of 20 m in a row, each its own class; the first `invalid` are bow-ties."""
    schema = {"geometry": "Polygon", "properties": {field: "str"}}
    with fiona.open(path, "w", driver="GPKG", crs=crs, schema=schema) as layer:
        features = []
        for i in range(n):
            x, y = X0 + 20 * (i % 200), Y0 + 20 * (i // 200)
            ring = ([(x, y), (x + 20, y + 20), (x + 20, y), (x, y + 20), (x, y)] if i < invalid
                    else [(x, y), (x + 20, y), (x + 20, y + 20), (x, y + 20), (x, y)])
            features.append({"geometry": {"type": "Polygon", "coordinates": [ring]},
                             "properties": {field: f"class {i}"}})
        layer.writerecords(features)
    return path


def test_forty_thousand_geology_classes_are_refused_before_any_polygon_is_read(tmp_path, monkeypatch):
    import engine.priors as priors

    path = _class_polygons(tmp_path / "geology.gpkg", 40_000)
    grid = make_grid((X0, Y0, X0 + 4000, Y0 + 4000), 100)
    shaped = []
    monkeypatch.setattr(priors, "shape", lambda g: shaped.append(g) or shapely.geometry.shape(g))
    started = time.perf_counter()
    with unchanged(path), pytest.raises(InputError, match="40,000 classes, more than 32,767") as error:
        priors.build_priors(grid, geology=path, geology_field="unit")
    assert time.perf_counter() - started < 30
    assert shaped == []  # refused before the polygon loop
    assert one_sentence(str(error.value), "geology.gpkg")


def test_geology_in_another_crs_is_transformed_once_and_can_be_cancelled(tmp_path, monkeypatch):
    import engine.priors as priors

    path = _class_polygons(tmp_path / "geology.gpkg", 400, crs="EPSG:3035")
    wgs84 = tmp_path / "geology_wgs84.gpkg"
    from engine.crs import transform_geometry

    with fiona.open(path) as src, fiona.open(wgs84, "w", driver="GPKG", crs="EPSG:4326",
                                             schema=src.schema) as dst:
        features = list(src)
        moved = transform_geometry(np.array([shapely.geometry.shape(f.geometry) for f in features]),
                                   "EPSG:3035", "EPSG:4326", "test", max_segment=5.0)
        dst.writerecords({"geometry": shapely.geometry.mapping(m), "properties": dict(f.properties)}
                         for f, m in zip(features, moved))
    calls = []
    monkeypatch.setattr(priors, "transform_geometry",
                        lambda *a, **k: calls.append(1) or transform_geometry(*a, **k))
    grid = make_grid((X0, Y0, X0 + 4000, Y0 + 40), 10)
    result = priors.build_priors(grid, geology=wgs84, geology_field="unit")
    assert len(calls) == 1
    assert (result.geology > 0).sum() > 0.9 * 400 * 4  # each 20 m polygon covers four 10 m cells
    with pytest.raises(Cancelled):
        priors.build_priors(grid, geology=wgs84, geology_field="unit", progress=Cancelling())


# ---------------------------------------------------------------------------- 3. memory


def test_a_stray_point_far_from_the_rest_is_named(tmp_path):
    from engine.prepare import prepare

    rng = np.random.default_rng(1)
    xy = np.column_stack([X0 + rng.uniform(0, 2000, 40), Y0 + rng.uniform(0, 2000, 40)])
    xy[17] = (X0 + 200_000, Y0 - 50_000)
    ids = [f"p{i}" for i in range(40)]
    ids[17] = "stray"
    path = points_csv(tmp_path / "stray.csv", xy=xy, ids=ids)
    with unchanged(path), pytest.raises(InputError, match=r"1 point lies more than 10 km from the rest "
                                                          r"\(ids stray\); remove them or give an area") as e:
        prepare(config(path, tmp_path))
    assert one_sentence(str(e.value), "stray.csv")


def test_a_point_at_zero_zero_is_named(tmp_path):
    rng = np.random.default_rng(2)
    xy = np.column_stack([X0 + rng.uniform(0, 2000, 10), Y0 + rng.uniform(0, 2000, 10)])
    xy[3] = (0.0, 0.0)
    path = points_csv(tmp_path / "origin.csv", xy=xy, n_epochs=5)
    with pytest.raises(InputError, match=r"1 of its 10 points lie outside Europe in EPSG:3035 "
                                         r"\(ids p3\)") as e:
        read_points(path)
    assert one_sentence(str(e.value), "origin.csv")


def test_outliers_are_not_the_edge_of_a_spread_out_area():
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0, 30_000, 500), rng.uniform(0, 30_000, 500)
    assert not outlying_points(x, y)[0].any()
    two_towns = np.r_[rng.normal(0, 300, 200), rng.normal(25_000, 300, 200)]
    assert not outlying_points(two_towns, rng.normal(0, 300, 400))[0].any()
    check_outlying_points(two_towns, rng.normal(0, 300, 400), np.arange(400).astype(str), 100.0, "towns")


def test_an_area_of_interest_does_not_skip_the_memory_check(tmp_path):
    from engine.prepare import prepare

    path = points_csv(tmp_path / "points.csv")
    europe = "EPSG:3035;POLYGON((2600000 1400000, 6500000 1400000, 6500000 5400000, 2600000 5400000, " \
             "2600000 1400000))"
    started = time.perf_counter()
    with unchanged(path), pytest.raises(InputError, match=r"area of interest WKT text: a grid of 39,001 × "
                                                          r"40,001 cells .* over the budget") as error:
        prepare(config(path, tmp_path, aoi=europe))
    assert time.perf_counter() - started < 30
    assert "give a smaller area of interest or a larger cell size." in str(error.value)


def test_the_budget_counts_the_epochs_and_the_horizon():
    bounds = (X0, Y0, X0 + 10_000, Y0 + 10_000)
    cells = grid_shape(bounds, 100)[0] * grid_shape(bounds, 100)[1]
    short = check_grid_budget(bounds, 100, 100, 10**12, "pts.csv")
    long = check_grid_budget(bounds, 100, 10_000, 10**12, "pts.csv")
    assert long - short == run_bytes(cells, 10_000) - run_bytes(cells, 100) > 0
    assert check_grid_budget(bounds, 100, 100, 10**12, "pts.csv", horizon_steps=61) > short
    check_grid_budget(bounds, 100, 100, short, "pts.csv")
    with pytest.raises(InputError, match=r"pts.csv: a grid of 101 × 101 cells of 100 m over 10,000 epochs"):
        check_grid_budget(bounds, 100, 10_000, short, "pts.csv")


@pytest.mark.parametrize("bounds", [(X0, Y0, X0 + 1234.5, Y0 + 999.9), (-50.0, -50.0, 50.0, 50.0),
                                    (X0 + 0.1, Y0 - 0.1, X0 + 0.1, Y0 - 0.1),
                                    (4e6, 3e6, 4.00005e6, 3.00002e6)])
def test_the_estimated_grid_is_the_grid_that_is_made(bounds):
    for cell in (5.0, 100.0, 333.0):
        assert grid_shape(bounds, cell) == make_grid(bounds, cell).shape


def test_the_regular_time_axis_is_counted_before_it_is_made(tmp_path):
    dates = np.array(["1992-01-01", "2024-01-01"], "datetime64[D]")
    path = points_csv(tmp_path / "decades.csv", n_points=2000, dates=dates, values=np.zeros((2000, 2)))
    points = read_points(path)
    with pytest.raises(InputError, match=r"decades.csv: 2,000 points × 1,949 epochs of 6 days .* over the "
                                         r"memory budget of 10.0 MB; use a shorter period"):
        regularize_time(points, max_bytes=10_000_000)


def _checkpoint(path: Path, config_values: dict, tensors=None) -> Path:
    from safetensors.torch import save_file

    from engine.checkpoint import FORMAT

    import torch

    save_file(tensors if tensors is not None else {"w": torch.zeros(1)}, str(path),
              metadata={"format": FORMAT, "config": json.dumps(config_values), "meta": "{}"})
    return path


PEAK_OF_LOAD = """
import sys
from engine.errors import InputError
from engine.checkpoint import load_checkpoint
import torch

def status_kb(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key))

baseline = status_kb("VmRSS")
try:
    load_checkpoint(sys.argv[1])
except InputError as error:
    print((status_kb("VmHWM") - baseline) * 1024)
    print(error)
"""


@pytest.mark.parametrize("values,problem", [
    ({"d_model": 4096, "n_layers": 64}, "d_model is 4096; it must be a whole number from 1 to 2048"),
    ({"d_model": 2048, "n_layers": 48, "n_heads": 8}, r"make \d+\.\d GB of weights, more than the 1.0 GB"),
])
def test_a_huge_checkpoint_config_is_refused_before_allocating(tmp_path, values, problem):
    path = _checkpoint(tmp_path / "huge.safetensors", values)
    result = subprocess.run([sys.executable, "-c", PEAK_OF_LOAD, str(path)], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    peak_bytes, message = result.stdout.strip().split("\n", 1)
    assert int(peak_bytes) < 300e6
    assert one_sentence(message, "huge.safetensors") and re.search(problem, message)


@pytest.mark.parametrize("values,problem", [
    ({"patch_cells": 0}, "patch_cells is 0; it must be a whole number from 1"),
    ({"n_heads": 0}, "n_heads is 0; it must be a whole number from 1"),
    ({"d_model": 64, "n_heads": 5}, "d_model 64 is not a multiple of n_heads 5"),
    ({"n_baselines": 4}, "n_baselines is 4; it must be a whole number from 1 to 3"),
    ({"cell_size_m": float("nan")}, "cell_size_m is nan"),
    ({"tile_cells": "16"}, "tile_cells is '16'"),
])
def test_an_impossible_checkpoint_config_is_one_sentence(tmp_path, values, problem):
    from engine.checkpoint import load_checkpoint

    path = _checkpoint(tmp_path / "odd.safetensors", values)
    with unchanged(path), pytest.raises(InputError, match=problem) as error:
        load_checkpoint(path)
    assert one_sentence(str(error.value), "odd.safetensors") and "model.safetensors that GroundCast wrote" \
        in str(error.value)


def test_nan_weights_are_one_sentence(tmp_path):
    from engine.checkpoint import load_checkpoint, save_checkpoint
    from engine.model import MMSTT, ModelConfig

    import torch

    model = MMSTT(ModelConfig(d_model=16, n_heads=2, n_layers=1))
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    path = tmp_path / "diverged.safetensors"
    save_checkpoint(path, model, {})
    with pytest.raises(InputError, match="NaN or infinite values .* train the model again") as error:
        load_checkpoint(path)
    assert one_sentence(str(error.value), "diverged.safetensors")


# ---------------------------------------------------------------------------- 4. wrong results


def test_repeated_ids_are_made_unique_and_never_mispaired(tmp_path):
    from engine.evaluate import held_out
    from engine.prepare import prepare

    ids = ["DUP"] * 5 + [f"p{i}" for i in range(5, 40)]
    ids[6] = "DUP~2"  # a name the renaming must not take
    path = points_csv(tmp_path / "dup.csv", ids=ids)
    with unchanged(path):
        full = read_points(path)
    assert len(set(full.ids)) == full.n_points == 40
    assert full.ids[:5].tolist() == ["DUP", "DUP~3", "DUP~4", "DUP~5", "DUP~6"] and full.ids[6] == "DUP~2"
    assert len(full.notes) == 1 and "1 point ids appear more than once (DUP)" in full.notes[0]
    cut = full.dates[-30]
    scene = prepare(config(path, tmp_path), until=cut, points=full)
    dates_future, truth = held_out(full, scene.points)
    rows = [full.ids.tolist().index(p) for p in scene.points.ids]
    np.testing.assert_array_equal(truth.T, full.displacement_mm[rows][:, full.dates > cut])
    assert any("appear more than once" in note for note in scene.notes)


@pytest.mark.parametrize("columns,prj,problem", [
    (("pid", "easting", "northing"), None, "look like degrees, but with no .prj file beside it they are read "
                                           "as EPSG:3035 metres; name the columns lon and lat"),
    (("pid", "x", "y"), None, "look like degrees"),
    (("pid", "x", "y"), "EPSG:3035", "look like degrees, but the file gives EPSG:3035 metres"),
])
def test_degrees_read_as_egms_metres_are_refused(tmp_path, columns, prj, problem):
    rng = np.random.default_rng(5)
    xy = np.column_stack([-3.7 + rng.uniform(0, 0.02, 10), 40.4 + rng.uniform(0, 0.02, 10)])
    path = points_csv(tmp_path / "madrid.csv", xy=xy, columns=columns, n_epochs=5)
    if prj:
        from pyproj import CRS

        path.with_suffix(".prj").write_text(CRS(prj).to_wkt("WKT1_ESRI"))
    with unchanged(path), pytest.raises(InputError, match=problem) as error:
        read_points(path)
    assert one_sentence(str(error.value), "madrid.csv")


def test_degrees_with_their_prj_are_read_as_degrees(tmp_path):
    from pyproj import CRS

    xy = np.column_stack([-3.7 + np.arange(10) * 1e-3, 40.4 + np.arange(10) * 1e-3])
    path = points_csv(tmp_path / "madrid.csv", xy=xy, columns=("pid", "x", "y"), n_epochs=5)
    path.with_suffix(".prj").write_text(CRS("EPSG:4326").to_wkt("WKT1_ESRI"))
    assert read_points(path).crs == "EPSG:4326"


def test_metres_of_another_projection_without_prj_are_refused(tmp_path):
    xy = np.column_stack([355_000 + np.arange(10.0), 4_290_000 + np.arange(10.0)])  # UTM 33N
    path = points_csv(tmp_path / "utm.csv", xy=xy, columns=("pid", "x", "y"), n_epochs=5)
    with pytest.raises(InputError, match="lie outside Europe, but with no .prj file .* add a .prj file") as e:
        read_points(path)
    assert one_sentence(str(e.value), "utm.csv")


def test_two_observations_per_point_are_refused(tmp_path):
    from engine.prepare import prepare

    dates = np.array(["2016-01-01", "2024-01-01"], "datetime64[D]")
    path = points_csv(tmp_path / "two.csv", n_points=80, dates=dates, values=np.ones((80, 2)))
    problem = r"no point is observed on more than 2 of its 488 epochs of 6 days .* needs at least \d+"
    with unchanged(path), pytest.raises(InputError, match=problem) as e:
        prepare(config(path, tmp_path))
    assert one_sentence(str(e.value), "two.csv")


def test_two_observations_per_point_on_different_dates_are_refused(tmp_path):
    from engine.prepare import prepare

    values = np.full((80, 160), np.nan)
    values[np.arange(80), np.arange(80)] = 1.0
    values[np.arange(80), np.arange(80) + 80] = 2.0  # together the points see every date, each only two
    dates = np.datetime64("2016-01-01") + np.arange(160) * 18
    path = points_csv(tmp_path / "staggered.csv", n_points=80, dates=dates, values=values)
    with pytest.raises(InputError, match=r"no point is observed on more than 2 of its 478 epochs") as e:
        prepare(config(path, tmp_path))
    assert one_sentence(str(e.value), "staggered.csv")


def test_a_short_history_names_the_file(tmp_path):
    from engine.prepare import prepare

    path = points_csv(tmp_path / "short.csv", n_epochs=40)
    with pytest.raises(InputError, match=r"span 40 epochs of 6 days, and training needs at least (\d+) "
                                         r".* give a longer time series") as e:
        prepare(config(path, tmp_path))
    assert one_sentence(str(e.value), "short.csv")
    need = int(re.search(r"at least (\d+)", str(e.value))[1])
    enough = points_csv(tmp_path / "enough.csv", n_epochs=need)
    assert prepare(config(enough, tmp_path)).regular.n_dates == need
    with pytest.raises(InputError, match=f"span {need - 1} epochs"):
        prepare(config(points_csv(tmp_path / "one_short.csv", n_epochs=need - 1), tmp_path))


@pytest.mark.parametrize("dates,problem", [
    (["1989-06-01", "2020-01-01"], "1989-06-01 lies before 1991, when no InSAR satellite flew"),
    (["0001-01-01", "9999-12-31"], "0001-01-01 lies before 1991"),
    (["2020-01-01", "2999-01-01"], "2999-01-01 lies in the future"),
])
def test_dates_no_satellite_could_have_seen_are_refused(tmp_path, dates, problem):
    path = points_csv(tmp_path / "dates.csv", n_points=3, dates=np.array(dates, "datetime64[D]"),
                      values=np.ones((3, 2)))
    with pytest.raises(InputError, match=problem) as error:
        read_points(path)
    assert one_sentence(str(error.value), "dates.csv")


# ---------------------------------------------------------------------------- 6. sentences, not Python


def test_a_damaged_zip_stream_is_one_sentence(tmp_path):
    text = points_csv(tmp_path / "p.csv", n_points=400).read_text()
    path = tmp_path / "damaged.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("points.csv", text)
    raw = bytearray(path.read_bytes())
    for i in range(300, 600):  # inside the deflate stream, after the local header
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))
    with unchanged(path), pytest.raises(InputError, match="damaged.zip: the zip archive is damaged") as error:
        read_points(path)
    assert one_sentence(str(error.value), "damaged.zip") and "download it again" in str(error.value)


def test_an_area_in_metres_labelled_as_an_unknown_crs_is_one_sentence(tmp_path):
    path = tmp_path / "aoi.geojson"
    ring = [[X0, Y0], [X0 + 1000, Y0], [X0 + 1000, Y0 + 1000], [X0, Y0 + 1000], [X0, Y0]]
    path.write_text(json.dumps({
        "type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:999999"}},
        "features": [{"type": "Feature", "properties": {},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}}],
    }))
    with unchanged(path), pytest.raises(InputError, match="cannot be degrees, but their coordinate system is "
                                                          "EPSG:4326; save the area") as error:
        read_aoi(path)
    assert one_sentence(str(error.value), "aoi.geojson")


@pytest.mark.parametrize("case", ["stray", "two observations", "europe aoi"])
def test_the_command_line_says_one_sentence_and_exits_2(tmp_path, case):
    rng = np.random.default_rng(6)
    args = []
    if case == "stray":
        xy = np.column_stack([X0 + rng.uniform(0, 2000, 40), Y0 + rng.uniform(0, 2000, 40)])
        xy[0] = (X0 - 300_000, Y0)
        path = points_csv(tmp_path / "points.csv", xy=xy)
        expected = "1 point lies more than"
    elif case == "two observations":
        two_dates = np.array(["2016-01-01", "2024-01-01"], "datetime64[D]")
        path = points_csv(tmp_path / "points.csv", dates=two_dates, values=np.ones((40, 2)))
        expected = "no point is observed on more than 2"
    else:
        path = points_csv(tmp_path / "points.csv")
        args = ["--aoi", "EPSG:3035;POLYGON((2600000 1400000, 6500000 1400000, 6500000 5400000, "
                         "2600000 5400000, 2600000 1400000))"]
        expected = "over the budget"
    with unchanged(path):
        result = run_cli("--points", str(path), "--out", str(tmp_path / "out"), *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert expected in lines[-1] and lines[-1].startswith("error: ") and lines[-1].endswith(".")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- 7. notes for the log


def test_a_dem_with_infinite_values_warns_in_the_notes_not_on_stderr(tmp_path):
    from engine.priors import build_priors

    z = np.add.outer(np.arange(50.0), np.arange(50.0)).astype(np.float32)
    z[10:12, 10:30] = np.inf
    z[30, 30] = -np.inf
    path = tmp_path / "dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=50, height=50, count=1, dtype="float32",
                       crs="EPSG:3035", transform=from_origin(X0, Y0 + 5000, 100, 100)) as dst:
        dst.write(z, 1)
    grid = make_grid((X0, Y0, X0 + 5000, Y0 + 5000), 100)
    with unchanged(path), warnings.catch_warnings():
        warnings.simplefilter("error")
        priors = build_priors(grid, dem=path)
    assert priors.elevation_source == "dem"
    known = ~np.isnan(priors.elevation_m)
    assert np.isfinite(priors.elevation_m[known]).all() and known.mean() > 0.9
    assert np.isfinite(priors.slope_deg[~np.isnan(priors.slope_deg)]).all()
    assert len(priors.notes) == 1 and "infinite or impossible elevations" in priors.notes[0]
    assert one_sentence(priors.notes[0], "dem.tif")


def test_repaired_polygons_are_noted(tmp_path):
    from engine.priors import build_priors

    bowtie = f"EPSG:3035;POLYGON(({X0} {Y0}, {X0 + 2000} {Y0 + 2000}, {X0 + 2000} {Y0}, {X0} {Y0 + 2000}, " \
             f"{X0} {Y0}))"
    aoi = read_aoi(bowtie)
    assert len(aoi.notes) == 1 and "1 invalid polygon" in aoi.notes[0]
    assert one_sentence(aoi.notes[0], "WKT text")
    assert aoi.to_crs("EPSG:4326").notes == aoi.notes
    path = _class_polygons(tmp_path / "geology.gpkg", 300, invalid=3)
    grid = make_grid((X0, Y0, X0 + 2000, Y0 + 40), 10)
    with unchanged(path):
        priors = build_priors(grid, geology=path, geology_field="unit")
    assert len(priors.notes) == 1 and "3 invalid polygons were repaired" in priors.notes[0]
    assert one_sentence(priors.notes[0], "geology.gpkg")


def test_the_scene_gathers_the_notes_and_says_a_large_grid_s_memory(tmp_path, monkeypatch):
    import engine.prepare as prepare_module

    values = np.random.default_rng(7).normal(0, 2, (40, 150))
    values[3, 7] = -99999
    path = points_csv(tmp_path / "noted.csv", values=values)
    scene = prepare_module.prepare(config(path, tmp_path))
    assert len(scene.notes) == 1 and "1 displacement values beyond ±10 m" in scene.notes[0]
    monkeypatch.setattr(prepare_module, "NOTE_ABOVE_BYTES", 0)
    scene = prepare_module.prepare(config(path, tmp_path))
    grid = scene.cube.grid
    assert f"the grid of {grid.width} × {grid.height} cells over 150 epochs takes about" in scene.notes[-1]
    assert one_sentence(scene.notes[-1], "noted.csv")


def test_points_seen_for_less_than_a_year_are_named_in_one_note(tmp_path):
    from engine.prepare import prepare

    n_points, n_epochs = 40, 150
    values = np.cumsum(np.random.default_rng(1).normal(0, 1, (n_points, n_epochs)), axis=1)
    values[:3, : n_epochs - 30] = np.nan  # three new points: their last 180 days only
    path = points_csv(tmp_path / "new.csv", n_points=n_points, n_epochs=n_epochs, values=values)
    scene = prepare(config(path, tmp_path))
    young = [note for note in scene.notes if "less than a year" in note]
    assert len(young) == 1 and "3 points are seen for less than a year" in young[0]
    assert one_sentence(young[0], "new.csv")
    values[:3] = 1.0  # seen throughout: no note
    path = points_csv(tmp_path / "old.csv", n_points=n_points, n_epochs=n_epochs, values=values)
    scene = prepare(config(path, tmp_path))
    assert not [note for note in scene.notes if "less than a year" in note]
