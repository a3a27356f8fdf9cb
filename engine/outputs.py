"""Output writers: GeoTIFF band stacks, the points GeoPackage, JSON, series.npz and the backtest
figure. Each writes through atomic_path, so a failure leaves the previous file (or none)."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
from pathlib import Path

import fiona
import numpy as np
import pyproj
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from .definitions import ATTRIBUTION, MODEL_COLORS, MODEL_LABELS, PRIMARY_MODEL
from .fileio import atomic_path, gdal_errors_raise

__all__ = ["ATTRIBUTION", "MODEL_COLORS", "MODEL_LABELS", "PRIMARY_MODEL", "plot_backtest", "plot_series",
           "write_band_stack", "write_json", "write_points_gpkg", "write_series_npz", "write_series_store"]


def write_band_stack(path, grid, values, band_dates, unit: str = "mm", nodata: float = -9999.0,
                     description: str = "GroundCast forecast", reference: str | None = None) -> None:
    """GeoTIFF with one float32 band per date of `values` [B, H, W]; NaN is written as `nodata`.

    Band descriptions are the ISO dates (QGIS shows them in the band list); the dataset carries
    GROUNDCAST_DATES (comma-separated), the EGMS attribution and, with `reference` ("change since
    2024-12-25"), what the values count from (GROUNDCAST_REFERENCE). A GDAL error while writing
    (a full disk) raises OSError, and the file is read back before it is renamed into place.
    """
    band_dates = [str(np.datetime64(d, "D")) for d in band_dates]
    values = values if isinstance(values, Bands) else np.asarray(values)
    expected = (len(band_dates), grid.height, grid.width)
    if values.shape != expected:
        raise ValueError(f"{Path(path).name}: values {values.shape} do not match "
                         f"(dates, height, width) = {expected}")
    # A scratch GeoTIFF with overviews, copied with COPY_SRC_OVERVIEWS: a Cloud-Optimized GeoTIFF
    # (headers, then overviews, then full-resolution tiles), band-interleaved. GDAL's own COG
    # driver writes only pixel interleave before 3.11, which makes reading one date's band (the
    # timeline) some 70 times slower on a 61-band map.
    profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=len(band_dates),
                   dtype="float32", crs=grid.crs, transform=grid.transform, nodata=nodata,
                   tiled=True, blockxsize=256, blockysize=256, compress="zstd", zstd_level=1,
                   interleave="band", bigtiff="if_safer")
    tags = dict(GROUNDCAST_DATES=",".join(band_dates), ATTRIBUTION=ATTRIBUTION,
                TIFFTAG_IMAGEDESCRIPTION=f"{description}, {reference}" if reference else description)
    if reference:
        tags["GROUNDCAST_REFERENCE"] = reference
    with atomic_path(path) as tmp, _scratch_beside(tmp) as plain:
        with gdal_errors_raise(path), rasterio.open(plain, "w", **profile) as dst:
            # Band by band, so a million-cell stack is never copied whole.
            for band, date in enumerate(band_dates, start=1):
                layer = values[band - 1]
                dst.write(np.where(np.isfinite(layer), layer, nodata).astype(np.float32), band)
                dst.set_band_description(band, date)
                dst.set_band_unit(band, unit)
                dst.update_tags(band, DATE=date)
            dst.update_tags(**tags)
            factors = overview_factors(grid.width, grid.height)
            if factors:  # QGIS draws a large map zoomed out from these, not from every cell
                dst.build_overviews(factors, Resampling.average)
        with gdal_errors_raise(path):
            rasterio.shutil.copy(plain, tmp, driver="GTiff", TILED="YES", BLOCKXSIZE=256, BLOCKYSIZE=256,
                                 COMPRESS="DEFLATE", PREDICTOR=3, INTERLEAVE="BAND", BIGTIFF="IF_SAFER",
                                 COPY_SRC_OVERVIEWS="YES", NUM_THREADS="ALL_CPUS")
        _check_band_stack(tmp, path, len(band_dates), grid)


class Bands:
    """A band stack [B, H, W] computed a band at a time, for write_band_stack: `band(i)` gives band i.

    A large map is then never held whole, nor derived from the forecast whole."""

    def __init__(self, shape, band):
        self.shape, self._band = tuple(shape), band

    def __getitem__(self, i):
        return self._band(i)


def overview_factors(width: int, height: int, smallest: int = 256) -> list:
    """Overview reductions 2, 4, ... down to one `smallest`-cell tile; none for a map that fits in one."""
    factors, factor = [], 2
    while max(width, height) / (factor // 2) > smallest:
        factors.append(factor)
        factor *= 2
    return factors


@contextlib.contextmanager
def _scratch_beside(tmp: Path):
    """A scratch file name next to `tmp` (inside the staging folder), removed however the block ends."""
    scratch = tmp.with_name(tmp.stem + ".plain" + tmp.suffix)
    try:
        yield scratch
    finally:
        scratch.unlink(missing_ok=True)


def _check_band_stack(tmp, path, count: int, grid) -> None:
    """Read the written file back: its shape, and the last row of every band (where a cut-off file
    loses data first)."""
    from rasterio.windows import Window

    with gdal_errors_raise(path), rasterio.open(tmp) as src:
        if (src.count, src.height, src.width) != (count, grid.height, grid.width):
            raise OSError(f"{Path(path).name} reads back as {src.count} bands of {src.height} x {src.width}")
        for band in range(1, count + 1):
            src.read(band, window=Window(0, grid.height - 1, grid.width, 1))


def _field_type(name, column):
    kind = column.dtype.kind
    if kind in "US":
        return "str"
    if kind == "f":
        return "float"
    if kind in "iub":
        return "int"
    if kind == "O" and all(isinstance(v, str) for v in column):
        return "str"
    raise ValueError(f"field {name!r}: cannot store dtype {column.dtype} in a GeoPackage")


GPKG_BATCH_POINTS = 50_000  # points per write between progress reports


def write_points_gpkg(path, x, y, crs, fields: dict, layer: str = "points", progress=None) -> None:
    """Point layer with one attribute per entry of `fields` ([N] arrays); NaN floats become NULL.

    Written in batches; `progress(fraction)` is called after each (and may raise to cancel)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.shape != x.shape:
        raise ValueError(f"{Path(path).name}: x {x.shape} and y {y.shape} must be the same [N]")
    columns = {name: np.asarray(column) for name, column in fields.items()}
    for name, column in columns.items():
        if column.shape != x.shape:
            raise ValueError(f"{Path(path).name}: field {name!r} has shape {column.shape}, "
                             f"the points {x.shape}")
    types = {name: _field_type(name, column) for name, column in columns.items()}
    as_python = {
        "str": lambda c: [str(v) for v in c],
        "int": lambda c: c.astype(np.int64).tolist(),
        "float": lambda c: [v if math.isfinite(v) else None for v in c.astype(np.float64).tolist()],
    }

    def features(rows: slice):
        values = {name: as_python[types[name]](column[rows]) for name, column in columns.items()}
        for i, (xi, yi) in enumerate(zip(x[rows].tolist(), y[rows].tolist())):
            yield fiona.Feature(geometry=fiona.Geometry(type="Point", coordinates=(xi, yi)),
                                properties=fiona.Properties(**{name: values[name][i] for name in values}))

    schema = {"geometry": "Point", "properties": types}
    with atomic_path(path) as tmp:
        # a spatial index, so QGIS draws and identifies a large layer quickly
        with fiona.open(tmp, "w", driver="GPKG", layer=layer, schema=schema, SPATIAL_INDEX="YES",
                        crs_wkt=pyproj.CRS.from_user_input(crs).to_wkt()) as dst:
            for start in range(0, len(x), GPKG_BATCH_POINTS):
                dst.writerecords(features(slice(start, start + GPKG_BATCH_POINTS)))
                if progress is not None:
                    progress(min(start + GPKG_BATCH_POINTS, len(x)) / len(x))
        with fiona.open(tmp, layer=layer) as check:
            if len(check) != len(x):
                raise OSError(f"{Path(path).name} reads back with {len(check)} of {len(x)} points")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(key): _jsonable(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(value) for value in obj]
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "M":
            return [str(d) for d in obj.astype("datetime64[D]").ravel()]
        return _jsonable(obj.tolist())
    if isinstance(obj, np.datetime64):
        return str(obj)
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (dt.date, dt.datetime)):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json(path, obj) -> None:
    """JSON of dicts/lists/numbers/strings with numpy values; NaN and inf become null, dates ISO."""
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False, ensure_ascii=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def _npz_array(name, value):
    array = np.asarray(value)
    if array.dtype.kind == "M":
        return array.astype("datetime64[D]").astype(np.int64)  # days since 1970-01-01
    if array.dtype.kind == "O":
        if not all(isinstance(v, str) for v in array.ravel()):
            raise ValueError(f"series array {name!r} holds Python objects; npz must load without pickle")
        return array.astype(str)
    return array


def write_series_npz(path, **arrays) -> None:
    """npz that loads with allow_pickle=False; datetime64 arrays become int64 days since
    1970-01-01 and string object arrays become unicode arrays. Stored uncompressed, so a reader
    can map one point's row from disk without loading the others (engine.results.ForecastRun)."""
    arrays = {name: _npz_array(name, value) for name, value in arrays.items()}
    with atomic_path(path) as tmp:
        # A file object, because numpy appends ".npz" to a path that does not end with it.
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        with np.load(tmp, allow_pickle=False) as check:
            for name in check.files:
                check[name]


SERIES_CHUNK_POINTS = 1024  # points per compressed chunk of the series store: what one click reads


def keep_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """float32 values rounded to `bits` bits of mantissa (of 23), the rest zero, so they compress
    (netCDF's and Zarr's bit rounding); 16 bits keep 5 significant digits."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    drop = 23 - int(bits)
    if drop <= 0:
        return values
    raw = values.view(np.uint32)
    half, mask = np.uint32(1 << (drop - 1)), np.uint32((0xFFFFFFFF << drop) & 0xFFFFFFFF)
    rounded = ((raw + half) & mask).view(np.float32)
    return np.where(np.isfinite(values), rounded, values)


def write_series_store(path, meta: dict, per_point: dict, n_points: int,
                       chunk_points: int = SERIES_CHUNK_POINTS, keep: dict | None = None,
                       progress=None) -> None:
    """The series behind the time-series plot: a zip of .npy members, chunked by point.

    `meta` arrays (ids, coordinates, dates) are stored as they are, uncompressed, as in
    write_series_npz. Each entry of `per_point` ([N, ...] array, or a function of a slice of points
    giving those rows) is stored as float32 in deflated members `<name>/<chunk>.npy` of
    `chunk_points` points each, so a click reads one small member per name and never the rest;
    `keep` {name: mantissa bits} rounds model output so it compresses (keep_bits); those members
    hold their float32 values byte-shuffled, as uint8 [4, values] (first bytes, then second
    bytes, ...: HDF5's shuffle filter), which deflates smooth series to under two bytes a value
    (measured data deflates better unshuffled). `series_layout` (JSON) gives each name's row shape
    and the shuffled names. The chunks are computed a slice at a time: memory holds one chunk,
    whatever the number of points. Deflate runs at level 1: on EGMS series level 6 is six times
    slower for 20 % fewer bytes. `progress(fraction)` is called after each chunk (and may raise
    to cancel).
    """
    import io
    import zipfile

    meta = {name: _npz_array(name, value) for name, value in meta.items()}
    meta["chunk_points"] = np.array(int(chunk_points))
    meta["n_points"] = np.array(int(n_points))
    keep = keep or {}
    row_shapes = {}

    def npy(array) -> bytes:
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
        return buffer.getvalue()

    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as archive:
            for name, value in meta.items():
                archive.writestr(f"{name}.npy", npy(value), compress_type=zipfile.ZIP_STORED)
            for start in range(0, int(n_points), int(chunk_points)):
                rows = slice(start, min(start + int(chunk_points), int(n_points)))
                for name, source in per_point.items():
                    block = source(rows) if callable(source) else source[rows]
                    block = np.ascontiguousarray(block, dtype=np.float32)
                    row_shapes[name] = list(block.shape[1:])
                    if name in keep:  # C order, so the bytes are stored shuffled
                        block = keep_bits(block, keep[name])
                        block = np.ascontiguousarray(block.reshape(-1).view(np.uint8).reshape(-1, 4).T)
                    archive.writestr(f"{name}/{start // int(chunk_points):07d}.npy", npy(block),
                                     compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
                if progress is not None:
                    progress(rows.stop / max(int(n_points), 1))
            layout = {"dtype": "<f4", "shuffled": sorted(keep), "row_shapes": row_shapes}
            archive.writestr("series_layout.npy", npy(np.array(json.dumps(layout))),
                             compress_type=zipfile.ZIP_STORED)
        with zipfile.ZipFile(tmp) as check:  # a cut-off file fails here, not in the user's plot
            bad = check.testzip()
            if bad is not None:
                raise OSError(f"{Path(path).name}: member {bad} reads back damaged")


def unshuffle(member: np.ndarray, row_shape) -> np.ndarray:
    """A write_series_store member (uint8 [4, values]) back to float32 [points, *row_shape]."""
    values = np.ascontiguousarray(member.T).view("<f4").reshape(-1)
    return values.reshape((-1, *row_shape))


def plot_series(ax, example: dict, legend: bool = True) -> None:
    """One point's history, held-out truth, MM-STT median and 90% band, and the baselines.

    Keys that are missing or None are skipped, so the QGIS time-series widget can draw a
    forecast without truth into its own Figure and look the same as the reports.
    """
    def has(key):
        return example.get(key) is not None

    if has("dates_obs") and has("obs_mm"):
        ax.plot(example["dates_obs"], example["obs_mm"], ".", color="0.5", markersize=3,
                label="Observed")
    if has("dates_truth") and has("truth_mm"):
        ax.plot(example["dates_truth"], example["truth_mm"], ".", color="black", markersize=3,
                label="Held-out truth")
    if has("dates_fc"):
        dates_fc = example["dates_fc"]
        if has("q05_mm") and has("q95_mm"):
            ax.fill_between(dates_fc, example["q05_mm"], example["q95_mm"], color=MODEL_COLORS["mmstt"],
                            alpha=0.2, linewidth=0, label="MM-STT 90% interval")
        if has("q50_mm"):
            ax.plot(dates_fc, example["q50_mm"], "-", color=MODEL_COLORS["mmstt"], linewidth=2,
                    label="MM-STT median")
        if has("timefn_mm"):
            ax.plot(dates_fc, example["timefn_mm"], "--", color=MODEL_COLORS["timefn"],
                    label="Time function")
        if has("persistence_mm"):
            ax.plot(dates_fc, example["persistence_mm"], "--", color=MODEL_COLORS["persistence"],
                    label="Persistence")
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel("Displacement (mm)")
    if has("label"):
        ax.set_title(str(example["label"]), fontsize=10)
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(fontsize=7, loc="best")


def plot_backtest(path, metrics: dict, examples: list) -> None:
    """PNG (150 dpi): RMSE against horizon per model on the left, example series on the right.

    Reads metrics["models"][name]["rmse_mm"] against metrics["horizons_days"] (the layout of
    metrics.json); the model named "mmstt" is drawn solid, others dashed.
    """
    rows = max(len(examples), 1)
    fig = Figure(figsize=(13, max(4.5, 2.8 * rows)), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, 2 if examples else 1, width_ratios=[1, 1.6] if examples else None)
    ax = fig.add_subplot(grid[:, 0])
    for name, scores in metrics["models"].items():
        ax.plot(metrics["horizons_days"], scores["rmse_mm"], "-o" if name == PRIMARY_MODEL else "--o",
                linewidth=2 if name == PRIMARY_MODEL else 1.5, markersize=4,
                color=MODEL_COLORS.get(name),
                label=MODEL_LABELS.get(name, name))
    ax.set_xlabel("Forecast horizon (days)")
    ax.set_ylabel("RMSE (mm)")
    ax.set_title("Error against horizon on held-out epochs", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    for row, example in enumerate(examples):
        plot_series(fig.add_subplot(grid[row, 1]), example, legend=row == 0)
    fig.suptitle("GroundCast backtest")
    fig.text(0.995, 0.003, ATTRIBUTION, ha="right", va="bottom", fontsize=6, color="0.4")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
