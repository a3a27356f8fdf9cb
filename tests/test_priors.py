import csv
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import mapping

import engine.priors
from engine.errors import InputError
from engine.grid import Grid, make_grid
from engine.points import read_points
from engine.priors import build_priors, save_priors, slope_aspect

DATA = Path(__file__).parent / "data"
L2B = DATA / "EGMS_L2b_022_0845_IW2_VV_2020_2024_1.zip"
# A plane in EPSG:3035 metres: z = 100 + 0.05 (E - E0) + 0.02 (N - N0)
E0, N0, DZ_EAST, DZ_NORTH = 4599000.0, 1741000.0, 0.05, 0.02
TO_3035 = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)


def _plane(east, north):
    return 100.0 + DZ_EAST * (east - E0) + DZ_NORTH * (north - N0)


def _wgs84_dem(path, west=13.14, north=38.73, pixel_deg=0.0012, size=(60, 80), crs="EPSG:4326"):
    """A DEM in lon/lat whose heights lie on the EPSG:3035 plane above."""
    rows, cols = np.mgrid[0:size[0], 0:size[1]]
    lon, lat = west + (cols + 0.5) * pixel_deg, north - (rows + 0.5) * pixel_deg
    heights = _plane(*TO_3035.transform(lon, lat)).astype(np.float32)
    with rasterio.open(path, "w", driver="GTiff", width=size[1], height=size[0], count=1, dtype="float32",
                       crs=crs, transform=from_origin(west, north, pixel_deg, pixel_deg)) as dst:
        dst.write(heights, 1)
    return path


def _grid():
    return make_grid((E0 - 1000, N0 - 800, E0 + 1000, N0 + 800), 100.0)


def _write_polygons(path, crs, features, field="unit", kind="str"):
    schema = {"geometry": "Polygon", "properties": {field: kind, "other": "str"}}
    with fiona.open(path, "w", driver="GPKG", crs=crs, schema=schema) as layer:
        for polygon, value in features:
            layer.write({"geometry": mapping(polygon), "properties": {field: value, "other": "x"}})
    return path


# ---------------------------------------------------------------------------- elevation


def test_dem_in_another_crs_is_resampled_and_gives_the_plane_slope_and_aspect(tmp_path):
    grid = _grid()
    priors = build_priors(grid, dem=_wgs84_dem(tmp_path / "dem.tif"))
    assert priors.elevation_source == "dem" and priors.elevation_m.shape == grid.shape
    x, y = grid.cell_centers()
    # DEM pixels (about 100 x 130 m) are no finer than the cells, so bilinear is exact on a plane;
    # finer DEMs would meet GDAL's widened downsampling kernel and a few cm of ripple.
    np.testing.assert_allclose(priors.elevation_m, _plane(*np.meshgrid(x, y)), atol=0.01)
    expected_slope = np.degrees(np.arctan(np.hypot(DZ_EAST, DZ_NORTH)))
    expected_aspect = np.degrees(np.arctan2(-DZ_EAST, -DZ_NORTH)) % 360  # it faces down the gradient
    np.testing.assert_allclose(priors.slope_deg, expected_slope, atol=0.01)
    np.testing.assert_allclose(priors.aspect_deg, expected_aspect, atol=0.2)
    assert priors.slope_deg.dtype == np.float32 and 180 < expected_aspect < 270


def test_dem_without_crs_outside_the_grid_or_unreadable(tmp_path):
    no_crs = tmp_path / "no_crs.tif"
    with rasterio.open(no_crs, "w", driver="GTiff", width=4, height=4, count=1, dtype="float32",
                       transform=from_origin(E0, N0, 100, 100)) as dst:
        dst.write(np.zeros((4, 4), np.float32), 1)
    elsewhere = _wgs84_dem(tmp_path / "elsewhere.tif", west=-60.0, north=-30.0, size=(10, 10))
    garbage = tmp_path / "garbage.tif"
    garbage.write_text("this is not a raster")
    for path, problem in [(no_crs, "no coordinate reference system"), (elsewhere, "does not overlap"),
                          (garbage, "cannot be read")]:
        with pytest.raises(InputError, match=problem) as error:
            build_priors(_grid(), dem=path)
        assert path.name in str(error.value) and "\n" not in str(error.value)


def test_without_a_dem_the_egms_heights_are_gridded():
    points = read_points(L2B)
    grid = make_grid((points.x.min(), points.y.min(), points.x.max(), points.y.max()), 100.0)
    priors = build_priors(grid, points=points)
    assert priors.elevation_source == "egms_height"
    row, col, _ = grid.cell_index(points.x, points.y)
    for r, c in {(int(r), int(c)) for r, c in zip(row, col)}:
        here = (row == r) & (col == c)
        assert priors.elevation_m[r, c] == pytest.approx(np.median(points.attributes["height"][here]))
    occupied = np.zeros(grid.shape, bool)
    occupied[row, col] = True
    assert np.isnan(priors.elevation_m[~occupied]).all()
    assert np.isfinite(priors.slope_deg[occupied]).any()


def test_no_priors_at_all():
    priors = build_priors(_grid())
    assert priors.elevation_source == "none" and np.isnan(priors.elevation_m).all()
    assert np.isnan(priors.slope_deg).all() and np.isnan(priors.aspect_deg).all()
    assert not priors.geology.any() and priors.geology_classes == [] and priors.soil_classes == []
    assert priors.geology.dtype == np.int16 and priors.soil.shape == _grid().shape


def test_slope_and_aspect_point_down_the_slope_and_use_one_side_at_gaps():
    rows, cols = np.mgrid[0:5, 0:6].astype(float)
    cell = 10.0
    for z, aspect in [(cols * 1.0, 270.0), (-cols * 1.0, 90.0), (-rows * 1.0, 180.0), (rows * 1.0, 0.0)]:
        slope, facing = slope_aspect(z, cell)
        np.testing.assert_allclose(slope, np.degrees(np.arctan(0.1)), rtol=1e-6)
        np.testing.assert_allclose(facing % 360, aspect, atol=1e-4)
    z = cols * 2.0
    z[2, 3] = np.nan
    slope, _ = slope_aspect(z, cell)
    assert np.isnan(slope[2, 3])
    np.testing.assert_allclose(slope[2, 2], np.degrees(np.arctan(0.2)), rtol=1e-6)  # one-sided
    flat_slope, flat_aspect = slope_aspect(np.full((3, 3), 7.0), cell)
    assert (flat_slope == 0).all() and np.isnan(flat_aspect).all()


# ---------------------------------------------------------------------------- classes


def _lonlat_box(west, south, east, north):
    return shapely.box(west, south, east, north)


def test_geology_polygons_in_wgs84_are_rasterised_by_cell_centre(tmp_path):
    grid = _grid()
    to_wgs84 = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
    west, south, east, north = to_wgs84.transform_bounds(*grid.bounds)
    mid_lon, mid_lat = (west + east) / 2 + 0.0013, (south + north) / 2 - 0.0007
    units = [(_lonlat_box(west - 1, south - 1, mid_lon, north + 1), "tuff"),
             (_lonlat_box(mid_lon, mid_lat, east + 1, north + 1), "basalt"),
             (_lonlat_box(mid_lon, south - 1, east + 1, mid_lat), "limestone"),
             (_lonlat_box(0.0, 0.0, 1.0, 1.0), "granite"),   # far away: still in the class table
             (_lonlat_box(west - 1, north - 0.0012, east + 1, north + 1), None)]
    path = _write_polygons(tmp_path / "geology.gpkg", "EPSG:4326", units)
    priors = build_priors(grid, geology=path, geology_field="unit")
    assert priors.geology_classes == ["basalt", "granite", "limestone", "tuff"]

    x, y = np.meshgrid(*grid.cell_centers())
    lon, lat = to_wgs84.transform(x, y)
    expected = np.zeros(grid.shape, np.int16)
    for polygon, name in units:  # later features are drawn over earlier ones
        if name is not None:
            expected[shapely.contains_xy(polygon, lon, lat)] = priors.geology_classes.index(name) + 1
    clear = np.ones(grid.shape, bool)
    for polygon, _ in units:
        clear &= shapely.distance(polygon.boundary, shapely.points(lon, lat)) > 1e-6
    np.testing.assert_array_equal(priors.geology[clear], expected[clear])
    assert set(np.unique(priors.geology)) == {1, 3, 4} and priors.geology.dtype == np.int16


def test_numeric_class_names_sort_by_value(tmp_path):
    grid = _grid()
    x0, y0, x1, y1 = grid.bounds
    units = [(shapely.box(x0, y0, (x0 + x1) / 2, y1), 10), (shapely.box((x0 + x1) / 2, y0, x1, y1), 2)]
    path = _write_polygons(tmp_path / "soil.gpkg", "EPSG:3035", units, field="code", kind="int")
    priors = build_priors(grid, soil=path, soil_field="code")
    assert priors.soil_classes == ["2", "10"]
    assert priors.soil[0, 0] == 2 and priors.soil[0, -1] == 1


def test_class_layer_errors_name_the_file(tmp_path):
    grid = _grid()
    x0, y0, x1, y1 = grid.bounds
    path = _write_polygons(tmp_path / "geo.gpkg", "EPSG:3035", [(shapely.box(x0, y0, x1, y1), "tuff")])
    with pytest.raises(InputError, match=r"geo.gpkg: it has no field 'lithology'; available fields: unit, "):
        build_priors(grid, geology=path, geology_field="lithology")
    with pytest.raises(InputError, match=r"geo.gpkg: no field was chosen; available fields: unit, other\."):
        build_priors(grid, geology=path)
    far = _write_polygons(tmp_path / "far.gpkg", "EPSG:3035", [(shapely.box(0, 0, 10, 10), "tuff")])
    with pytest.raises(InputError, match="far.gpkg.*overlaps the grid"):
        build_priors(grid, soil=far, soil_field="unit")
    (tmp_path / "junk.shp").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.shp.*cannot be read"):
        build_priors(grid, geology=tmp_path / "junk.shp", geology_field="unit")


# ---------------------------------------------------------------------------- saving


def _priors_with_geology(tmp_path):
    grid = Grid(crs="EPSG:3035", x_min=E0, y_max=N0, cell_size_m=100.0, width=6, height=4)
    x0, y0, x1, y1 = grid.bounds
    units = [(shapely.box(x0, y0, x0 + 250, y1), "clay"), (shapely.box(x0 + 250, y0, x1, y1), "sand")]
    path = _write_polygons(tmp_path / "geology.gpkg", "EPSG:3035", units)
    return build_priors(grid, dem=_wgs84_dem(tmp_path / "dem.tif"), geology=path, geology_field="unit")


def test_save_priors_writes_rasters_and_class_tables(tmp_path):
    priors = _priors_with_geology(tmp_path)
    priors.elevation_m[0, 0] = np.nan
    written = save_priors(priors, tmp_path / "out")
    assert set(written) == {"elevation", "slope", "aspect", "geology", "geology_classes"}
    with rasterio.open(written["elevation"]) as src:
        assert src.crs.to_epsg() == 3035 and src.transform == priors.grid.transform
        elevation = src.read(1, masked=True)
        assert elevation.mask[0, 0] and src.tags()["elevation_source"] == "dem"
        np.testing.assert_array_equal(elevation.filled(np.nan), priors.elevation_m)
    with rasterio.open(written["geology"]) as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 0
        np.testing.assert_array_equal(src.read(1), priors.geology)
        assert src.tags(1)["class_1"] == "clay" and src.tags(1)["class_2"] == "sand"
    with open(written["geology_classes"], newline="") as table:
        assert list(csv.reader(table)) == [["code", "name"], ["1", "clay"], ["2", "sand"]]


def test_save_priors_writes_nothing_when_it_fails(tmp_path, monkeypatch):
    priors = _priors_with_geology(tmp_path)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(engine.priors, "_write_classes", fail)
    with pytest.raises(OSError):
        save_priors(priors, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
