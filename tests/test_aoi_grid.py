import json
from pathlib import Path

import fiona
import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon, mapping

from engine.aoi import AOI, clip_points, read_aoi
from engine.errors import InputError
from engine.grid import Cube, Grid, grid_points, make_grid
from engine.points import PointSeries, read_points

DATA = Path(__file__).parent / "data"
L2B = DATA / "EGMS_L2b_022_0845_IW2_VV_2020_2024_1.zip"
L3U = DATA / "EGMS_L3_E45N17_100km_U_2020_2024_1.zip"


def _bounds(points):
    return points.x.min(), points.y.min(), points.x.max(), points.y.max()


def _synthetic(seed=0, n=400, t=9):
    """Points clustered so that cells hold 1 to many points, with missing and masked values."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform([1000, 2000], [1600, 2500], size=(40, 2))
    xy = centres[rng.integers(0, 40, n)] + rng.normal(0, 25, size=(n, 2))
    values = rng.normal(0, 5, size=(n, t)).astype(np.float32)
    values[rng.random((n, t)) < 0.2] = np.nan
    valid = ~np.isnan(values) & (rng.random((n, t)) > 0.1)  # some values present but flagged invalid
    return PointSeries(ids=np.arange(n).astype(str), x=xy[:, 0], y=xy[:, 1], crs="EPSG:3035",
                       dates=np.datetime64("2021-01-01") + 6 * np.arange(t).astype("timedelta64[D]"),
                       displacement_mm=values, valid=valid, attributes={}, source="synthetic",
                       product="generic")


def _brute_force(points, grid):
    median = np.full((points.n_dates, *grid.shape), np.nan, dtype=np.float32)
    count = np.zeros((points.n_dates, *grid.shape), dtype=np.uint16)
    for r in range(grid.height):
        for c in range(grid.width):
            x0 = grid.x_min + c * grid.cell_size_m
            y1 = grid.y_max - r * grid.cell_size_m
            here = ((points.x >= x0) & (points.x < x0 + grid.cell_size_m)
                    & (points.y <= y1) & (points.y > y1 - grid.cell_size_m))
            for t in range(points.n_dates):
                values = points.displacement_mm[here, t][points.valid[here, t]]
                count[t, r, c] = values.size
                if values.size:
                    median[t, r, c] = np.median(values.astype(np.float64))
    return median, count


# ---------------------------------------------------------------------------- grid


def test_100m_grid_coincides_with_the_egms_l3_grid():
    l3 = read_points(L3U)
    for points in (l3, read_points(L2B)):  # a grid made from either extent
        grid = make_grid(_bounds(points), 100.0, "EPSG:3035")
        assert grid.x_min % 100 == 0 and grid.y_max % 100 == 0
        row, col, inside = grid.cell_index(l3.x, l3.y)
        x_centres, y_centres = grid.cell_centers()
        np.testing.assert_array_equal(x_centres[col[inside]], l3.x[inside])
        np.testing.assert_array_equal(y_centres[row[inside]], l3.y[inside])
        assert inside.sum() > 10
    row, col, inside = make_grid(_bounds(l3)).cell_index(l3.x, l3.y)
    assert inside.all() and np.unique(row * 10_000 + col).size == l3.n_points  # one L3 cell per grid cell


def test_points_on_the_bounds_fall_inside():
    for bounds in [(0.0, 0.0, 300.0, 200.0), (10.5, -49.9, 250.2, 199.99)]:
        grid = make_grid(bounds, 50.0)
        corners_x = [bounds[0], bounds[2], bounds[0], bounds[2]]
        corners_y = [bounds[1], bounds[1], bounds[3], bounds[3]]
        assert grid.cell_index(corners_x, corners_y)[2].all()
        assert grid.bounds[0] <= bounds[0] and grid.bounds[2] > bounds[2]
        assert grid.bounds[1] < bounds[1] and grid.bounds[3] >= bounds[3]


def test_transform_bounds_window_and_cell_index_agree():
    grid = Grid(crs="EPSG:3035", x_min=4000.0, y_max=9000.0, cell_size_m=20.0, width=7, height=5)
    assert grid.shape == (5, 7) and grid.bounds == (4000.0, 8900.0, 4140.0, 9000.0)
    assert grid.transform * (0, 0) == (4000.0, 9000.0) and grid.transform * (7, 5) == (4140.0, 8900.0)
    x_centres, y_centres = grid.cell_centers()
    assert x_centres[0] == 4010.0 and y_centres[-1] == 8910.0
    window = grid.window(2, 3, 10, 2)  # taller than what is left: cut to the grid
    assert (window.height, window.width) == (3, 2)
    assert window.transform * (0, 0) == grid.transform * (3, 2)
    row, col, inside = grid.cell_index([4075.0, 4001.0], [8950.0, 8999.0])
    assert row.tolist() == [2, 0] and col.tolist() == [3, 0] and inside.all()
    w_row, w_col, w_inside = window.cell_index([4075.0, 4001.0], [8950.0, 8999.0])
    assert w_inside.tolist() == [True, False] and (w_row[0], w_col[0]) == (0, 0)
    with pytest.raises(ValueError):
        grid.window(5, 0, 1, 1)


@pytest.mark.parametrize("crs,problem", [("EPSG:4326", "not projected"),
                                         ("EPSG:2227", "does not use metres")])
def test_grids_need_a_metric_crs(crs, problem):
    with pytest.raises(InputError, match=problem):
        make_grid((0, 0, 1, 1), 100.0, crs)


def test_bad_grid_parameters():
    with pytest.raises(InputError, match="cell size"):
        make_grid((0, 0, 1, 1), 0.0)
    with pytest.raises(InputError, match="bounds"):
        make_grid((10, 0, 1, 1), 100.0)


def test_gridding_matches_a_brute_force_median_and_count():
    points = _synthetic()
    grid = make_grid(_bounds(points), 40.0)
    cube = grid_points(points, grid)
    median, count = _brute_force(points, grid)
    assert cube.displacement_mm.dtype == np.float32 and cube.count.dtype == np.uint16
    np.testing.assert_array_equal(cube.count, count)
    np.testing.assert_allclose(cube.displacement_mm, median, rtol=1e-6, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(cube.valid, count > 0)
    assert count.max() >= 4 and ((count > 0) & (count % 2 == 0)).any()  # even counts average two values


def test_gridding_the_real_burst_matches_brute_force():
    points = read_points(L2B)
    grid = make_grid(_bounds(points), 100.0)
    cube = grid_points(points, grid)
    median, count = _brute_force(points, grid)
    np.testing.assert_array_equal(cube.count, count)
    np.testing.assert_allclose(cube.displacement_mm, median, atol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(cube.dates, points.dates)


def test_tiles_grid_the_same_as_the_whole():
    points = _synthetic(seed=3)
    grid = make_grid(_bounds(points), 30.0)
    whole = grid_points(points, grid)
    for row0 in range(0, grid.height, 6):
        for col0 in range(0, grid.width, 8):
            tile = grid_points(points, grid.window(row0, col0, 6, 8))
            part = whole.window(row0, col0, 6, 8)
            assert isinstance(part, Cube) and tile.grid == part.grid
            np.testing.assert_array_equal(tile.count, part.count)
            np.testing.assert_array_equal(tile.displacement_mm, part.displacement_mm)


def test_gridding_needs_the_grid_crs():
    points = _synthetic()
    grid = make_grid((0, 0, 1000, 1000), 100.0, "EPSG:32633")
    with pytest.raises(InputError, match="synthetic.*EPSG:32633"):
        grid_points(points, grid)


# ---------------------------------------------------------------------------- area of interest


def _write_layer(path, driver, crs, polygons):
    schema = {"geometry": "Polygon", "properties": {"name": "str"}}
    with fiona.open(path, "w", driver=driver, crs=crs, schema=schema) as layer:
        for i, polygon in enumerate(polygons):
            layer.write({"geometry": mapping(polygon), "properties": {"name": f"part {i}"}})
    return path


def test_geojson_aoi_in_wgs84_clips_the_egms_points(tmp_path):
    points = read_points(L2B)
    lon, lat = points.attributes["longitude"], points.attributes["latitude"]
    west, south = np.quantile(lon, 0.3), np.quantile(lat, 0.2)
    east, north = np.quantile(lon, 0.8), np.quantile(lat, 0.7)
    polygon = Polygon([(west, south), (east, south), (east, north), (west, north)])
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": mapping(polygon)}]}))
    aoi = read_aoi(path)
    assert aoi.crs == "EPSG:4326" and aoi.source == str(path)
    clipped = clip_points(points, aoi)
    # EGMS's own lon/lat (rounded to 1e-6 degrees) decide, away from the edge
    inside = shapely.contains_xy(polygon, lon, lat)
    near_edge = shapely.distance(polygon.boundary, shapely.points(lon, lat)) < 2e-6
    kept = np.isin(points.ids, clipped.ids)
    np.testing.assert_array_equal(kept[~near_edge], inside[~near_edge])
    assert 0 < kept.sum() < points.n_points


@pytest.mark.parametrize("driver,suffix", [("GPKG", ".gpkg"), ("ESRI Shapefile", ".shp")])
def test_polygon_layers_are_the_union_of_their_polygons(tmp_path, driver, suffix):
    points = read_points(L2B)
    x0, y0 = np.median(points.x), np.median(points.y)
    west = shapely.box(x0 - 200, y0 - 200, x0 - 50, y0 + 200)
    east = shapely.box(x0 + 50, y0 - 200, x0 + 200, y0 + 200)
    aoi = read_aoi(_write_layer(tmp_path / f"two{suffix}", driver, "EPSG:3035", [west, east]))
    assert aoi.crs == "EPSG:3035" and aoi.geometry.area == pytest.approx(2 * 150 * 400)
    clipped = clip_points(points, aoi)
    expected = shapely.contains_xy(west, points.x, points.y) | shapely.contains_xy(east, points.x, points.y)
    np.testing.assert_array_equal(np.isin(points.ids, clipped.ids), expected)


def test_wkt_with_and_without_a_crs_prefix():
    square = "POLYGON((0 0, 100 0, 100 100, 0 100, 0 0))"
    assert read_aoi(square).crs == "EPSG:3035"
    assert read_aoi(square, default_crs="EPSG:32633").crs == "EPSG:32633"
    prefixed = read_aoi(f"EPSG:25832;{square}")
    assert prefixed.crs == "EPSG:25832" and prefixed.source == "WKT text"
    bowtie = read_aoi("POLYGON((0 0, 10 10, 10 0, 0 10, 0 0))")  # self-crossing: repaired
    assert bowtie.geometry.is_valid and bowtie.geometry.area == pytest.approx(50)


def test_to_crs_round_trip_keeps_the_area():
    aoi = AOI(shapely.box(4598000, 1740000, 4600000, 1742000), "EPSG:3035", "box")
    back = aoi.to_crs("EPSG:4326").to_crs("EPSG:3035")
    assert back.crs == "EPSG:3035"
    assert back.geometry.symmetric_difference(aoi.geometry).area < 1e-5 * aoi.geometry.area
    assert aoi.to_crs("EPSG:3035") is aoi


def test_aoi_missing_every_point_names_both_files(tmp_path):
    path = _write_layer(tmp_path / "far_away.gpkg", "GPKG", "EPSG:3035", [shapely.box(0, 0, 1000, 1000)])
    with pytest.raises(InputError, match="far_away.gpkg.*none of the 300 points") as error:
        clip_points(read_points(L2B), read_aoi(path))
    assert L2B.name in str(error.value)


def test_aoi_crs_that_cannot_be_transformed():
    with pytest.raises(InputError, match="WKT text.*y 80 to 95.*cannot be degrees.*EPSG code"):
        read_aoi("EPSG:4326;POLYGON((10 80, 20 80, 20 95, 10 95, 10 80))")  # beyond the pole
    off_the_projection = read_aoi("EPSG:3035;POLYGON((4e7 4e7, 4.1e7 4e7, 4.1e7 4.1e7, 4e7 4.1e7, 4e7 4e7))")
    with pytest.raises(InputError, match="WKT text.*coordinates.*cannot be transformed.*coordinate system"):
        off_the_projection.to_crs("EPSG:4326")
    with pytest.raises(InputError, match="WKT text.*not recognised"):
        read_aoi("EPSG:999999;POLYGON((0 0, 1 0, 1 1, 0 0))")


def test_bad_aoi_sources(tmp_path):
    with pytest.raises(InputError, match="neither an existing file nor WKT"):
        read_aoi(str(tmp_path / "missing.geojson"))
    with pytest.raises(InputError, match="WKT text.*not valid WKT"):
        read_aoi("POLYGON((0 0, 1 0")
    points_only = tmp_path / "points.geojson"
    points_only.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [1, 2]}}]}))
    with pytest.raises(InputError, match="points.geojson.*no polygons"):
        read_aoi(points_only)
    (tmp_path / "broken.gpkg").write_bytes(b"\0" * 100)
    with pytest.raises(InputError, match="broken.gpkg"):
        read_aoi(tmp_path / "broken.gpkg")
