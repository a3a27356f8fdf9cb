import csv
import io
import zipfile
from pathlib import Path

import fiona
import numpy as np
import pytest

from engine.aoi import clip_points, read_aoi
from engine.errors import InputError
from engine.points import read_points, regularize_time, reproject_points

DATA = Path(__file__).parent / "data"
L2B = DATA / "EGMS_L2b_022_0845_IW2_VV_2020_2024_1.zip"
L3U = DATA / "EGMS_L3_E45N17_100km_U_2020_2024_1.zip"


def _members(zip_path: Path) -> tuple[str, str]:
    """(CSV text, XML text) of an EGMS zip."""
    with zipfile.ZipFile(zip_path) as archive:
        return (archive.read(zip_path.with_suffix(".csv").name).decode(),
                archive.read(zip_path.with_suffix(".xml").name).decode())


def _table(text: str, delimiter: str = ",") -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    return rows[0], rows[1:]


def _column(header, rows, name, dtype=float) -> np.ndarray:
    i = header.index(name)
    return np.array([dtype(r[i]) for r in rows])


def _date_block(header, rows) -> np.ndarray:
    first = next(i for i, h in enumerate(header) if h.isdigit())
    return np.array([[float(v) if v else np.nan for v in r[first:]] for r in rows], dtype=np.float32)


def _write_csv(path: Path, header, rows, delimiter=","):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------------------- EGMS products


def test_l2b_zip_holds_the_csv_values_with_normalised_names():
    header, rows = _table(_members(L2B)[0])
    points = read_points(L2B)
    assert points.product == "L2b" and points.crs == "EPSG:3035"
    assert (points.n_points, points.n_dates) == (len(rows), sum(h.isdigit() for h in header))
    assert points.displacement_mm.dtype == np.float32 and points.valid.dtype == bool
    assert (np.diff(points.dates).astype(int) > 0).all()
    assert points.dates[0] == np.datetime64("2020-01-03")
    np.testing.assert_array_equal(points.displacement_mm, _date_block(header, rows))
    np.testing.assert_array_equal(points.valid, ~np.isnan(_date_block(header, rows)))
    np.testing.assert_array_equal(points.ids, [r[0] for r in rows])
    np.testing.assert_array_equal(points.x, _column(header, rows, "easting"))
    np.testing.assert_array_equal(points.y, _column(header, rows, "northing"))
    for egms_name, ours in [("height_ortho", "height"), ("height_ellipse", "height_ellipsoid"),
                            ("rmse_ts", "rmse_mm"), ("los_up", "los_up"), ("mean_velocity", "mean_velocity"),
                            ("gnss_velocity", "gnss_velocity")]:
        np.testing.assert_array_equal(points.attributes[ours], _column(header, rows, egms_name))
    assert "height_ortho" not in points.attributes and "rmse_ts" not in points.attributes


def test_l3_component_comes_from_the_file_name():
    points = read_points(L3U)
    assert points.product == "L3-U"
    expected = {"gnss_velocity_n", "gnss_velocity_e", "gnss_velocity_u", "height", "rmse_mm"}
    assert expected <= set(points.attributes)
    assert (np.diff(points.dates).astype(int) == 6).all()


def test_bare_csv_product_from_the_xml_beside_it_or_the_file_name(tmp_path):
    text, xml = _members(L2B)
    (tmp_path / "burst.csv").write_text(text)
    (tmp_path / "burst.xml").write_text(xml)
    (tmp_path / L2B.with_suffix(".csv").name).write_text(text)
    (tmp_path / "plain.csv").write_text(text)
    from_xml = read_points(tmp_path / "burst.csv")
    assert from_xml.product == "L2b"
    assert read_points(tmp_path / L2B.with_suffix(".csv").name).product == "L2b"
    plain = read_points(tmp_path / "plain.csv")
    assert plain.product == "generic" and plain.crs == "EPSG:3035"
    np.testing.assert_array_equal(plain.displacement_mm, from_xml.displacement_mm)

    l3_text, l3_xml = _members(L3U)
    (tmp_path / "tile.csv").write_text(l3_text)
    (tmp_path / "tile.xml").write_text(l3_xml)
    assert read_points(tmp_path / "tile.csv").product == "L3"


def test_2019_2023_header_gives_the_same_attributes(tmp_path):
    header, rows = _table(_members(L2B)[0])
    old_names = {"height_ortho": "height", "height_ellipse": "height_wgs84", "rmse_ts": "rmse"}
    drop = header.index("gnss_velocity")  # added in 2020-2024
    old_header = [old_names.get(h, h) for i, h in enumerate(header) if i != drop]
    old_rows = [[v for i, v in enumerate(r) if i != drop] for r in rows]
    old = read_points(_write_csv(tmp_path / "EGMS_L2b_022_0845_IW2_VV_2019_2023_1.csv", old_header, old_rows))
    new = read_points(L2B)
    assert old.product == "L2b"
    assert set(old.attributes) == set(new.attributes) - {"gnss_velocity"}
    for name in ("height", "height_ellipsoid", "rmse_mm", "mean_velocity"):
        np.testing.assert_array_equal(old.attributes[name], new.attributes[name])
    np.testing.assert_array_equal(old.displacement_mm, new.displacement_mm)


def test_semicolons_and_decimal_commas(tmp_path):
    header, rows = _table(_members(L3U)[0])
    semicolon = read_points(_write_csv(tmp_path / "semi.csv", header, rows, delimiter=";"))
    comma_decimals = [[v.replace(".", ",") for v in r] for r in rows]
    decimal_comma = read_points(_write_csv(tmp_path / "decimal_comma.csv", header, comma_decimals, ";"))
    reference = read_points(L3U)
    for points in (semicolon, decimal_comma):
        np.testing.assert_array_equal(points.displacement_mm, reference.displacement_mm)
        np.testing.assert_array_equal(points.x, reference.x)
        np.testing.assert_array_equal(points.attributes["rmse_mm"], reference.attributes["rmse_mm"])


def test_generic_csv_with_d_dates_and_empty_fields(tmp_path):
    header = ["X", "Y", "name", "D20210101", "D20210113", "D20210125"]
    rows = [["4500100", "2200100", "a", "0", "", "-1.5"],
            ["4500200", "2200300", "b", "", "2.25", ""]]
    points = read_points(_write_csv(tmp_path / "mine.csv", header, rows))
    assert points.product == "generic" and points.crs == "EPSG:3035"
    np.testing.assert_array_equal(points.ids, ["1", "2"])
    np.testing.assert_array_equal(points.valid, [[True, False, True], [False, True, False]])
    np.testing.assert_array_equal(points.displacement_mm[points.valid], np.float32([0, -1.5, 2.25]))
    assert np.isnan(points.displacement_mm[~points.valid]).all()
    np.testing.assert_array_equal(points.attributes["name"], ["a", "b"])
    assert points.dates.astype(str).tolist() == ["2021-01-01", "2021-01-13", "2021-01-25"]


def test_lon_lat_csv_is_wgs84_and_reprojects_onto_the_egms_coordinates(tmp_path):
    header, rows = _table(_members(L2B)[0])
    keep = [i for i, h in enumerate(header) if h in ("pid", "longitude", "latitude") or h.isdigit()]
    path = _write_csv(tmp_path / "lonlat.csv", [header[i] for i in keep],
                      [[r[i] for i in keep] for r in rows])
    points = read_points(path)
    assert points.crs == "EPSG:4326"
    projected = reproject_points(points, "EPSG:3035")
    egms = read_points(L2B)
    assert projected.crs == "EPSG:3035"
    # EGMS rounds lat/lon to 1e-6 degrees (about 0.1 m) and easting/northing to 1 cm.
    assert np.abs(projected.x - egms.x).max() < 0.5 and np.abs(projected.y - egms.y).max() < 0.5


@pytest.mark.parametrize("driver,suffix", [("GPKG", ".gpkg"), ("ESRI Shapefile", ".shp")])
def test_generic_point_layers(tmp_path, driver, suffix):
    schema = {"geometry": "Point",
              "properties": {"pid": "str", "kind": "str", "D20220105": "float", "D20220117": "float"}}
    path = tmp_path / f"layer{suffix}"
    features = [((355000.0, 4290000.0), "p1", "roof", 1.5, None),
                ((355020.0, 4290050.0), "p2", "road", -2.0, 0.5)]
    with fiona.open(path, "w", driver=driver, crs="EPSG:32633", schema=schema) as layer:
        for xy, pid, kind, a, b in features:
            layer.write({"geometry": {"type": "Point", "coordinates": xy},
                         "properties": {"pid": pid, "kind": kind, "D20220105": a, "D20220117": b}})
    points = read_points(path)
    assert points.product == "generic" and points.crs == "EPSG:32633"
    np.testing.assert_array_equal(points.ids, ["p1", "p2"])
    np.testing.assert_array_equal(points.x, [355000.0, 355020.0])
    np.testing.assert_array_equal(points.valid, [[True, False], [True, True]])
    np.testing.assert_array_equal(points.displacement_mm[points.valid], np.float32([1.5, -2.0, 0.5]))
    np.testing.assert_array_equal(points.attributes["kind"], ["roof", "road"])


def test_layer_without_crs_is_refused(tmp_path):
    path = tmp_path / "nocrs.shp"
    schema = {"geometry": "Point", "properties": {"D20220105": "float"}}
    with fiona.open(path, "w", driver="ESRI Shapefile", schema=schema) as layer:
        layer.write({"geometry": {"type": "Point", "coordinates": (1.0, 2.0)},
                     "properties": {"D20220105": 1.0}})
    with pytest.raises(InputError, match="nocrs.shp.*coordinate reference system"):
        read_points(path)


# ---------------------------------------------------------------------------- errors


def _zip_without_csv(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.xml", "<product_level>L2b</product_level>")
    return path


BAD_FILES = {
    "no_dates.csv": ("easting,northing,height\n1,2,3\n", "no date columns"),
    "junk_value.csv": ("easting,northing,20200101,20200107\n1,2,3,4\n1,2,oops,4\n", "line 3.*20200101.*oops"),
    "duplicate_dates.csv": ("easting,northing,20200101,D20200101\n1,2,3,4\n", "2020-01-01 appears twice"),
    "unsorted_dates.csv": ("easting,northing,20200107,20200101\n1,2,3,4\n", "not in increasing order"),
    "all_empty.csv": ("easting,northing,20200101,20200107\n1,2,,\n3,4,,\n", "every displacement value"),
    "empty.csv": ("", "empty"),
    "blank_lines.csv": ("\n\n", "empty"),
    "header_only.csv": ("easting,northing,20200101\n", "no points"),
    "ragged.csv": ("easting,northing,20200101\n1,2,3\n1,2\n", "line 3 has 2 fields"),
    "no_coordinates.csv": ("a,b,20200101\n1,2,3\n", "no coordinate columns"),
    "bad_date.csv": ("easting,northing,20201340\n1,2,3\n", "looks like a date"),
    "infinite.csv": ("easting,northing,20200101\n1,2,inf\n", "not a finite number"),
    "missing_xy.csv": ("easting,northing,20200101\n,2,3\n", "coordinate is required"),
    "EGMS_L2b_000_0000_IW1_VV_2020_2024_1.csv": ("x,y,20200101\n1,2,3\n", "lacks the easting/northing"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_one_line_naming_the_file(tmp_path, name):
    text, problem = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=problem) as error:
        read_points(path)
    message = str(error.value)
    assert name in message and "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing written beside it


def test_zip_without_csv(tmp_path):
    path = _zip_without_csv(tmp_path / "no_csv.zip")
    with pytest.raises(InputError, match="no_csv.zip.*no CSV"):
        read_points(path)


def test_over_the_memory_budget_says_how_big(tmp_path):
    with pytest.raises(InputError, match=r"300 points × 210 dates.*memory budget") as error:
        read_points(L2B, max_bytes=100_000)
    assert L2B.name in str(error.value)


def test_missing_and_non_point_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_points(tmp_path / "nowhere.csv")
    (tmp_path / "garbage.gpkg").write_bytes(b"not a geopackage at all")
    with pytest.raises(InputError, match="garbage.gpkg"):
        read_points(tmp_path / "garbage.gpkg")


# ---------------------------------------------------------------------------- area of interest


def test_aoi_while_reading_keeps_what_clipping_afterwards_keeps():
    full = read_points(L2B)
    centre_x, centre_y = np.median(full.x), np.median(full.y)
    x0, x1, y0, y1 = centre_x - 150, centre_x + 150, centre_y - 100, centre_y + 120
    aoi = read_aoi(f"EPSG:3035;POLYGON(({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))")
    while_reading = read_points(L2B, aoi=aoi)
    afterwards = clip_points(full, aoi)
    assert 0 < while_reading.n_points < full.n_points
    np.testing.assert_array_equal(while_reading.ids, afterwards.ids)
    np.testing.assert_array_equal(while_reading.displacement_mm, afterwards.displacement_mm)
    np.testing.assert_array_equal(while_reading.attributes["height"], afterwards.attributes["height"])


def test_aoi_missing_every_point_while_reading():
    aoi = read_aoi("POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))")
    with pytest.raises(InputError, match="none of its 300 points"):
        read_points(L2B, aoi=aoi)


# ---------------------------------------------------------------------------- regular time axis


def _series(days, values, valid=None):
    from engine.points import PointSeries

    values = np.atleast_2d(np.asarray(values, dtype=np.float32))
    valid = ~np.isnan(values) if valid is None else np.atleast_2d(valid)
    n = values.shape[0]
    return PointSeries(ids=np.arange(n).astype(str), x=np.zeros(n), y=np.zeros(n), crs="EPSG:3035",
                       dates=np.datetime64("2020-01-01") + np.asarray(days).astype("timedelta64[D]"),
                       displacement_mm=values, valid=valid, attributes={}, source="synthetic",
                       product="generic")


def test_regular_epochs_take_near_observations_interpolate_short_gaps_and_mask_long_ones():
    days = np.array([0, 6, 14, 24, 60, 66])        # 14 is 2 days off its epoch; 24 -> 60 is a 36-day gap
    values = 0.5 * days - 3.0                       # a line, so interpolation is exact
    out = regularize_time(_series(days, values), step_days=6, max_gap_days=24)
    epoch_days = (out.dates - out.dates[0]).astype(int)
    assert epoch_days.tolist() == list(range(0, 67, 6))
    expected = {0: values[0], 6: values[1], 12: values[2], 18: 0.5 * 18 - 3.0, 24: values[3],
                60: values[4], 66: values[5]}
    for epoch, value in expected.items():
        i = epoch_days.tolist().index(epoch)
        assert out.valid[0, i] and out.displacement_mm[0, i] == pytest.approx(value, abs=1e-5)
    in_the_gap = (epoch_days > 27) & (epoch_days < 57)
    assert in_the_gap.sum() == 5 and not out.valid[0, in_the_gap].any()
    assert np.isnan(out.displacement_mm[0, in_the_gap]).all()


def test_gap_limit_applies_per_point_to_its_own_missing_values():
    days = np.arange(0, 61, 6)
    values = np.vstack([days * 1.0, days * 1.0])
    values[0, 3:6] = np.nan    # valid at 12 and 36: a 24-day gap, interpolated
    values[1, 3:7] = np.nan    # valid at 12 and 42: a 30-day gap, left masked
    out = regularize_time(_series(days, values), step_days=6, max_gap_days=24)
    np.testing.assert_allclose(out.displacement_mm[0], days, atol=1e-5)
    assert out.valid[1].tolist() == [True] * 3 + [False] * 4 + [True] * 4


def test_tie_between_two_observations_takes_the_earlier():
    out = regularize_time(_series([0, 9, 15], [1.0, 2.0, 3.0]), step_days=6, max_gap_days=0)
    # epoch 6 has only day 9 within 3 days; epoch 12 is 3 days from both day 9 and day 15
    assert out.displacement_mm[0].tolist() == [1.0, 2.0, 2.0]


def test_real_burst_on_six_day_epochs_keeps_the_observations_on_epochs():
    points = read_points(L2B)
    out = regularize_time(points)
    assert out.displacement_mm.shape == (points.n_points, out.n_dates)
    assert (np.diff(out.dates).astype(int) == 6).all() and out.dates[0] == points.dates[0]
    on_epoch = np.isin(points.dates, out.dates)
    np.testing.assert_array_equal(out.displacement_mm[:, np.isin(out.dates, points.dates)],
                                  points.displacement_mm[:, on_epoch])
    assert out.valid.mean() > 0.95 and out.displacement_mm.dtype == np.float32


def test_bad_time_step():
    with pytest.raises(InputError, match="synthetic.*whole number of days"):
        regularize_time(_series([0, 6], [1.0, 2.0]), step_days=2.5)
