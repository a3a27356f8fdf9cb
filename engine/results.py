"""The output folder: its file names, its schema version, the writer and the reader.

A result folder holds one run, forecast or backtest, and a manifest (`groundcast.json`) naming the
schema version and every file GroundCast wrote. Everything else reads the folder through
`ForecastRun.open(folder)`, never by file name.

Writing follows one rule: never delete or overwrite what GroundCast did not write. The output
folder may be
  * missing or empty: the result is created there;
  * an earlier result (its manifest lists every file in it, apart from the files QGIS and the
    plugin derive from them: DERIVED_FILES): it is replaced whole;
  * anything else (a file, a folder holding the user's own files, a mount point, a folder holding
    an input of the run): the run is refused, in one sentence, before any training.
A folder of the user's with unrelated files is refused rather than written into: files merged
into it one by one could not be switched in one step, and a later run could not tell them apart.

The result is staged in a hidden `.<name>.<random>.part` folder beside the destination (so on the
destination's own file system), checked file by file, then switched into place by one folder
rename: a crash leaves the old result or the new one, never a mix. A lock beside the folder
refuses a second run into it while the first is running, and the next run removes what a killed
run left behind.
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import asdict
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import numpy as np

from . import __version__, fileio
from .definitions import ATTRIBUTION
from .errors import InputError

SCHEMA_VERSION = 3  # 1: the folders written before there was a manifest; 2: series.npz one array per name
OLDEST_READABLE_SCHEMA = 2  # a schema-2 folder reads the same through ForecastRun

MANIFEST = "groundcast.json"
# a forecast
CHANGE = "change.tif"  # expected change since the forecast origin, the median
CHANGE_Q05 = "change_q05.tif"
CHANGE_Q95 = "change_q95.tif"
FORECAST = "forecast.tif"  # cumulative displacement since the first epoch, the median
FORECAST_Q05 = "forecast_q05.tif"
FORECAST_Q95 = "forecast_q95.tif"
INTERVAL90 = "interval90.tif"  # width of the 90 % interval
EXCEEDANCE = "exceedance.tif"  # probability that the change since the origin passes the threshold
POINTS = "points.gpkg"
SERIES = "series.npz"
MODEL = "model.safetensors"
SUMMARY = "summary.json"
# a backtest
METRICS = "metrics.json"
BACKTEST_PLOT = "backtest.png"

# The rasters: kind -> (file, unit, the reference its values count from: "change", "cumulative" or None).
RASTERS = {
    "change": (CHANGE, "mm", "change"),
    "change_q05": (CHANGE_Q05, "mm", "change"),
    "change_q95": (CHANGE_Q95, "mm", "change"),
    "forecast": (FORECAST, "mm", "cumulative"),
    "forecast_q05": (FORECAST_Q05, "mm", "cumulative"),
    "forecast_q95": (FORECAST_Q95, "mm", "cumulative"),
    "interval90": (INTERVAL90, "mm", None),
    "exceedance": (EXCEEDANCE, "1", "change"),
}
FORECAST_FILES = tuple(f for f, _, _ in RASTERS.values()) + (POINTS, SERIES, MODEL, SUMMARY)
BACKTEST_FILES = (METRICS, BACKTEST_PLOT)
OUTPUT_FILES = {"forecast": FORECAST_FILES, "backtest": BACKTEST_FILES}

# Written beside the results by QGIS and the plugin, derived from them: part of the result.
POINTS_CHANGE = "points_change.gpkg"  # the points' change per forecast date, for the timeline
DERIVED_FILES = (POINTS_CHANGE, "aoi_*.gpkg", "report_series.png", "*.aux.xml", "*.gpkg-wal", "*.gpkg-shm",
                 "*.gpkg-journal", fileio.PART_MARKER)

SERIES_KEYS = ("obs_mm", "q05_mm", "q50_mm", "q95_mm", "timefn_mm", "persistence_mm")


def _since(reference: str, date) -> str:
    return f"{reference} since {date}"


# -- checking the output folder before the run ---------------------------------------------------
def _input_paths(config, command: str):
    """(label, path) of every input file of the run."""
    from .params import PARAMETERS

    for p in PARAMETERS:
        if command not in p.commands or not p.is_file or p.kind == "folder":
            continue
        value = getattr(config, p.name, None)
        if not value:
            continue
        text = str(value).split("|", 1)[0]  # a QGIS source "file.gpkg|layername=..."
        if "\n" in text or len(text) > 4096 or not os.path.exists(text):
            continue  # WKT text, or missing: the reader says so
        yield p.label, Path(text)


def _is_derived(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in DERIVED_FILES)


def read_manifest(folder) -> dict | None:
    """The manifest of a result folder, or None when it has none (or not a readable one)."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return None
    return manifest


def _listing(names, limit: int = 3) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path.parent != path:
        path = path.parent
    return path


def check_output_folder(config, command: str = "forecast") -> Path:
    """InputError, one sentence, unless the run may write its result to config.out_dir.

    Call it before the run starts (the dock and Processing do; run_forecast and run_backtest do
    too). Returns the folder, symlinks resolved: the result is staged on its file system.
    """
    text = str(getattr(config, "out_dir", "") or "").strip()
    if not text:
        raise InputError("Output folder: a folder for the results is needed.")
    given = Path(text).expanduser()
    out = Path(os.path.abspath(given)).resolve()  # a link to another disk: staged there
    if out.exists() and not out.is_dir():
        raise InputError(f"{given} is a file, not a folder; choose a folder for the results.")
    for label, path in _input_paths(config, command):
        resolved = path.resolve()
        if out in resolved.parents:
            raise InputError(f"{given}: the output folder holds the input file {path} ({label}), which the "
                             "results could replace; choose another output folder.")
    if out.is_dir():
        if os.path.ismount(out):
            raise InputError(f"{given} is the top of a mounted drive; write the results into a folder "
                             f"on it, for example {given / 'groundcast'}.")
        try:
            names = {entry.name for entry in os.scandir(out)}
        except OSError as exc:
            raise InputError(f"{given} cannot be read ({fileio.reason(exc)}); choose another output "
                             "folder.") from None
        manifest = read_manifest(out)
        if manifest is not None:
            listed = set(manifest["files"]) | {MANIFEST}
            foreign = {n for n in names if n not in listed and not _is_derived(n)}
            if foreign:
                raise InputError(f"{given} is an earlier GroundCast result that also holds files GroundCast "
                                 f"did not write ({_listing(foreign)}); move them or choose another "
                                 "output folder.")
        elif names:
            outputs = {n for files in OUTPUT_FILES.values() for n in files} | {MANIFEST}
            clash = names & outputs
            if clash:
                raise InputError(f"{given} holds {_listing(clash)}, which GroundCast did not write (or "
                                 "an older version did); choose another output folder.")
            raise InputError(f"{given} holds other files ({_listing(names)}); GroundCast writes its "
                             "results into a new or empty folder of their own: choose one.")
    _check_writable(given, out)
    return out


def _check_writable(given: Path, out: Path) -> None:
    """Write and remove a probe where the result will be staged (its parent folder)."""
    base = _nearest_existing(out.parent)
    if not base.is_dir():
        raise InputError(f"{given} cannot be created: {base} is a file; choose another output folder.")
    try:
        probe = tempfile.mkdtemp(prefix=".groundcast-probe-", dir=base)
        os.rmdir(probe)
    except OSError as exc:
        raise InputError(f"{given} cannot be written ({fileio.reason(exc)}); choose another output "
                         "folder.") from None


# -- writing ---------------------------------------------------------------------------------------
def _write_errors() -> tuple:
    """The exceptions a writer raises when the disk, not the program, fails."""
    errors = [OSError]
    with contextlib.suppress(ImportError):
        from rasterio.errors import RasterioError

        errors.append(RasterioError)
    with contextlib.suppress(ImportError):
        from fiona.errors import FionaError

        errors.append(FionaError)
    with contextlib.suppress(ImportError):
        from fiona._err import CPLE_BaseError

        errors.append(CPLE_BaseError)
    with contextlib.suppress(ImportError):
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    return tuple(errors)


class OutputFolder:
    """The output folder of one run, from its check to its switch: `with OutputFolder(config) as out:`.

    Entering checks the folder (check_output_folder), locks it against a second run, and removes
    what killed runs left beside it. `write(kind, fill)` stages the files `fill(folder)` writes,
    checks them, adds the manifest and switches the folder into place; leaving releases the lock.
    """

    def __init__(self, config, command: str = "forecast"):
        self.config, self.command = config, command
        self.path: Path | None = None
        self._lock: fileio.FolderLock | None = None

    def __enter__(self) -> OutputFolder:
        self.path = check_output_folder(self.config, self.command)
        self._existing = _nearest_existing(self.path.parent)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{self.config.out_dir} cannot be created ({fileio.reason(exc)}); "
                             "choose another output folder.") from None
        self._lock = fileio.FolderLock(self.path).acquire()
        try:
            self.started = time.time()
            fileio.remove_stale(self.path, self.started)
            check_output_folder(self.config, self.command)  # a result set aside may be back
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.release()
        if not self.path.exists():  # nothing written: the parent folders this run made go too
            folder = self.path.parent
            while folder != self._existing and folder.is_relative_to(self._existing):
                try:
                    folder.rmdir()
                except OSError:
                    break
                folder = folder.parent

    def write(self, kind: str, fill) -> None:
        """Stage the files that `fill(folder)` writes, check them, and switch them into place."""
        staged = fileio.make_staging(self.path)
        try:
            try:
                fill(staged)
                files = {p.name: p.stat().st_size for p in sorted(staged.iterdir())
                         if p.name != fileio.PART_MARKER}
                missing = set(OUTPUT_FILES[kind]) - set(files)
                if missing:
                    raise OSError(f"{_listing(missing)} missing after writing")
                manifest = {"schema_version": SCHEMA_VERSION, "kind": kind, "groundcast_version": __version__,
                            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "files": files}
                from .outputs import write_json

                write_json(staged / MANIFEST, manifest)
                check_output_folder(self.config, self.command)  # changed during the run?
                fileio.switch_into_place(staged, self.path)
            except _write_errors() as exc:
                raise InputError(f"Writing the results to {self.config.out_dir} failed "
                                 f"({fileio.reason(exc)}); nothing was written.") from exc
        finally:
            if staged.exists():
                shutil.rmtree(staged, ignore_errors=True)


def change_since_origin(fc) -> np.ndarray:
    """[Q, H, rows, cols] the forecast quantiles less the origin's level; NaN where there is no forecast."""
    with np.errstate(invalid="ignore"):
        change = fc.cells_mm - fc.cells_level_mm[None, None]
    change[:, ~np.isfinite(fc.cells_mm[len(fc.cells_mm) // 2])] = np.nan
    return change


def forecast_summary(config, scene, fc, timings: dict) -> dict:
    """summary.json of a forecast."""
    grid, points = scene.cube.grid, scene.points
    return {
        "schema_version": SCHEMA_VERSION,
        "groundcast_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "attribution": ATTRIBUTION,
        "inputs": {k: v for k, v in asdict(config).items() if k != "out_dir"},
        "product": points.product,
        "n_points": int(points.n_points),
        "observed_from": str(points.dates[0]),
        "observed_to": str(points.dates[-1]),
        "forecast_dates": [str(d) for d in fc.dates],
        # what the maps count from: cumulative maps from the first epoch, change maps from the origin
        "references": {"cumulative_since": str(points.dates[0]), "change_since": str(points.dates[-1])},
        "grid": {
            "crs": grid.crs,
            "transform": list(grid.transform)[:6],
            "width": grid.width,
            "height": grid.height,
            "cell_size_m": grid.cell_size_m,
        },
        "priors": {
            "elevation_source": scene.priors.elevation_source,
            "geology_classes": scene.priors.geology_classes,
            "soil_classes": scene.priors.soil_classes,
        },
        "model": asdict(fc.trained.model.config),
        "n_parameters": sum(p.numel() for p in fc.trained.model.parameters()),
        "scale_mm": fc.trained.scale_mm,
        "interval_scale": [round(float(f), 3) for f in fc.interval_scale],
        "variogram_range_m": fc.trained.model.variogram_range_m(),
        "training": fc.trained.log,
        "device": fc.trained.device,
        "timings_s": timings,
        "notes": list(scene.notes),  # what was repaired or dropped, one sentence each
    }


def write_forecast_folder(out: OutputFolder, config, scene, fc, timings: dict, progress=None) -> dict:
    """Write a forecast's files (docs/architecture.md lists them) into the locked folder `out`.

    `progress` hears of the series and the points as they are written (in this thread), and a
    cancel stops the writing between chunks, leaving nothing behind."""
    from concurrent.futures import ThreadPoolExecutor
    from .baselines import persistence, timefn_fit
    from .calibrate import exceedance_probability
    from .checkpoint import save_checkpoint
    from .outputs import Bands, write_band_stack, write_json, write_points_gpkg, write_series_store
    from .progress import NullProgress, check_cancel
    from .store import chunk_values

    grid, points = scene.cube.grid, scene.points
    summary = forecast_summary(config, scene, fc, timings)
    iso = summary["forecast_dates"]
    refs = summary["references"]
    level = fc.cells_level_mm

    progress = progress or NullProgress()

    def stage(start: float, end: float, message: str):
        def report(fraction: float) -> None:
            progress.progress(start + (end - start) * fraction, message)
            check_cancel(progress)
        return report

    def band(kind, b):  # one band of a map, from the forecast's own band: no whole-map copies
        check_cancel(progress)  # read from the raster thread: a cancel stops the maps too
        cells = np.asarray(fc.cells_mm[:, b], dtype=np.float32)
        known = np.isfinite(cells[1])
        if kind == "exceedance":
            out = exceedance_probability(cells, level, config.threshold_mm)
        elif kind == "interval90":
            out = cells[2] - cells[0]
        elif kind.startswith("change"):
            with np.errstate(invalid="ignore"):
                out = cells[{"change": 1, "change_q05": 0, "change_q95": 2}[kind]] - level
        else:
            out = cells[{"forecast": 1, "forecast_q05": 0, "forecast_q95": 2}[kind]]
        return np.where(known, out, np.nan).astype(np.float32)

    p05, p50, p95 = fc.points_mm[:, -1]  # the horizon's quantiles [N] for the points' layer
    p_exceed = exceedance_probability(fc.points_mm[:, -1], fc.points_level_mm, config.threshold_mm)
    fit_pts = timefn_fit(points.dates, points.displacement_mm, points.valid)
    step = max(1, chunk_values() // max(points.n_dates, 1))  # the series may be on disk: a slab at a time
    last_obs = np.concatenate([persistence(points.displacement_mm[i:i + step], points.valid[i:i + step])
                               for i in range(0, points.n_points, step)])
    design_fc = fit_pts.function.design(fc.dates, fit_pts.reference_date).T

    def fill(folder: Path) -> None:
        def write_raster(kind):
            name, unit, reference = RASTERS[kind]
            since = refs[f"{reference}_since"] if reference else None
            bands = Bands((len(iso), grid.height, grid.width), lambda b: band(kind, b))
            write_band_stack(folder / name, grid, bands, iso, unit=unit,
                             reference=_since(reference, since) if reference else None)

        def write_series():
            write_series_store(
                folder / SERIES,
                meta={"pid": points.ids.astype(str), "x": points.x, "y": points.y, "dates_obs": points.dates,
                      "dates_fc": fc.dates},
                per_point={
                    "obs_mm": lambda rows: np.where(points.valid[rows], points.displacement_mm[rows], np.nan),
                    "level_mm": fc.points_level_mm,
                    "q05_mm": lambda rows: fc.points_mm[0, :, rows].T,
                    "q50_mm": lambda rows: fc.points_mm[1, :, rows].T,
                    "q95_mm": lambda rows: fc.points_mm[2, :, rows].T,
                    "timefn_mm": lambda rows: fit_pts.coefficients[rows] @ design_fc,  # [N, H]
                    "persistence_mm": lambda rows: np.repeat(last_obs[rows, None], len(iso), 1),
                },
                n_points=points.n_points,
                # 14 of 23 mantissa bits: steps of 0.006 % (0.006 mm at 100 mm), far below the
                # 0.1 mm of the EGMS files, and the series then deflates fast at level 1
                keep={name: 14 for name in ("obs_mm", "q05_mm", "q50_mm", "q95_mm", "timefn_mm")},
                progress=stage(0.0, 0.7, "writing results: time series"),
            )

        def write_rasters():  # one after another: GDAL's error handling is not safe across threads
            for kind in RASTERS:
                write_raster(kind)

        # GDAL writes the maps while the series compresses here (zlib, without the GIL); leaving the
        # block waits for the maps, also after a cancel, before the staging folder is removed
        with ThreadPoolExecutor(1, thread_name_prefix="groundcast-maps") as pool:
            maps = pool.submit(write_rasters)
            write_series()
            progress.progress(0.7, "writing results: maps")
            maps.result()
        write_points_gpkg(folder / POINTS, points.x, points.y, points.crs, {
            "pid": points.ids.astype(str),
            "velocity_mm_yr": fit_pts.coefficient("velocity"),
            "last_obs_mm": last_obs,
            "forecast_mm": p50,
            "change_mm": p50 - fc.points_level_mm,
            "q05_mm": p05,
            "q95_mm": p95,
            "interval90_mm": p95 - p05,
            "p_exceed": p_exceed,
            "horizon_date": np.full(points.n_points, iso[-1]),
        }, progress=stage(0.75, 0.98, "writing results: points"))
        save_checkpoint(folder / MODEL, fc.trained.model, {
            "config": asdict(fc.trained.model.config),
            "scale_mm": fc.trained.scale_mm,
            "interval_scale": fc.interval_scale.tolist(),
            "grid": summary["grid"],
            "priors": summary["priors"],
        })
        write_json(folder / SUMMARY, summary)

    out.write("forecast", fill)
    return summary


def write_backtest_folder(out: OutputFolder, metrics: dict, examples: list) -> dict:
    """Write a backtest's metrics.json and backtest.png into the locked folder `out`."""
    from .outputs import plot_backtest, write_json

    metrics = {"schema_version": SCHEMA_VERSION, **metrics}

    def fill(folder: Path) -> None:
        write_json(folder / METRICS, metrics)
        plot_backtest(folder / BACKTEST_PLOT, metrics, examples)

    out.write("backtest", fill)
    return metrics


# -- reading ------------------------------------------------------------------------------------------
def _npz_array(path: Path, name: str):
    """One array of an uncompressed npz, mapped from disk: rows are read only when indexed."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name + ".npy")
        if info.compress_type != zipfile.ZIP_STORED:
            with archive.open(info) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        # the local header: 30 bytes, then the name and the extra field, whose lengths end it
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(
            local[28:30], "little")
        f.seek(start)
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(f))
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError(f"{name} holds Python objects")
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


class ForecastRun:
    """A result folder, read through its manifest: `ForecastRun.open(folder)`.

    Gives the summary (a forecast) or the metrics (a backtest), the rasters' paths, the forecast
    dates and the dates the maps count from, and one point's series without loading the others.
    """

    def __init__(self, path: Path, manifest: dict):
        self.path, self.manifest = path, manifest
        self.kind: str = manifest.get("kind", "forecast")
        self.files: dict = manifest["files"]

    @classmethod
    def open(cls, folder, kind: str | None = None) -> ForecastRun:
        """The result in `folder`; InputError, one sentence, for anything else (an older version too)."""
        path = Path(folder)
        if not path.is_dir():
            raise InputError(f"{path}: no such result folder.")
        manifest = read_manifest(path)
        if manifest is None:
            if any((path / name).exists() for name in (SUMMARY, METRICS)):
                raise InputError(f"{path} was written by an older GroundCast, whose results this version "
                                 "does not read; run the forecast again.")
            raise InputError(f"{path} is not a GroundCast result folder (it has no {MANIFEST}).")
        version = manifest.get("schema_version")
        if not isinstance(version, int) or version < OLDEST_READABLE_SCHEMA:
            raise InputError(f"{path} was written by an older GroundCast, whose results this version "
                             "does not read; run the forecast again.")
        if version > SCHEMA_VERSION:
            raise InputError(f"{path} was written by a newer GroundCast; update the plugin to read it.")
        run = cls(path, manifest)
        if kind is not None and run.kind != kind:
            raise InputError(f"{path} holds a {run.kind}, not a {kind}.")
        return run

    def file(self, name: str) -> Path | None:
        """The path of one of the folder's files, None when this result has none of that name."""
        return self.path / name if name in self.files else None

    def _json(self, name: str) -> dict | None:
        path = self.file(name)
        if path is None:
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path} cannot be read ({fileio.reason(exc)}).") from None

    @cached_property
    def summary(self) -> dict | None:
        return self._json(SUMMARY)

    @cached_property
    def metrics(self) -> dict | None:
        return self._json(METRICS)

    @property
    def rasters(self) -> dict:
        """{kind: path} of the rasters this result has (RASTERS' kinds)."""
        return {kind: self.path / name for kind, (name, _, _) in RASTERS.items() if name in self.files}

    def raster(self, kind: str) -> Path | None:
        return self.rasters.get(kind)

    @property
    def points_path(self) -> Path | None:
        return self.file(POINTS)

    @property
    def model_path(self) -> Path | None:
        return self.file(MODEL)

    @property
    def backtest_plot(self) -> Path | None:
        return self.file(BACKTEST_PLOT)

    @property
    def forecast_dates(self) -> np.ndarray:
        return np.array((self.summary or {}).get("forecast_dates", []), dtype="datetime64[D]")

    @property
    def reference_dates(self) -> dict:
        """{"cumulative": first epoch, "change": forecast origin} as datetime64[D]."""
        refs = (self.summary or {}).get("references", {})
        return {"cumulative": np.datetime64(refs["cumulative_since"], "D"),
                "change": np.datetime64(refs["change_since"], "D")} if refs else {}

    def reference(self, kind: str) -> str | None:
        """"change since 2024-12-25", "cumulative since 2020-01-03", or None for a raster kind."""
        reference = RASTERS[kind][2]
        dates = self.reference_dates
        return _since(reference, dates[reference]) if reference and dates else None

    @property
    def threshold_mm(self) -> float | None:
        return ((self.summary or {}).get("inputs") or {}).get("threshold_mm")

    @property
    def horizons_days(self) -> list:
        return list((self.metrics or {}).get("horizons_days", []))

    # -- the points' series
    def _series_array(self, name: str):
        path = self.file(SERIES)
        if path is None:
            raise InputError(f"{self.path} holds no {SERIES}.")
        try:
            return _npz_array(path, name)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise InputError(f"{path} cannot be read ({fileio.reason(exc)}).") from None

    @cached_property
    def pids(self) -> np.ndarray:
        return np.asarray(self._series_array("pid")).astype(str)

    @cached_property
    def xy(self) -> tuple:
        return (np.asarray(self._series_array("x"), dtype=np.float64),
                np.asarray(self._series_array("y"), dtype=np.float64))

    @property
    def n_points(self) -> int:
        return len(self.pids)

    def index_of(self, pid) -> int | None:
        hits = np.flatnonzero(self.pids == str(pid))
        return int(hits[0]) if hits.size else None

    @cached_property
    def series_dates(self) -> tuple:
        """(observation dates [T], forecast dates [H]) of series.npz, datetime64[D]."""
        days = [np.asarray(self._series_array(k)).astype("datetime64[D]") for k in ("dates_obs", "dates_fc")]
        return days[0], days[1]

    @cached_property
    def _chunk_points(self) -> int | None:
        """Points per member of a chunked series store (outputs.write_series_store); None for the
        one-array-per-name series.npz of schema 2."""
        path = self.file(SERIES)
        if path is None:
            raise InputError(f"{self.path} holds no {SERIES}.")
        try:
            with zipfile.ZipFile(path) as archive:
                chunked = "chunk_points.npy" in archive.NameToInfo
        except (OSError, zipfile.BadZipFile) as exc:
            raise InputError(f"{path} cannot be read ({fileio.reason(exc)}).") from None
        return int(self._series_array("chunk_points")) if chunked else None

    @cached_property
    def _series_layout(self) -> dict:
        """The chunked store's layout (outputs.write_series_store): the row shape of each series."""
        try:
            return json.loads(str(self._series_array("series_layout")[()]))
        except (KeyError, ValueError) as exc:
            raise InputError(f"{self.file(SERIES)} cannot be read ({fileio.reason(exc)}).") from None

    def series_values(self, key: str, rows=None) -> np.ndarray:
        """series.npz's `key` ([N, T] or [N, H]) at `rows` (an index, a mask or None for all) as float64.

        From a chunked store only the members holding those rows are read and decompressed.
        """
        chunk = self._chunk_points
        if chunk is None:
            array = self._series_array(key)
            return np.asarray(array if rows is None else array[rows], dtype=np.float64)
        everything = np.arange(self.n_points)
        index = everything if rows is None else everything[rows]
        needed = np.unique(np.atleast_1d(index) // chunk)
        path = self.file(SERIES)
        from .outputs import unshuffle

        try:
            row_shape = self._series_layout["row_shapes"][key]
            with zipfile.ZipFile(path) as archive:
                parts = []
                for c in needed.tolist():
                    with archive.open(f"{key}/{c:07d}.npy") as member:
                        stored = np.lib.format.read_array(member, allow_pickle=False)
                    parts.append(unshuffle(stored, row_shape) if key in self._series_layout["shuffled"]
                                 else stored)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise InputError(f"{path} cannot be read ({fileio.reason(exc)}).") from None
        if not parts:
            return np.zeros((0,), np.float64)
        block = np.concatenate(parts)
        position = np.searchsorted(needed, index // chunk) * chunk + index % chunk
        return np.asarray(block[position], dtype=np.float64)

    def series(self, index: int | None = None, pid=None) -> dict:
        """One point's history and forecast, in the form engine.outputs.plot_series draws."""
        if pid is not None:
            index = self.index_of(pid)
            if index is None:
                raise InputError(f"{self.path}: no point {pid!r} in {SERIES}.")
        if index is None or not 0 <= index < self.n_points:
            raise InputError(f"{self.path}: no point number {index} in {SERIES}.")
        dates_obs, dates_fc = self.series_dates
        example = {"pid": self.pids[index], "label": f"Point {self.pids[index]}", "dates_obs": dates_obs,
                   "dates_fc": dates_fc, "x": float(self.xy[0][index]), "y": float(self.xy[1][index])}
        for key in SERIES_KEYS:
            example[key] = self.series_values(key, index)
        return example

