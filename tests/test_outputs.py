"""Output writers: round trips, no pickles, non-blank figures, nothing half-written."""
from __future__ import annotations

import json

import fiona
import numpy as np
import pytest
import rasterio
from affine import Affine
from matplotlib.figure import Figure
from PIL import Image

from engine.grid import Grid
from engine.outputs import (
    ATTRIBUTION,
    plot_backtest,
    plot_series,
    write_band_stack,
    write_json,
    write_points_gpkg,
    write_series_npz,
)

GRID = Grid("EPSG:3035", 4_321_000.0, 3_210_000.0, 100.0, width=7, height=5)
DATES = ["2024-01-06", "2024-01-12", "2024-01-18"]


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_band_stack_round_trip(tmp_path):
    values = np.arange(3 * 5 * 7, dtype=np.float32).reshape(3, 5, 7)
    values[1, 2, 3] = np.nan
    path = tmp_path / "forecast.tif"
    write_band_stack(path, GRID, values, DATES, description="median forecast")

    with rasterio.open(path) as src:
        assert src.count == 3
        assert src.descriptions == tuple(DATES)
        assert src.units == ("mm", "mm", "mm")
        assert src.nodata == -9999.0
        assert src.crs.to_epsg() == 3035
        assert src.transform == Affine(100.0, 0.0, 4_321_000.0, 0.0, -100.0, 3_210_000.0)
        assert src.profile["tiled"] and src.profile["compress"] == "deflate"
        tags = src.tags()
        assert tags["GROUNDCAST_DATES"] == ",".join(DATES)
        assert tags["ATTRIBUTION"] == ATTRIBUTION
        assert src.tags(2)["DATE"] == DATES[1]
        read = src.read(masked=True)
    assert read.mask[1, 2, 3] and read.mask.sum() == 1
    np.testing.assert_array_equal(read.filled(np.nan)[0], values[0])
    assert leftovers(tmp_path) == ["forecast.tif"]


def test_band_stack_takes_a_unit_and_datetime64_dates(tmp_path):
    path = tmp_path / "exceedance.tif"
    write_band_stack(path, GRID, np.zeros((2, 5, 7)), np.array(DATES[:2], dtype="datetime64[D]"),
                      unit="1")  # dimensionless: a probability
    with rasterio.open(path) as src:
        assert src.descriptions == tuple(DATES[:2]) and src.units == ("1", "1")


def test_band_stack_of_wrong_shape_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="do not match"):
        write_band_stack(tmp_path / "forecast.tif", GRID, np.zeros((3, 7, 5), np.float32), DATES)
    assert leftovers(tmp_path) == []


def test_failure_mid_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "forecast.tif"
    write_band_stack(path, GRID, np.ones((3, 5, 7), np.float32), DATES)

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    # Tags are written after the new file exists and holds pixels.
    monkeypatch.setattr(rasterio.io.DatasetWriter, "update_tags", fail)
    with pytest.raises(RuntimeError):
        write_band_stack(path, GRID, np.full((3, 5, 7), 2.0, np.float32), DATES)
    monkeypatch.undo()
    assert leftovers(tmp_path) == ["forecast.tif"]
    with rasterio.open(path) as src:
        assert (src.read() == 1.0).all()


def test_points_gpkg_round_trip(tmp_path):
    path = tmp_path / "points.gpkg"
    x = np.array([4_321_050.0, 4_321_150.5])
    y = np.array([3_209_950.0, 3_209_850.25])
    fields = {
        "pid": np.array(["A1", "B2"]),
        "forecast_mm": np.array([-12.5, np.nan], dtype=np.float32),
        "n_obs": np.array([210, 17], dtype=np.int32),
        "horizon_date": np.array(["2025-01-01", "2025-01-01"], dtype=object),
    }
    write_points_gpkg(path, x, y, "EPSG:3035", fields)

    assert fiona.listlayers(path) == ["points"]
    with fiona.open(path, layer="points") as src:
        assert src.crs.to_epsg() == 3035
        assert dict(src.schema["properties"]) == {"pid": "str", "forecast_mm": "float", "n_obs": "int",
                                                  "horizon_date": "str"}
        features = list(src)
    assert [f.geometry.coordinates for f in features] == list(zip(x, y))
    assert [dict(f.properties) for f in features] == [
        {"pid": "A1", "forecast_mm": -12.5, "n_obs": 210, "horizon_date": "2025-01-01"},
        {"pid": "B2", "forecast_mm": None, "n_obs": 17, "horizon_date": "2025-01-01"},
    ]


def test_points_gpkg_rejects_bad_fields(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_points_gpkg(tmp_path / "p.gpkg", [0.0, 1.0], [0.0, 1.0], "EPSG:3035", {"a": np.zeros(3)})
    with pytest.raises(ValueError, match="dtype"):
        write_points_gpkg(tmp_path / "p.gpkg", [0.0], [0.0], "EPSG:3035",
                          {"when": np.array(["2020-01-01"], dtype="datetime64[D]")})
    assert leftovers(tmp_path) == []


def test_json_with_numpy_values_and_nan(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"rmse_mm": np.float32(1.5), "n": np.int64(3), "ok": np.bool_(True),
                      "curve": np.array([1.0, np.nan, np.inf]), "missing": float("nan"),
                      "dates": np.array(["2020-01-01", "2020-01-07"], dtype="datetime64[D]"),
                      "nested": [{"width": np.int32(7)}, (1, 2)]})
    assert json.loads(path.read_text()) == {
        "rmse_mm": 1.5, "n": 3, "ok": True, "curve": [1.0, None, None], "missing": None,
        "dates": ["2020-01-01", "2020-01-07"], "nested": [{"width": 7}, [1, 2]]}


def test_json_that_cannot_be_written_leaves_no_file(tmp_path):
    with pytest.raises(TypeError):
        write_json(tmp_path / "summary.json", {"fine": 1, "broken": object()})
    assert leftovers(tmp_path) == []


def test_series_npz_loads_without_pickle(tmp_path):
    path = tmp_path / "series.npz"
    dates = np.array(["1970-01-11", "2020-01-01"], dtype="datetime64[D]")
    write_series_npz(path, pid=np.array(["a", "bb"], dtype=object), dates_obs=dates,
                     obs_mm=np.array([[1.0, np.nan], [2.0, 3.0]], dtype=np.float32))
    with np.load(path, allow_pickle=False) as series:
        assert series["pid"].tolist() == ["a", "bb"] and series["pid"].dtype.kind == "U"
        assert series["dates_obs"].dtype == np.int64
        assert series["dates_obs"].tolist() == [10, int(dates[1].astype(np.int64))]
        np.testing.assert_array_equal(series["obs_mm"], [[1.0, np.nan], [2.0, 3.0]])
    assert leftovers(tmp_path) == ["series.npz"]


def test_series_npz_refuses_object_arrays(tmp_path):
    with pytest.raises(ValueError, match="pickle"):
        write_series_npz(tmp_path / "series.npz", bad=np.array([{"a": 1}, None], dtype=object))
    assert leftovers(tmp_path) == []


def example_series(label, seed):
    """Four years of history, the last of it held out and forecast from the end of the rest."""
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2020-01-01") + np.arange(0, 1460, 6).astype("timedelta64[D]")
    obs = -0.12 * np.arange(dates.size) + rng.normal(0, 1.5, dates.size)
    obs[rng.random(obs.size) < 0.1] = np.nan
    history, held_out = slice(None, -61), slice(-61, None)
    q50 = np.nanmean(obs[-80:-61]) - 0.12 * np.arange(1, 62)
    return {"label": label, "dates_obs": dates[history], "obs_mm": obs[history],
            "dates_truth": dates[held_out], "truth_mm": obs[held_out], "dates_fc": dates[held_out],
            "q05_mm": q50 - 4, "q50_mm": q50, "q95_mm": q50 + 4, "timefn_mm": q50 + 1,
            "persistence_mm": np.full(61, np.nanmean(obs[-65:-61]))}


def test_plot_backtest_writes_a_non_blank_png(tmp_path):
    horizons = [30, 90, 180, 365]
    metrics = {"horizons_days": horizons, "models": {
        "mmstt": {"rmse_mm": [1.0, 1.8, 2.5, 3.9]},
        "timefn": {"rmse_mm": [1.2, 2.4, 3.5, 5.5]},
        "persistence": {"rmse_mm": [1.5, 3.0, 5.0, np.nan]},
    }}
    path = tmp_path / "backtest.png"
    plot_backtest(path, metrics, [example_series("P1", 0), example_series("P2", 1)])
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.info["dpi"][0] == pytest.approx(150, abs=1)
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.std() > 10  # not a blank canvas
    assert leftovers(tmp_path) == ["backtest.png"]


def test_plot_series_draws_what_it_is_given():
    example = example_series("P1", 0)
    full = Figure().add_subplot()
    plot_series(full, example)
    labels = full.get_legend_handles_labels()[1]
    assert sorted(labels) == ["Held-out truth", "MM-STT 90% interval", "MM-STT median", "Observed",
                              "Persistence", "Time function"]
    assert full.get_ylabel() == "Displacement (mm)" and full.get_title() == "P1"

    # A forecast run has no held-out truth; the QGIS widget passes what series.npz holds.
    del example["dates_truth"], example["truth_mm"]
    example["timefn_mm"] = None
    partial = Figure().add_subplot()
    plot_series(partial, example)
    assert "Held-out truth" not in partial.get_legend_handles_labels()[1]
    assert "Time function" not in partial.get_legend_handles_labels()[1]


def test_a_large_band_stack_has_overviews(tmp_path):
    big = Grid("EPSG:3035", 4_321_000.0, 3_210_000.0, 100.0, width=600, height=300)
    path = tmp_path / "big.tif"
    write_band_stack(path, big, np.ones((1, 300, 600), dtype=np.float32), DATES[:1])
    with rasterio.open(path) as src:
        assert src.overviews(1) == [2, 4]
    write_band_stack(tmp_path / "small.tif", GRID, np.ones((1, 5, 7)), DATES[:1])
    with rasterio.open(tmp_path / "small.tif") as src:
        assert src.overviews(1) == []


def test_a_band_stack_is_a_cloud_optimized_geotiff_read_band_by_band(tmp_path):
    from osgeo_utils.samples.validate_cloud_optimized_geotiff import validate

    big = Grid("EPSG:3035", 4_321_000.0, 3_210_000.0, 100.0, width=600, height=300)
    path = tmp_path / "big.tif"
    write_band_stack(path, big, np.arange(3 * 300 * 600, dtype=np.float32).reshape(3, 300, 600), DATES)
    warnings, errors, _ = validate(str(path), full_check=True)
    assert errors == [], errors
    with rasterio.open(path) as src:
        assert src.interleaving.name.upper() == "BAND"  # the timeline reads one date without the others
        assert src.compression.name.upper() == "DEFLATE"
        assert src.block_shapes[0] == (256, 256)
        assert src.read(3)[299, 599] == 3 * 300 * 600 - 1
    assert leftovers(tmp_path) == ["big.tif"]  # the scratch copy is gone


def test_points_gpkg_has_a_spatial_index(tmp_path):
    import sqlite3

    path = tmp_path / "points.gpkg"
    write_points_gpkg(path, [1.0, 2.0], [3.0, 4.0], "EPSG:3035", {"pid": np.array(["a", "b"])})
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master")}
    assert any(name.startswith("rtree_points_") for name in tables)
