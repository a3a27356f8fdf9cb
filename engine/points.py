"""Point time series: EGMS products (L2a, L2b, L3) and generic point layers with date fields.

Files are read in chunks straight into float32 blocks, and points outside an area of
interest are dropped while reading, so memory follows the points kept, not the file.

What a reader repairs rather than refuses, it says in `PointSeries.notes` (one sentence each,
for the log and the run's summary): displacement beyond ±10 m, which no ground motion InSAR
measures (no-data codes such as -99999, unit slips), is treated as missing and counted; point
ids that repeat are made unique. What cannot be repaired is refused in one sentence: dates
before 1991 or in the future, coordinates that cannot be EPSG:3035 metres in Europe.
"""
from __future__ import annotations

import csv
import io
import itertools
import operator
import re
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import shapely

from .crs import crs_string, transform_xy
from .definitions import COORDINATE_PAIRS, DATE_COLUMN, EGMS_CRS, ID_NAMES
from .errors import InputError
from .fileio import reason
from .progress import check_cancel
from .store import active as scratch_active
from .store import big_array, chunk_values

if TYPE_CHECKING:
    from .aoi import AOI

__all__ = ["EGMS_CRS", "PointSeries", "read_points", "regularize_time", "reproject_points"]

# EGMS header names of both generations (2019-2023 and 2020-2024) -> attribute names.
_ATTRIBUTE_NAMES = {
    "mp_type": "mp_type",
    "latitude": "latitude",
    "longitude": "longitude",
    "height": "height",
    "height_ortho": "height",
    "height_wgs84": "height_ellipsoid",
    "height_ellipse": "height_ellipsoid",
    "line": "line",
    "pixel": "pixel",
    "rmse": "rmse_mm",
    "rmse_ts": "rmse_mm",
    "temporal_coherence": "temporal_coherence",
    "amplitude_dispersion": "amplitude_dispersion",
    "incidence_angle": "incidence_angle",
    "track_angle": "track_angle",
    "los_east": "los_east",
    "los_north": "los_north",
    "los_up": "los_up",
    "mean_velocity": "mean_velocity",
    "mean_velocity_std": "mean_velocity_std",
    "acceleration": "acceleration",
    "acceleration_std": "acceleration_std",
    "seasonality": "seasonality",
    "seasonality_std": "seasonality_std",
    "gnss_velocity": "gnss_velocity",
    "gnss_velocity_n": "gnss_velocity_n",
    "gnss_velocity_e": "gnss_velocity_e",
    "gnss_velocity_u": "gnss_velocity_u",
}
_NUMERIC_ATTRIBUTES = frozenset(_ATTRIBUTE_NAMES.values())
_EGMS_NAME = re.compile(r"EGMS_(L2a|L2b|L3)_", re.IGNORECASE)
_L3_COMPONENT = re.compile(r"EGMS_L3_.*_(U|E)_", re.IGNORECASE)
_PRODUCT_LEVEL = re.compile(r"<product_level>\s*([^<]*?)\s*</product_level>", re.IGNORECASE)
_MISSING = frozenset({"", "nan", "na", "null", "none"})
_CHUNK_FIELDS = 50_000      # fields parsed per chunk: a few MB of Python strings at most
_BYTES_PER_VALUE = 5        # float32 displacement + bool valid flag
MAX_DISPLACEMENT_MM = 10_000.0  # 10 m: beyond this a value is a no-data code or a unit slip
FIRST_INSAR_DATE = np.datetime64("1991-01-01", "D")  # ERS-1, the first InSAR satellite, flew in 1991
# Europe in EPSG:3035 metres, from the Azores to Cyprus and the Canaries to Svalbard, with a margin.
EUROPE_3035 = (0.5e6, 0.5e6, 8.0e6, 7.0e6)


@dataclass
class PointSeries:
    ids: np.ndarray              # [N] str
    x: np.ndarray                # [N] float64, in `crs`
    y: np.ndarray                # [N] float64
    crs: str
    dates: np.ndarray            # [T] datetime64[D], strictly increasing
    displacement_mm: np.ndarray  # [N, T] float32, NaN where missing
    valid: np.ndarray            # [N, T] bool
    attributes: dict[str, np.ndarray]
    source: str
    product: str                 # "L2a", "L2b", "L3-U", "L3-E", "L3" or "generic"
    notes: list[str] = dataclass_field(default_factory=list)  # what reading repaired, one sentence each

    @property
    def n_points(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_dates(self) -> int:
        return int(self.dates.shape[0])

    def subset(self, mask) -> PointSeries:
        """The points selected by a boolean mask or an index array, dates unchanged."""
        return PointSeries(ids=self.ids[mask], x=self.x[mask], y=self.y[mask], crs=self.crs,
                           dates=self.dates, displacement_mm=self.displacement_mm[mask],
                           valid=self.valid[mask],
                           attributes={k: v[mask] for k, v in self.attributes.items()},
                           source=self.source, product=self.product, notes=list(self.notes))


def read_points(path, *, aoi: AOI | None = None, max_bytes: int | None = 2_000_000_000,
                progress=None) -> PointSeries:
    """Read an EGMS product (.zip or .csv) or any point layer whose fields include date columns.

    Date columns are named yyyymmdd or Dyyyymmdd and hold displacement in mm; empty fields are
    missing. With `aoi`, points outside it are dropped while reading. `max_bytes` bounds the
    series in memory (5 bytes per point and date); None means no bound.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: the file does not exist.")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a points file.")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty.")
    suffix = path.suffix.lower()
    if suffix in (".zip", ".csv", ".txt"):
        return _read_csv(path, aoi, max_bytes, progress)
    return _read_layer(path, aoi, max_bytes, progress)


def reproject_points(points: PointSeries, crs) -> PointSeries:
    """The same points with x/y transformed to `crs` (e.g. lon/lat to a metric CRS before gridding)."""
    target = crs_string(crs, f"{points.source}: target")
    x, y = transform_xy(points.x, points.y, points.crs, target, points.source)
    return PointSeries(ids=points.ids, x=x, y=y, crs=target, dates=points.dates,
                       displacement_mm=points.displacement_mm, valid=points.valid,
                       attributes=points.attributes, source=points.source, product=points.product,
                       notes=list(points.notes))


def regular_epoch_count(dates: np.ndarray, step_days: int = 6) -> int:
    """How many epochs first_date + k * step_days the regular axis of `dates` has."""
    return int((dates[-1] - dates[0]).astype(np.int64)) // int(step_days) + 1


def regularize_time(points: PointSeries, step_days: int = 6, max_gap_days: int = 24,
                    progress=None, max_bytes: int | None = 2_000_000_000) -> PointSeries:
    """Resample every series onto epochs first_date + k * step_days.

    An epoch takes the nearest observation within ±step_days/2 (the earlier one on a tie);
    otherwise it is interpolated linearly between the observations before and after it, but
    only when those are at most `max_gap_days` apart; otherwise it stays NaN and invalid.
    `max_bytes` bounds the regular series in memory (5 bytes per point and epoch).
    """
    if int(step_days) != step_days or step_days < 1:
        raise InputError(f"{points.source}: the time step must be a whole number of days ≥ 1, "
                         f"not {step_days}.")
    if max_gap_days < 0:
        raise InputError(f"{points.source}: the largest gap to interpolate must be ≥ 0 days, "
                         f"not {max_gap_days}.")
    step = int(step_days)
    n_epochs = regular_epoch_count(points.dates, step)
    size = points.n_points * n_epochs * _BYTES_PER_VALUE
    if max_bytes is not None and size > max_bytes and scratch_active() is None:
        raise InputError(f"{points.source}: {points.n_points:,} points × {n_epochs:,} epochs of {step} days "
                         f"from {points.dates[0]} to {points.dates[-1]} need {_size(size)}, over the memory "
                         f"budget of {_size(max_bytes)}; use a shorter period or a smaller area of interest.")
    day = (points.dates - points.dates[0]).astype(np.int64)
    n_dates = day.shape[0]
    epoch_day = np.arange(0, int(day[-1]) + 1, step, dtype=np.int64)
    # Last original date at or before each epoch; the epoch's neighbours are searched from there.
    at_or_before = np.searchsorted(day, epoch_day, side="right") - 1
    day_padded = np.append(day, np.iinfo(np.int64).max // 4)  # "no next observation" sentinel

    out = big_array((points.n_points, epoch_day.shape[0]), np.float32, np.nan)
    valid_out = big_array(out.shape, bool)
    # a dozen int64 temporaries per value: a quarter of the working values keeps them in bounds
    rows_per_chunk = max(1, chunk_values(2_000_000) // 4 // max(n_dates, epoch_day.shape[0]))
    columns = np.arange(n_dates)
    for start in range(0, points.n_points, rows_per_chunk):
        check_cancel(progress)
        rows = slice(start, start + rows_per_chunk)
        valid = points.valid[rows]
        values = points.displacement_mm[rows]
        prev_valid = np.maximum.accumulate(np.where(valid, columns, -1), axis=1)
        next_valid = np.minimum.accumulate(np.where(valid, columns, n_dates)[:, ::-1], axis=1)[:, ::-1]
        next_valid = np.concatenate([next_valid, np.full((valid.shape[0], 1), n_dates)], axis=1)

        prev = prev_valid[:, at_or_before]         # last valid observation at or before the epoch
        nxt = next_valid[:, at_or_before + 1]      # first valid observation after the epoch
        has_prev, has_next = prev >= 0, nxt < n_dates
        to_prev = np.where(has_prev, epoch_day - day[np.maximum(prev, 0)], np.iinfo(np.int64).max)
        to_next = day_padded[nxt] - epoch_day
        use_prev = has_prev & (2 * to_prev <= step) & (to_prev <= to_next)
        use_next = has_next & (2 * to_next <= step) & ~use_prev
        interpolate = (has_prev & has_next & ~use_prev & ~use_next
                       & (to_prev + to_next <= max_gap_days))

        value_prev = np.take_along_axis(values, np.maximum(prev, 0), axis=1)
        value_next = np.take_along_axis(values, np.minimum(nxt, n_dates - 1), axis=1)
        weight = to_prev / np.maximum(to_prev + to_next, 1)
        chunk = out[rows]
        chunk[use_prev] = value_prev[use_prev]
        chunk[use_next] = value_next[use_next]
        chunk[interpolate] = (value_prev + weight * (value_next - value_prev))[interpolate]
        valid_out[rows] = ~np.isnan(chunk)
        if progress is not None:
            progress.progress(min(1.0, (start + rows_per_chunk) / max(points.n_points, 1)),
                              "Resampling the time series")

    dates = points.dates[0] + epoch_day.astype("timedelta64[D]")
    return PointSeries(ids=points.ids, x=points.x, y=points.y, crs=points.crs, dates=dates,
                       displacement_mm=out, valid=valid_out, attributes=points.attributes,
                       source=points.source, product=points.product, notes=list(points.notes))


# ---------------------------------------------------------------------------- CSV and zip


def _read_csv(path: Path, aoi, max_bytes, progress) -> PointSeries:
    with _csv_stream(path) as (stream, csv_name, xml_text, n_lines):
        first_line = stream.readline()
        while first_line and not first_line.strip():
            first_line = stream.readline()
        if not first_line.strip():
            raise InputError(f"{path}: the file is empty.")
        delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
        reader = csv.reader(itertools.chain([first_line], stream), delimiter=delimiter)
        header = next(reader)
        product = _detect_product(xml_text, [csv_name, path.name])
        layout = _Layout.from_header(path, header, product)
        sidecar = None if layout.crs else _sidecar_crs(path)
        crs = layout.crs or sidecar or EGMS_CRS
        sink = _Sink(path, layout.dates.shape[0], n_lines, aoi is not None, max_bytes,
                     crs_assumed=layout.crs is None and sidecar is None)
        return _fill_from_rows(path, reader, layout, crs, product, delimiter == ";", aoi, sink, progress,
                               n_lines)


@contextmanager
def _csv_stream(path: Path):
    """Yield (text stream, CSV name, XML text or None, upper bound of data rows)."""
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist()
                         if not n.endswith("/") and not Path(n).name.startswith(".")
                         and "__MACOSX" not in n]
                csvs = [n for n in names if n.lower().endswith(".csv")]
                if not csvs:
                    raise InputError(f"{path}: the zip archive holds no CSV file.")
                if len(csvs) > 1:
                    raise InputError(f"{path}: the zip archive holds {len(csvs)} CSV files; "
                                     "extract the one to read.")
                xmls = [n for n in names if n.lower().endswith(".xml")]
                same_stem = [n for n in xmls if Path(n).stem == Path(csvs[0]).stem]
                xml_name = (same_stem or xmls or [None])[0]
                xml_text = _head(archive.open(xml_name)) if xml_name else None
                with archive.open(csvs[0]) as raw:
                    n_lines = _count_data_lines(raw)
                if archive.getinfo(csvs[0]).file_size == 0:
                    raise InputError(f"{path}: the CSV file {Path(csvs[0]).name} in the archive is empty.")
                with archive.open(csvs[0]) as raw, _text(raw, path) as stream:
                    yield stream, Path(csvs[0]).name, xml_text, n_lines
        else:
            xml_path = path.with_suffix(".xml")
            xml_text = _head(open(xml_path, "rb")) if xml_path.is_file() else None
            with open(path, "rb") as raw:
                n_lines = _count_data_lines(raw)
            with open(path, "rb") as raw, _text(raw, path) as stream:
                yield stream, path.name, xml_text, n_lines
    except zipfile.BadZipFile:
        raise InputError(f"{path}: not a valid zip archive.") from None
    except (zlib.error, EOFError):
        raise InputError(f"{path}: the zip archive is damaged (its data cannot be decompressed); "
                         "download it again.") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc}).") from None


def _head(raw) -> str:
    """The start of an EGMS XML, where <product_level> is; the rest lists input images."""
    with raw:
        return raw.read(1 << 16).decode("utf-8", "replace")


@contextmanager
def _text(raw, path: Path):
    stream = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    try:
        yield stream
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text.") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc}).") from None
    finally:
        stream.detach()


def _count_data_lines(raw) -> int:
    """An upper bound of the data rows: the lines after the header (any line ending)."""
    newlines = returns = 0
    last = b"\n"
    for block in iter(lambda: raw.read(1 << 20), b""):
        newlines += block.count(b"\n")
        returns += block.count(b"\r")
        last = block[-1:]
    lines = max(newlines, returns) + (last not in (b"\n", b"\r"))
    return max(lines - 1, 0)


def _detect_product(xml_text: str | None, names: list[str]) -> str:
    """The EGMS level from the XML's <product_level>, else from the file name; L3 adds U or E."""
    level = None
    if xml_text:
        match = _PRODUCT_LEVEL.search(xml_text)
        if match and match.group(1).upper() in ("L2A", "L2B", "L3"):
            level = match.group(1).upper()
    if level is None:
        level = next((m.group(1).upper() for m in map(_EGMS_NAME.search, names) if m), None)
    if level is None:
        return "generic"
    if level == "L3":
        components = [m.group(1).upper() for m in map(_L3_COMPONENT.search, names) if m]
        return f"L3-{components[0]}" if components else "L3"
    return {"L2A": "L2a", "L2B": "L2b"}[level]


def _sidecar_crs(path: Path) -> str | None:
    prj = path.with_suffix(".prj")
    if path.suffix.lower() == ".zip" or not prj.is_file():
        return None
    return crs_string(prj.read_text("utf-8", "replace"), str(prj))


@dataclass
class _Layout:
    """Which column holds what, decided once from the header."""

    names: list[str]
    dates: np.ndarray
    date_columns: list[int]
    id_column: int | None
    numeric: dict[str, int]     # known EGMS attributes, parsed as numbers
    other: dict[str, int]       # anything else, kept as text unless every value is a number
    x_column: int | None = None
    y_column: int | None = None
    crs: str | None = None      # implied by the coordinate columns, if they imply one

    @classmethod
    def from_header(cls, path: Path, header: list[str], product: str = "generic",
                    with_coordinates: bool = True) -> _Layout:
        """Classify the columns; `with_coordinates` looks for x/y columns (a CSV, not a layer)."""
        names = [h.strip() for h in header]
        dated = []
        for index, name in enumerate(names):
            match = DATE_COLUMN.match(name)
            if match:
                try:
                    dated.append((index, np.datetime64("-".join(match.groups()), "D")))
                except ValueError:
                    raise InputError(f"{path}: the column {name!r} looks like a date but is not one."
                                     ) from None
        if not dated:
            raise InputError(f"{path}: no date columns (named yyyymmdd or Dyyyymmdd) were found, so "
                             "this is neither an EGMS product nor a point layer with a time series.")
        dates = np.array([d for _, d in dated], dtype="datetime64[D]")
        _check_dates(path, dates)

        date_set = {i for i, _ in dated}
        seen: dict[str, int] = {}
        for index, name in enumerate(names):
            if index in date_set or not name:
                continue
            if name.lower() in seen:
                raise InputError(f"{path}: the column {name!r} appears twice in the header.")
            seen[name.lower()] = index

        x_name = y_name = crs = None
        if with_coordinates:
            pair = next(((xn, yn, c) for xn, yn, c in COORDINATE_PAIRS if xn in seen and yn in seen), None)
            if product != "generic" and (pair is None or pair[0] != "easting"):
                raise InputError(f"{path}: this EGMS {product} file lacks the easting/northing columns.")
            if pair is None:
                raise InputError(f"{path}: no coordinate columns were found (easting/northing, x/y, "
                                 "lon/lat or longitude/latitude).")
            x_name, y_name, crs = pair
            crs = EGMS_CRS if product != "generic" else crs
        id_name = next((n for n in ID_NAMES if n in seen), None)
        numeric, other = {}, {}
        for name, index in seen.items():
            if name in (x_name, y_name, id_name):
                continue
            attribute = _ATTRIBUTE_NAMES.get(name, name)
            if attribute in numeric or attribute in other:
                raise InputError(f"{path}: two columns hold {attribute!r} (for example height and "
                                 "height_ortho).")
            (numeric if attribute in _NUMERIC_ATTRIBUTES else other)[attribute] = index
        return cls(names=names, dates=dates, date_columns=[i for i, _ in dated], id_column=seen.get(id_name),
                   numeric=numeric, other=other, x_column=seen.get(x_name), y_column=seen.get(y_name),
                   crs=crs)


def _check_dates(path, dates: np.ndarray) -> None:
    steps = np.diff(dates).astype(np.int64)
    if (steps == 0).any():
        raise InputError(f"{path}: the date {dates[1:][steps == 0][0]} appears twice among the date columns.")
    if (steps < 0).any():
        where = int(np.argmax(steps < 0))
        raise InputError(f"{path}: the date columns are not in increasing order "
                         f"({dates[where]} comes before {dates[where + 1]}).")
    if dates[0] < FIRST_INSAR_DATE:
        raise InputError(f"{path}: the date column {dates[0]} lies before 1991, when no InSAR satellite "
                         "flew yet; name the date columns yyyymmdd with the acquisition dates.")
    today = np.datetime64("today", "D")
    if dates[-1] > today:
        raise InputError(f"{path}: the date column {dates[-1]} lies in the future (today is {today}); "
                         "name the date columns yyyymmdd with the acquisition dates.")


def _fill_from_rows(path, reader, layout: _Layout, crs, product, decimal_comma, aoi, sink, progress,
                    n_lines) -> PointSeries:
    geometry = _aoi_geometry(aoi, crs)
    n_columns = len(layout.names)
    rows_per_chunk = max(16, _CHUNK_FIELDS // max(n_columns, 1))
    pick_dates = _picker(layout.date_columns)
    parse = _Parser(path, layout.names, decimal_comma)
    n_rows = 0
    while True:
        check_cancel(progress)
        rows, lines = [], []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != n_columns:
                raise InputError(f"{path}: line {reader.line_num} has {len(row)} fields but the header "
                                 f"has {n_columns}.")
            rows.append(row)
            lines.append(reader.line_num)
            if len(rows) == rows_per_chunk:
                break
        if not rows:
            break
        x = parse.numbers(rows, [layout.x_column], lines, np.float64, required=True)[:, 0]
        y = parse.numbers(rows, [layout.y_column], lines, np.float64, required=True)[:, 0]
        first_id = n_rows + 1
        n_rows += len(rows)
        if geometry is not None:
            keep = shapely.contains_xy(geometry, x, y)
            rows = list(itertools.compress(rows, keep))
            lines = list(itertools.compress(lines, keep))
            ordinals = np.arange(first_id, first_id + keep.shape[0])[keep]
            x, y = x[keep], y[keep]
            if not rows:
                continue
        else:
            ordinals = np.arange(first_id, first_id + len(rows))
        values = parse.numbers(rows, layout.date_columns, lines, np.float32, picker=pick_dates)
        ids = (np.array([row[layout.id_column].strip() or str(o) for row, o in zip(rows, ordinals)],
                        dtype=str)
               if layout.id_column is not None else ordinals.astype(str))
        numeric = {name: parse.numbers(rows, [i], lines, np.float64)[:, 0]
                   for name, i in layout.numeric.items()}
        text = {name: np.array([row[i].strip() for row in rows], dtype=str)
                for name, i in layout.other.items()}
        sink.append(ids, x, y, values, {**numeric, **text})
        if progress is not None:
            progress.progress(min(1.0, n_rows / max(n_lines, 1)), f"Reading {path.name}")
    if n_rows == 0:
        raise InputError(f"{path}: the file has a header but no points.")
    return sink.finish(crs, layout.dates, product, n_rows, aoi)


def _picker(columns: list[int]):
    """A fast row -> fields function for the given columns (a slice when they are contiguous)."""
    if len(columns) > 1 and columns == list(range(columns[0], columns[-1] + 1)):
        sl = slice(columns[0], columns[-1] + 1)
        return lambda row: row[sl]
    if len(columns) == 1:
        only = columns[0]
        return lambda row: (row[only],)
    return operator.itemgetter(*columns)


class _Parser:
    """Text fields -> numbers, fast when all are plain numbers, precise about the first bad one."""

    def __init__(self, path: Path, names: list[str], decimal_comma: bool):
        self.path, self.names, self.decimal_comma = path, names, decimal_comma

    def numbers(self, rows, columns, lines, dtype, picker=None, required=False) -> np.ndarray:
        picker = picker or _picker(columns)
        count = len(rows) * len(columns)
        try:
            block = np.fromiter(map(float, itertools.chain.from_iterable(map(picker, rows))),
                                dtype=dtype, count=count).reshape(len(rows), len(columns))
            if np.isfinite(block).all():
                return block
        except ValueError:
            pass
        return self._slow(rows, columns, lines, dtype, required)

    def _slow(self, rows, columns, lines, dtype, required) -> np.ndarray:
        block = np.empty((len(rows), len(columns)), dtype=dtype)
        for r, row in enumerate(rows):
            for c, column in enumerate(columns):
                block[r, c] = self._one(row[column], lines[r], column, required)
        return block

    def _one(self, text: str, line: int, column: int, required: bool) -> float:
        stripped = text.strip()
        where = f"line {line}, column {self.names[column]!r}"
        if stripped.lower() in _MISSING:
            if required:
                raise InputError(f"{self.path}: {where} is empty but a coordinate is required.")
            return np.nan
        if self.decimal_comma:
            stripped = stripped.replace(",", ".")
        try:
            value = float(stripped)
        except ValueError:
            raise InputError(f"{self.path}: {where} holds {text[:40]!r}, which is not a number.") from None
        if not np.isfinite(value) or abs(value) > 1e30:
            raise InputError(f"{self.path}: {where} holds {text[:40]!r}, which is not a finite number.")
        return value


class _Sink:
    """Collects chunks; the displacement block is preallocated and grows only when clipping."""

    def __init__(self, path: Path, n_dates: int, n_rows_max: int, clipping: bool, max_bytes,
                 crs_assumed: bool = False):
        self.path, self.n_dates, self.max_bytes = path, n_dates, max_bytes
        self.crs_assumed = crs_assumed  # EGMS_CRS taken for want of a .prj or lon/lat columns
        self.n_implausible, self.implausible_example = 0, 0.0
        if not clipping:
            self._check_budget(n_rows_max)
        capacity = min(n_rows_max, 4096) if clipping else n_rows_max
        self.values = big_array((capacity, n_dates), np.float32)
        self.n = 0
        self.chunks: list[tuple] = []

    def _check_budget(self, n_points: int) -> None:
        size = n_points * self.n_dates * _BYTES_PER_VALUE
        if self.max_bytes is not None and size > self.max_bytes and scratch_active() is None:
            raise InputError(f"{self.path}: the file holds {n_points:,} points × {self.n_dates} dates "
                             f"({_size(size)}), over the memory budget of {_size(self.max_bytes)}; "
                             "use a smaller area of interest or tiles.")

    def append(self, ids, x, y, values, attributes) -> None:
        implausible = np.abs(values) > MAX_DISPLACEMENT_MM  # False for NaN
        if implausible.any():
            self.implausible_example = float(values[implausible][0])
            self.n_implausible += int(implausible.sum())
            values = np.where(implausible, np.nan, values)
        end = self.n + values.shape[0]
        if end > self.values.shape[0]:
            self._check_budget(end)
            grown = big_array((max(end, self.values.shape[0] * 2), self.n_dates), np.float32)
            for start in range(0, self.n, max(1, chunk_values() // self.n_dates)):
                stop = min(self.n, start + max(1, chunk_values() // self.n_dates))
                grown[start:stop] = self.values[start:stop]
            self.values = grown
        self.values[self.n:end] = values
        self.n = end
        self.chunks.append((ids, x, y, attributes))

    def finish(self, crs, dates, product, n_read, aoi) -> PointSeries:
        if self.n == 0:
            raise InputError(f"{self.path}: none of its {n_read:,} points lie inside the area of interest "
                             f"{aoi.source}.")
        values = self.values[:self.n]
        if self.n < 0.9 * self.values.shape[0] and not isinstance(self.values, np.memmap):
            values = values.copy()  # release the unused part of a grown buffer
        self.values = None
        valid = big_array(values.shape, bool)
        step = max(1, chunk_values() // max(self.n_dates, 1))
        for start in range(0, self.n, step):  # a slab at a time: the values may be on disk
            valid[start:start + step] = ~np.isnan(values[start:start + step])
        if not valid.any():
            beyond = (f" or beyond ±{MAX_DISPLACEMENT_MM / 1000:g} m (such as {self.implausible_example:g})"
                      if self.n_implausible else "")
            raise InputError(f"{self.path}: every displacement value is empty{beyond}; the date columns "
                             "must hold displacement in millimetres.")
        ids, x, y, attributes = zip(*self.chunks)
        x, y = np.concatenate(x), np.concatenate(y)
        ids, notes = _unique_ids(self.path, np.concatenate(ids))
        if crs == EGMS_CRS:
            _check_egms_coordinates(self.path, x, y, ids, self.crs_assumed)
        if self.n_implausible:
            notes.insert(0, f"{self.path}: {self.n_implausible:,} displacement values beyond "
                            f"±{MAX_DISPLACEMENT_MM / 1000:g} m (such as {self.implausible_example:g}) are "
                            "no measurement of ground motion and were treated as missing.")
        return PointSeries(ids=ids, x=x, y=y, crs=crs,
                           dates=dates, displacement_mm=values, valid=valid,
                           attributes={name: _finish_column([a[name] for a in attributes])
                                       for name in attributes[0]},
                           source=str(self.path), product=product, notes=notes)


def _unique_ids(path: Path, ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The ids with repeats renamed id~2, id~3, … (a backtest pairs series by id), and the note."""
    unique, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts == 1).all():
        return ids, []
    taken = set(unique.tolist())
    repeated = np.ones(ids.shape[0], bool)
    repeated[first] = False
    renamed = ids.astype(object)
    seen: dict[str, int] = {}
    for i in np.flatnonzero(repeated):
        name = str(ids[i])
        k = seen.get(name, 1)
        while True:
            k += 1
            candidate = f"{name}~{k}"
            if candidate not in taken:
                break
        seen[name] = k
        taken.add(candidate)
        renamed[i] = candidate
    doubled = unique[counts > 1]
    shown = ", ".join(doubled[:5].tolist()) + (", …" if doubled.shape[0] > 5 else "")
    note = (f"{path}: {doubled.shape[0]:,} point ids appear more than once ({shown}); the repeats were "
            f"renamed with ~2, ~3, … so that every point keeps its own series.")
    return renamed.astype(str), [note]


def _check_egms_coordinates(path: Path, x: np.ndarray, y: np.ndarray, ids: np.ndarray, assumed: bool) -> None:
    """InputError unless the coordinates can be EPSG:3035 metres in Europe."""
    extent = (f"x {x.min():.6g} to {x.max():.6g}, y {y.min():.6g} to {y.max():.6g}")
    taken = ("with no .prj file beside it they are read as EPSG:3035 metres" if assumed
             else "the file gives EPSG:3035 metres")
    if ((np.abs(x) <= 180) & (np.abs(y) <= 90)).all():
        remedy = ("name the columns lon and lat" if assumed
                  else "give the layer its geographic coordinate system (EPSG:4326)")
        raise InputError(f"{path}: the coordinates ({extent}) look like degrees, but {taken}; {remedy}.")
    x0, y0, x1, y1 = EUROPE_3035
    outside = ~((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
    if outside.all():
        remedy = ("add a .prj file with their coordinate system beside it" if assumed
                  else "give the layer its true coordinate system")
        raise InputError(f"{path}: the coordinates ({extent}) lie outside Europe, but {taken}; {remedy}.")
    if outside.any():
        shown = ", ".join(ids[outside][:10].tolist()) + (", …" if outside.sum() > 10 else "")
        raise InputError(f"{path}: {int(outside.sum()):,} of its {x.shape[0]:,} points lie outside Europe in "
                         f"EPSG:3035 (ids {shown}); remove them, or give an area of interest.")


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


def _finish_column(parts: list[np.ndarray]) -> np.ndarray:
    """Join a column's chunks; text columns become float64 when every non-empty value is a number."""
    column = np.concatenate(parts)
    if column.dtype.kind != "U":
        return column
    missing = np.isin(np.char.lower(column), list(_MISSING))
    try:
        numbers = np.full(column.shape, np.nan)
        numbers[~missing] = column[~missing].astype(np.float64)
    except ValueError:
        return column
    return numbers if np.isfinite(numbers[~missing]).all() else column


def _aoi_geometry(aoi, crs):
    if aoi is None:
        return None
    geometry = aoi.to_crs(crs).geometry
    shapely.prepare(geometry)
    return geometry


# ---------------------------------------------------------------------------- point layers


def _read_layer(path: Path, aoi, max_bytes, progress) -> PointSeries:
    import fiona
    from fiona.errors import FionaError

    try:
        with fiona.open(path) as layer:
            return _read_features(path, layer, aoi, max_bytes, progress)
    except (FionaError, OSError) as exc:
        raise InputError(f"{path}: cannot be read as a point layer ({reason(exc)}).") from None


def _read_features(path: Path, layer, aoi, max_bytes, progress) -> PointSeries:
    if not layer.crs_wkt:
        raise InputError(f"{path}: the layer has no coordinate reference system (for a shapefile, "
                         "a .prj file).")
    crs = crs_string(layer.crs_wkt, str(path))
    fields = layer.schema["properties"]
    names = list(fields)
    layout = _Layout.from_header(path, names, with_coordinates=False)
    date_fields = [names[c] for c in layout.date_columns]
    id_field = names[layout.id_column] if layout.id_column is not None else None
    attribute_fields = {name: names[c] for name, c in {**layout.numeric, **layout.other}.items()}
    numeric_fields = {name for name, kind in fields.items()
                      if kind.split(":")[0] in ("float", "int", "int64")}

    geometry = _aoi_geometry(aoi, crs)
    n_features = len(layer)
    sink = _Sink(path, len(date_fields), n_features, aoi is not None, max_bytes)
    chunk_size = max(16, _CHUNK_FIELDS // max(len(names), 1))
    n_read = 0
    features = iter(layer)
    while True:
        check_cancel(progress)
        chunk = list(itertools.islice(features, chunk_size))
        if not chunk:
            break
        xy = np.array([_point_xy(path, f) for f in chunk], dtype=np.float64).reshape(-1, 2)
        ordinals = np.arange(n_read + 1, n_read + 1 + len(chunk))
        n_read += len(chunk)
        if geometry is not None:
            keep = shapely.contains_xy(geometry, xy[:, 0], xy[:, 1])
            chunk = list(itertools.compress(chunk, keep))
            xy, ordinals = xy[keep], ordinals[keep]
            if not chunk:
                continue
        values = np.array([[_field_number(path, f, name) for name in date_fields] for f in chunk],
                          dtype=np.float32).reshape(len(chunk), len(date_fields))
        ids = (np.array([str(f["properties"][id_field]) for f in chunk], dtype=str)
               if id_field else np.array([str(f.id) if f.id is not None else str(o)
                                          for f, o in zip(chunk, ordinals)], dtype=str))
        attributes = {}
        for name, field in attribute_fields.items():
            if field in numeric_fields:
                attributes[name] = np.array([_field_number(path, f, field) for f in chunk], dtype=np.float64)
            else:
                attributes[name] = np.array(["" if f["properties"][field] is None
                                             else str(f["properties"][field]) for f in chunk], dtype=str)
        sink.append(ids, xy[:, 0], xy[:, 1], values, attributes)
        if progress is not None:
            progress.progress(min(1.0, n_read / max(n_features, 1)), f"Reading {path.name}")
    if n_read == 0:
        raise InputError(f"{path}: the layer holds no features.")
    return sink.finish(crs, layout.dates, "generic", n_read, aoi)


def _point_xy(path: Path, feature) -> tuple[float, float]:
    geometry = feature.geometry
    if geometry is None or geometry.type != "Point":
        kind = "no geometry" if geometry is None else f"a {geometry.type}"
        raise InputError(f"{path}: feature {feature.id} has {kind}; a point layer is required.")
    x, y = geometry.coordinates[:2]
    if not (np.isfinite(x) and np.isfinite(y)):
        raise InputError(f"{path}: feature {feature.id} has no valid coordinates.")
    return x, y


def _field_number(path: Path, feature, field: str) -> float:
    value = feature["properties"][field]
    if value is None or (isinstance(value, str) and value.strip().lower() in _MISSING):
        return np.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{path}: feature {feature.id}, field {field!r} holds {str(value)[:40]!r}, "
                         "which is not a number.") from None
    if not np.isfinite(number):
        raise InputError(f"{path}: feature {feature.id}, field {field!r} is not a finite number.")
    return number
