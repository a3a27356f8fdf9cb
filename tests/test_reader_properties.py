"""Malformed CSVs give an InputError or a consistent PointSeries, never another exception."""
import datetime
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InputError
from engine.points import read_points

SETTINGS = settings(max_examples=100, deadline=None)

dates = st.dates(min_value=datetime.date(2015, 1, 1), max_value=datetime.date(2030, 12, 31))
date_names = st.builds(lambda d, prefix: prefix + d.strftime("%Y%m%d"), dates,
                       st.sampled_from(["", "D", "d"]))
header_names = st.one_of(
    st.sampled_from(["easting", "northing", "x", "y", "lon", "lat", "pid", "height", "rmse_ts", "EASTING",
                     ""]),
    date_names,
    st.text(alphabet="abcXYZ_019 ;,\"", max_size=8),
)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.integers(-10**6, 10**6).map(str),
    st.sampled_from(["", " ", "nan", "NA", "1,5", "-0.0", "1e40", "12abc", "\"", "1;2"]),
    st.text(max_size=5),
)


@st.composite
def chaotic_csvs(draw) -> str:
    """Random header names and rows of random length: mostly rejected, in many different ways."""
    separator = draw(st.sampled_from([",", ";"]))
    header = draw(st.lists(header_names, max_size=6))
    rows = draw(st.lists(st.lists(values, max_size=len(header) + 1), max_size=4))
    return "\n".join(separator.join(fields) for fields in [header, *rows])


@st.composite
def nearly_valid_csvs(draw) -> str:
    """A well-formed file, then perhaps one mutation: these reach the end of the reader."""
    separator = draw(st.sampled_from([",", ";"]))
    series = sorted(set(draw(st.lists(date_names, min_size=1, max_size=5))), key=lambda name: name[-8:])
    header = ["pid", "easting", "northing", *series]
    if len({name[-8:] for name in series}) < len(series):
        header = ["easting", "northing", *series]  # same date with and without D: a duplicate
    number = st.integers(-99999, 99999).map(lambda v: f"{v / 100}")
    lead = len(header) - len(series)  # pid and coordinates: never empty
    row = st.tuples(st.lists(number, min_size=lead, max_size=lead),
                    st.lists(st.one_of(number, st.just("")), min_size=len(series), max_size=len(series)))
    rows = [a + b for a, b in draw(st.lists(row, min_size=1, max_size=5))]
    mutation = draw(st.sampled_from(["none", "junk cell", "ragged row", "extra name", "reverse dates",
                                     "blank lines", "trailing separator", "all empty"]))
    if mutation == "junk cell":
        rows[draw(st.integers(0, len(rows) - 1))][draw(st.integers(0, len(header) - 1))] = draw(values)
    elif mutation == "ragged row":
        rows[-1] = rows[-1][:-1]
    elif mutation == "extra name":
        header.insert(draw(st.integers(0, len(header))), draw(header_names))
    elif mutation == "reverse dates":
        header = header[:-len(series)] + header[-len(series):][::-1]
    elif mutation == "all empty":
        rows = [[*r[:lead], *[""] * len(series)] for r in rows]
    lines = [separator.join(fields) for fields in [header, *rows]]
    if mutation == "blank lines":
        lines = ["", *lines[:1], "", *lines[1:], ""]
    elif mutation == "trailing separator":
        lines = [line + separator for line in lines]
    return "\n".join(lines)


@st.composite
def malformed_files(draw):
    text = draw(st.one_of(chaotic_csvs(), nearly_valid_csvs()))
    if draw(st.booleans()):
        text += "\n"
    name = draw(st.sampled_from(["points.csv", "EGMS_L2b_001_0001_IW1_VV_2020_2024_1.csv",
                                 "EGMS_L3_E45N17_100km_U_2020_2024_1.csv"]))
    raw = text.encode("utf-8")
    if draw(st.sampled_from(["utf-8"] * 9 + ["broken"])) == "broken":
        raw += b"\xff\xfe"
    return name, raw, draw(st.booleans())


def _check_consistent(points) -> None:
    n, t = points.n_points, points.n_dates
    assert n >= 1 and t >= 1
    assert points.displacement_mm.dtype == np.float32 and points.displacement_mm.shape == (n, t)
    assert points.valid.dtype == bool and points.valid.shape == (n, t)
    np.testing.assert_array_equal(points.valid, ~np.isnan(points.displacement_mm))
    assert points.valid.any() and np.isfinite(points.displacement_mm[points.valid]).all()
    assert points.dates.dtype == np.dtype("datetime64[D]") and (np.diff(points.dates).astype(int) > 0).all()
    assert points.x.shape == points.y.shape == points.ids.shape == (n,)
    assert np.isfinite(points.x).all() and np.isfinite(points.y).all()
    assert all(v.shape == (n,) for v in points.attributes.values())


@SETTINGS
@given(malformed_files())
def test_malformed_csv_gives_input_error_or_consistent_points(case):
    name, raw, zipped = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        if zipped:
            path = path.with_suffix(".zip")
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr(name, raw)
        else:
            path.write_bytes(raw)
        try:
            points = read_points(path)
        except InputError as error:
            assert path.name in str(error) and "\n" not in str(error)
            return
        _check_consistent(points)


@SETTINGS
@given(st.data())
def test_well_formed_csv_round_trips(data):
    n = data.draw(st.integers(1, 12))
    day_offsets = sorted(data.draw(st.sets(st.integers(0, 2000), min_size=1, max_size=8)))
    d = np.datetime64("2018-01-01") + np.array(day_offsets).astype("timedelta64[D]")
    matrix = np.array(data.draw(st.lists(st.lists(st.one_of(st.none(), st.integers(-99999, 99999)),
                                                  min_size=len(d), max_size=len(d)),
                                         min_size=n, max_size=n)), dtype=object)
    if all(v is None for v in matrix.ravel()):
        matrix[0, 0] = 0
    separator = data.draw(st.sampled_from([",", ";"]))
    prefix = data.draw(st.sampled_from(["", "D"]))
    header = ["pid", "easting", "northing", *[prefix + str(x).replace("-", "") for x in d]]
    lines = [separator.join(header)]
    for i, row in enumerate(matrix):
        cells = ["" if v is None else f"{v / 10:.1f}" for v in row]
        lines.append(separator.join([f"p{i}", str(4_000_000 + i), str(3_000_000 - i), *cells]))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "round_trip.csv"
        path.write_text("\n".join(lines) + "\n")
        points = read_points(path)
    _check_consistent(points)
    expected = np.array([[np.nan if v is None else v / 10 for v in row] for row in matrix], dtype=np.float32)
    np.testing.assert_array_equal(points.displacement_mm, expected)
    np.testing.assert_array_equal(points.dates, d)
    np.testing.assert_array_equal(points.ids, [f"p{i}" for i in range(n)])
