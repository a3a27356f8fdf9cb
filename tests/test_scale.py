"""Large inputs: reading into an on-disk cube in bounded memory, tile-by-tile forecasting, the
series store and the distributed tile runs."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np

from engine.grid import grid_points, make_grid
from engine.points import read_points, regularize_time
from engine.store import Scratch, is_on_disk


def write_dense_csv(path, side: int, n_dates: int, seed: int = 0, doubles: int = 0) -> None:
    """`side` x `side` points on a 100 m grid in EPSG:3035 (one per cell; the first `doubles` cells
    get a second point), `n_dates` dates six days apart, a few values missing."""
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2020-01-03") + 6 * np.arange(n_dates)
    header = "pid,easting,northing," + ",".join(str(d).replace("-", "") for d in dates)
    words = np.array([f"{v:.1f}" for v in rng.normal(0, 8, 997)] + [""] * 3)
    x0, y0 = 4_000_050.0, 2_500_050.0
    with open(path, "w") as f:
        f.write(header + "\n")
        cells = [(i, j) for i in range(side) for j in range(side)] + [(0, j) for j in range(doubles)]
        for k, (i, j) in enumerate(cells):
            values = ",".join(words[rng.integers(0, len(words), n_dates)])
            f.write(f"P{k},{x0 + 100 * j:.1f},{y0 + 100 * i + (k >= side * side) * 10:.1f},{values}\n")


def test_reading_into_an_on_disk_cube_stays_under_one_and_a_half_cubes(tmp_path):
    side, n_dates = 120, 150
    csv_path = tmp_path / "dense.csv"
    write_dense_csv(csv_path, side, n_dates, doubles=40)
    cube_bytes = n_dates * side * side * 4  # the float32 cube the reading ends with
    gc.collect()
    with Scratch(tmp_path / "out", on_disk_above=1_000_000, work_values=200_000) as scratch:
        tracemalloc.start()
        try:
            points = read_points(csv_path)
            regular = regularize_time(points)
            bounds = (regular.x.min() - 49, regular.y.min() - 49, regular.x.max() + 49, regular.y.max() + 49)
            cube = grid_points(regular, make_grid(bounds, 100.0, regular.crs))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert cube.displacement_mm.shape == (n_dates, side, side)
        assert cube.displacement_mm.nbytes == cube_bytes
        assert is_on_disk(cube.displacement_mm) and is_on_disk(regular.displacement_mm)
        assert any(scratch.folder.glob("*.npy"))
        assert peak <= 1.5 * cube_bytes, f"peak {peak / 1e6:.1f} MB, cube {cube_bytes / 1e6:.1f} MB"
        folder = scratch.folder
    assert not folder.exists()  # the scratch folder goes with the block
    # the on-disk cube holds what reading in memory gives
    expected = grid_points(regularize_time(read_points(csv_path)), cube.grid)
    assert not is_on_disk(expected.displacement_mm)
    assert np.array_equal(cube.displacement_mm, expected.displacement_mm, equal_nan=True)
    assert np.array_equal(cube.count, expected.count)


def small_area(height: int = 40, width: int = 50, n_epochs: int = 150, seed: int = 0):
    """A random-walk cube with gaps on a small grid, as the model sees it, and a random network."""
    import torch

    from engine.grid import Cube, Grid
    from engine.model import MMSTT, ModelConfig
    from engine.priors import build_priors
    from engine.train import TrainedModel
    from engine.windows import make_area

    rng = np.random.default_rng(seed)
    grid = Grid("EPSG:3035", 4_000_000.0, 2_500_000.0, 100.0, width, height)
    dates = np.datetime64("2020-01-03") + 6 * np.arange(n_epochs)
    values = np.cumsum(rng.normal(0, 1, (n_epochs, height, width)), 0).astype(np.float32)
    values[:, rng.random((height, width)) < 0.3] = np.nan  # cells without points
    values[rng.random(values.shape) < 0.1] = np.nan  # missed epochs
    cube = Cube(grid, dates, values, np.isfinite(values).astype(np.uint16))
    config = ModelConfig(horizon_steps=8, cell_size_m=100.0)
    torch.manual_seed(seed)
    trained = TrainedModel(MMSTT(config).eval(), 5.0, "cpu", n_epochs - 10, {})
    return make_area(cube, build_priors(grid), config), trained


def test_tile_by_tile_forecasting_equals_the_whole_area_at_once(tmp_path):
    from engine.sample import forecast_area
    from engine.windows import occupied_tiles

    area, trained = small_area()
    n_tiles = len(occupied_tiles(area, trained.model.config.tile_cells))
    assert n_tiles >= 9
    whole, whole_level = forecast_area(trained, area, batch_tiles=n_tiles, threads=1)  # one batch
    with Scratch(tmp_path / "out", on_disk_above=10_000):
        tiled, tiled_level = forecast_area(trained, area, batch_tiles=1, threads=3)  # a tile at a time
        assert is_on_disk(tiled)
        pooled, _ = forecast_area(trained, area, batch_tiles=4, threads=3)
        inline, _ = forecast_area(trained, area, batch_tiles=4, threads=1)
        assert np.isfinite(whole).any() and np.isnan(whole).any()
        assert np.array_equal(np.isnan(tiled), np.isnan(whole))
        np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-4)  # the same up to batched float sums
        assert np.array_equal(tiled_level, whole_level, equal_nan=True)
        assert np.array_equal(pooled, inline, equal_nan=True)  # threads change nothing


def test_the_series_store_reads_one_point_without_the_rest(tmp_path, monkeypatch):
    import json
    import zipfile

    from engine import results
    from engine.outputs import write_series_store

    n, t, h = 5000, 40, 6
    rng = np.random.default_rng(1)
    obs = rng.normal(0, 10, (n, t)).astype(np.float32)
    obs[rng.random(obs.shape) < 0.1] = np.nan
    q50 = rng.normal(0, 10, (n, h))
    folder = tmp_path / "run"
    folder.mkdir()
    per_point = {"obs_mm": obs, "level_mm": obs[:, -1], "q05_mm": q50 - 1, "q50_mm": q50, "q95_mm": q50 + 1,
                 "timefn_mm": q50 * 0.5, "persistence_mm": lambda rows: np.repeat(obs[rows, -1:], h, 1)}
    write_series_store(folder / results.SERIES, {"pid": np.array([f"P{i}" for i in range(n)]),
                                                 "x": np.arange(n) * 10.0, "y": np.zeros(n),
                                                 "dates_obs": np.datetime64("2020-01-01") + 6 * np.arange(t),
                                                 "dates_fc": np.datetime64("2021-01-01") + 6 * np.arange(h)},
                       per_point, n_points=n, chunk_points=256, keep={"q50_mm": 16})
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    (folder / results.MANIFEST).write_text(json.dumps({"schema_version": results.SCHEMA_VERSION,
                                                       "kind": "forecast", "files": files}))
    run = results.ForecastRun.open(folder)
    opened = []
    original = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    run.n_points, run.series_dates  # the ids and dates: read once, not per click
    opened.clear()
    example = run.series(pid="P3000")
    assert sorted(opened) == sorted(f"{key}/0000011.npy" for key in results.SERIES_KEYS)  # 3000 // 256
    np.testing.assert_array_equal(example["obs_mm"], obs[3000].astype(np.float64))
    np.testing.assert_allclose(example["q50_mm"], q50[3000], rtol=2e-5)  # 16 bits of mantissa
    assert not np.array_equal(example["q50_mm"], q50[3000].astype(np.float32))  # rounded, so it compresses
    np.testing.assert_array_equal(example["q95_mm"], (q50[3000] + 1).astype(np.float32))
    # several rows, a mask and all of them come back in order
    rows = np.array([4999, 0, 257])
    np.testing.assert_array_equal(run.series_values("obs_mm", rows), obs[rows].astype(np.float64))
    mask = np.zeros(n, bool)
    mask[[5, 600, 601]] = True
    np.testing.assert_array_equal(run.series_values("level_mm", mask), obs[mask, -1].astype(np.float64))
    np.testing.assert_array_equal(run.series_values("obs_mm"), obs.astype(np.float64))
    raw = obs.nbytes + 5 * n * h * 4
    assert (folder / results.SERIES).stat().st_size < raw  # compressed


# -- many tiles on a Dask cluster --------------------------------------------------------------------
def split_by_x(csv_path, out_dir) -> list:
    """The demo CSV cut in two files at the median easting, west then east."""
    lines = csv_path.read_text().splitlines()
    column = lines[0].lower().split(",").index("easting")
    rows = lines[1:]
    middle = float(np.median([float(r.split(",")[column]) for r in rows]))
    paths = []
    for name, west in (("west", True), ("east", False)):
        keep = [r for r in rows if (float(r.split(",")[column]) < middle) == west]
        path = out_dir / f"demo_{name}.csv"
        path.write_text("\n".join([lines[0], *keep]) + "\n")
        paths.append(path)
    return paths


def tile_config(points, out):
    from engine.params import RunConfig

    return RunConfig(points=str(points), out_dir=str(out), model="scratch", epochs=1, horizon_days=30,
                     device="cpu")


def region_tiles(tmp_path_factory):
    from engine.demo import POINTS_NAME, make_demo

    base = tmp_path_factory.mktemp("region")
    make_demo(base / "demo", seed=3, size_km=2.0)
    return split_by_x(base / "demo" / POINTS_NAME, base)


def test_two_local_workers_give_the_single_process_results(tmp_path_factory, tmp_path):
    import os

    import rasterio
    import torch

    from engine import results
    from engine.run import run_forecast
    from engine.tiles import run_tiles, tile_names

    tiles = region_tiles(tmp_path_factory)
    manifest = run_tiles(tile_config(tiles[0], tmp_path / "region"), tiles, workers=2, log=lambda m: None)
    names = tile_names(tiles)
    assert sorted(manifest["tiles"]) == sorted(names)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # as each of the two workers runs
    try:
        for path, name in zip(tiles, names):
            run_forecast(tile_config(path, tmp_path / "single" / name), log=lambda m: None)
    finally:
        torch.set_num_threads(threads)
    for name in names:
        distributed = results.ForecastRun.open(tmp_path / "region" / name)
        single = results.ForecastRun.open(tmp_path / "single" / name)
        for kind in ("change", "forecast", "exceedance"):
            with rasterio.open(distributed.raster(kind)) as a, rasterio.open(single.raster(kind)) as b:
                assert np.array_equal(a.read(), b.read())
        q50 = distributed.series_values("q50_mm"), single.series_values("q50_mm")
        assert np.array_equal(*q50, equal_nan=True)
    # the mosaic: one layer over both tiles, by paths relative to it, the tiles' dates as band names
    with rasterio.open(tmp_path / "region" / "change.vrt") as mosaic:
        with rasterio.open(results.ForecastRun.open(tmp_path / "region" / names[0]).raster("change")) as west:
            assert mosaic.count == west.count and mosaic.descriptions == west.descriptions
            assert mosaic.bounds.left == west.bounds.left and mosaic.width > west.width
            assert mosaic.nodata == west.nodata
        data = mosaic.read(1, masked=True)
        assert data.count() > 0
    assert 'relativeToVRT="1"' in (tmp_path / "region" / "change.vrt").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["region", "single"]  # nothing staged is left


class CancelAfter:
    def __init__(self, seconds: float):
        import time

        self.start, self.seconds, self.asked = time.monotonic(), seconds, 0

    def progress(self, fraction, message):
        pass

    def should_cancel(self) -> bool:
        import time

        self.asked += 1
        return time.monotonic() - self.start > self.seconds


def test_cancelling_the_region_with_workers_running_leaves_no_output(tmp_path_factory, tmp_path):
    import pytest

    from engine.errors import Cancelled
    from engine.tiles import run_tiles

    tiles = region_tiles(tmp_path_factory)
    progress = CancelAfter(12.0)  # the workers are up and training by then
    with pytest.raises(Cancelled):
        run_tiles(tile_config(tiles[0], tmp_path / "region"), tiles, workers=2, progress=progress,
                  log=lambda m: None)
    assert progress.asked > 1
    assert list(tmp_path.iterdir()) == []  # no region, no staged tiles, no lock, no scratch


def test_forecast_tiles_on_the_command_line_names_a_missing_file(tmp_path, capsys):
    from engine.cli import main

    present = tmp_path / "a.csv"
    present.write_text("pid,easting,northing,20200101\n")
    code = main(["forecast-tiles", "--points", str(present), str(tmp_path / "missing.csv"), "--out",
                 str(tmp_path / "region"), "--model", "scratch", "--workers", "2"])
    assert code == 2
    assert "missing.csv: the file does not exist." in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_young_cells_borrow_their_older_neighbours_increments_and_nothing_else_moves():
    """Cells seen for four months take the inverse-distance mean of the nearest older cells'
    quantile increments; older cells, and cells with no data, keep theirs."""
    from engine.sample import BORROW_NEIGHBOURS, borrow_for_young_cells
    from engine.windows import Area

    T, size, Q, H = 100, 12, 3, 5
    dates = np.datetime64("2020-01-03") + 6 * np.arange(T)
    cube = np.zeros((T, size, size), np.float32)
    cube[:, 0, :] = np.nan  # a row with no data at all
    cube[: T - 20, 4:7, 4:7] = np.nan  # a block of new points: four months of history
    area = Area(dates, cube, np.zeros((1, size, size), np.float32), np.zeros((size, size), np.int64),
                np.zeros((size, size), np.int64), size, size, 100.0)
    cols = np.arange(size, dtype=np.float32)
    increments = np.broadcast_to(cols, (Q, H, size, size)).copy() * np.arange(1, Q + 1)[:, None, None, None]
    increments[:, :, 0, :] = np.nan
    increments[:, :, 4:7, 4:7] = 1000.0  # what the network made of four months
    before = increments.copy()
    young = borrow_for_young_cells(increments, area, T)
    assert young.sum() == 9 and young[4:7, 4:7].all()
    assert np.array_equal(increments[:, :, ~young], before[:, :, ~young], equal_nan=True)
    borrowed = increments[:, :, 4:7, 4:7] / np.arange(1, Q + 1)[:, None, None, None]
    assert (borrowed < size).all() and (borrowed >= 0).all()  # within the neighbours' columns
    # the centre cell's nearest older cells surround it: their mean column is near its own (5)
    assert 2 * 4.0 < increments[1, 0, 5, 5] < 2 * 6.0
    # a cell at the block's west edge leans west, towards its nearer neighbours
    assert increments[1, 0, 5, 4] < increments[1, 0, 5, 6]
    assert BORROW_NEIGHBOURS == 8 and np.all(np.diff(increments[:, 0, 5, 5]) > 0)  # quantiles stay in order
    # with no young cell, nothing changes
    full = Area(dates, np.zeros((T, size, size), np.float32), area.priors, area.geology, area.soil,
                size, size, 100.0)
    again = before.copy()
    assert not borrow_for_young_cells(again, full, T).any()
    assert np.array_equal(again, before, equal_nan=True)
