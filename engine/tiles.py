"""A region of many input tiles on a Dask cluster: one forecast per tile and a VRT mosaic over them.

`python -m engine forecast-tiles --points A.zip B.zip ... --out REGION` runs `run_forecast` on each
file as one Dask task (a LocalCluster of worker processes by default, `--scheduler tcp://host:8786`
for a running cluster: docs/scale.md). The region folder holds one result folder per tile, named
after its file, and one VRT per raster kind (change.vrt, forecast.vrt, ...) over the tiles' GeoTIFFs,
so a GIS opens the region as one layer; the VRTs point at the tiles by relative paths.

The region is written like a single result (engine.results): staged in a hidden folder beside
the destination and switched into place when every tile is done, so a failed or cancelled run
leaves no output. Workers write their tiles into the staged folder, so on a real cluster the output
folder must be on a file system every worker sees; a worker notices the staged folder is gone
and stops within a second.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, fileio
from .errors import Cancelled, InputError
from .progress import NullProgress, check_cancel
from .results import MANIFEST as REGION_MANIFEST  # the region's manifest has the results' name
from .results import SCHEMA_VERSION

REGION_KIND = "region"
POLL_S = 0.5  # how often the client looks for finished tiles and for a cancel
WORKER_POLL_S = 1.0  # how often a worker's run checks that the region is still wanted


def tile_names(paths) -> list[str]:
    """One folder name per input file: its name without the extension, made unique."""
    names, seen = [], {}
    for path in paths:
        stem = Path(path).name
        for suffix in (".zip", ".csv", ".txt", ".gpkg", ".shp"):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        stem = re.sub(r"[^\w.-]+", "_", stem).strip("._") or "tile"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


class _WhileStaged:
    """A worker's Progress: cancelled once the region's staged folder is gone (the client cancelled)."""

    def __init__(self, staged: str):
        self.staged, self.checked, self.gone = Path(staged), 0.0, False

    def progress(self, fraction: float, message: str) -> None:
        pass

    def should_cancel(self) -> bool:
        now = time.monotonic()
        if not self.gone and now - self.checked >= WORKER_POLL_S:
            self.checked, self.gone = now, not self.staged.is_dir()
        return self.gone


def forecast_tile(config, staged: str, torch_threads: int | None = None) -> dict:
    """One tile's forecast into the staged region (a Dask task); returns its summary's key facts."""
    from .run import run_forecast

    if torch_threads:
        import torch

        torch.set_num_threads(int(torch_threads))
    progress = _WhileStaged(staged)
    check_cancel(progress)
    summary = run_forecast(config, progress=progress, log=lambda message: None)
    return {"forecast_dates": summary["forecast_dates"], "n_points": summary["n_points"],
            "grid": summary["grid"]}


def check_region_folder(out_dir, inputs) -> Path:
    """The region's folder, resolved; InputError unless it is new, empty or an earlier region."""
    given = Path(str(out_dir)).expanduser()
    out = Path(os.path.abspath(given)).resolve()
    for path in inputs:
        if out in Path(path).resolve().parents:
            raise InputError(f"{given}: the output folder holds the input file {path}; choose another "
                             "output folder.")
    if out.exists() and not out.is_dir():
        raise InputError(f"{given} is a file, not a folder; choose a folder for the results.")
    if out.is_dir() and any(out.iterdir()):
        try:
            manifest = json.loads((out / REGION_MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = None
        names = {p.name for p in out.iterdir()}
        listed = set((manifest or {}).get("files", {})) | {REGION_MANIFEST}
        if not (isinstance(manifest, dict) and manifest.get("kind") == REGION_KIND and names <= listed):
            raise InputError(f"{given} holds files that are not a GroundCast region result; choose a new or "
                             "empty folder.")
    return out


def _cluster(workers: int | None, scheduler: str | None):
    """(client, cluster or None): a LocalCluster of worker processes unless `scheduler` is given."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("forecast-tiles needs Dask distributed; install it with "
                         "pip install \"dask[distributed]\".") from None
    if scheduler:
        try:
            return Client(scheduler, timeout="30s"), None
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--scheduler {scheduler}: no Dask scheduler answers there ({exc}).") from None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster), cluster


def write_mosaics(staged: Path, names: list[str], kinds: dict, log=print) -> dict:
    """One VRT per raster kind over the tiles' GeoTIFFs, paths relative to the VRT: {file: size}."""
    from osgeo import gdal

    written = {}
    for kind, (file_name, _, _) in kinds.items():
        sources = [staged / name / file_name for name in names if (staged / name / file_name).is_file()]
        if not sources:
            continue
        vrt = staged / (Path(file_name).stem + ".vrt")
        dataset = gdal.BuildVRT(str(vrt), [str(s) for s in sources])
        if dataset is None:
            raise OSError(f"{vrt.name}: GDAL could not build the mosaic ({gdal.GetLastErrorMsg()})")
        first = gdal.Open(str(sources[0]))  # the band dates, as QGIS lists them
        for b in range(1, dataset.RasterCount + 1):
            dataset.GetRasterBand(b).SetDescription(first.GetRasterBand(b).GetDescription())
        first = None
        dataset = None  # written on close
        text = vrt.read_text(encoding="utf-8")
        prefix = re.escape(str(staged) + os.sep)
        text = re.sub(r'relativeToVRT="0">' + prefix, 'relativeToVRT="1">', text)
        vrt.write_text(text, encoding="utf-8")  # the region's own paths: it can move as one folder
        written[vrt.name] = vrt.stat().st_size
    return written


def run_tiles(config, points: list, workers: int | None = None, scheduler: str | None = None,
              progress=None, log=print) -> dict:
    """Forecast every file of `points` as one Dask task, into config.out_dir; returns the region manifest.

    `config` holds the run's options (its `points` is replaced per tile). Every tile must succeed:
    a tile's error (one sentence, naming its file) fails the region and nothing is written.
    """
    from .results import RASTERS

    progress = progress or NullProgress()
    if not points:
        raise InputError("--points: give at least one points file.")
    for path in points:
        if not Path(path).is_file():
            raise InputError(f"{path}: the file does not exist.")
    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers}: choose at least 1.")
    out = check_region_folder(config.out_dir, points)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = tile_names(points)
    lock = fileio.FolderLock(out).acquire()
    staged = None
    client = cluster = None
    futures = []
    try:
        fileio.remove_stale(out, time.time())
        staged = fileio.make_staging(out)
        progress.progress(0.0, "starting the Dask workers")
        client, cluster = _cluster(workers if workers else None, scheduler)
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or 1)
        torch_threads = None if scheduler else max(1, (os.cpu_count() or 1) // n_workers)
        for path, name in zip(points, names):
            tile_config = replace(config, points=str(Path(path).resolve()), out_dir=str(staged / name))
            futures.append(client.submit(forecast_tile, tile_config, str(staged), torch_threads,
                                         key=f"groundcast-{name}-{staged.name}", pure=False))
        done: dict = {}
        while len(done) < len(futures):
            check_cancel(progress)
            for name, future in zip(names, futures):
                if name not in done and future.done():
                    done[name] = future.result()  # a tile's error is raised here, as it was raised there
                    progress.progress(len(done) / len(futures) * 0.95,
                                      f"{len(done)} of {len(futures)} tiles forecast")
            time.sleep(POLL_S)
        dates = {tuple(facts["forecast_dates"]) for facts in done.values()}
        files = {name: "folder" for name in names}
        if len(dates) == 1:
            files.update(write_mosaics(staged, names, RASTERS, log))
        else:
            log("The tiles end on different dates, so their forecast dates differ: no mosaic was made.")
        manifest = {"schema_version": SCHEMA_VERSION, "kind": REGION_KIND, "groundcast_version": __version__,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "tiles": {name: str(path) for name, path in zip(names, points)},
                    "inputs": {k: v for k, v in asdict(config).items() if k not in ("out_dir", "points")},
                    "files": files}
        (staged / REGION_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        check_cancel(progress)
        fileio.switch_into_place(staged, out)
        progress.progress(1.0, "done")
        return manifest
    except BaseException:
        _abandon(client, futures, staged)
        raise
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()  # ends the local workers, and with them any run still going
        if staged is not None and staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
        lock.release()


def _abandon(client, futures, staged: Path | None) -> None:
    """Cancel the tiles: pending ones are dropped, running ones see the staged folder go and stop."""
    if staged is not None:
        shutil.rmtree(staged, ignore_errors=True)
    if client is None or not futures:
        return
    try:
        client.cancel(futures)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(f.done() or f.cancelled() for f in futures):
            time.sleep(0.2)
    except Exception:  # noqa: BLE001 - the cluster may be gone already; the folder is what matters
        pass
    if staged is not None:
        shutil.rmtree(staged, ignore_errors=True)  # what a stopping run made meanwhile


__all__ = ["Cancelled", "run_tiles", "tile_names", "forecast_tile", "write_mosaics"]
