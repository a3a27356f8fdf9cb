"""Hand QGIS layers to the engine, which reads plain files only.

A layer backed by one plain file goes as its path; anything else (memory layers,
subsets, selections, one layer out of a multi-layer GeoPackage, web services) is
written to a temporary GeoPackage or GeoTIFF first. The other way round, a points file
the engine reads opens as a QGIS layer by the engine's own column rules (engine.definitions),
in a task so that a large burst never freezes QGIS.
"""
from __future__ import annotations

import os
import re
import uuid

from qgis.core import (
    QgsCoordinateTransformContext,
    QgsProviderRegistry,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsTask,
    QgsVectorFileWriter,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import pyqtSignal

# Formats the engine reads directly (fiona/rasterio/its EGMS reader).
VECTOR_SUFFIXES = {".gpkg", ".shp", ".geojson", ".json", ".csv", ".zip", ".fgb"}
RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".asc", ".img"}


class LayerExportError(RuntimeError):
    pass


def _ogr_layer_count(path: str) -> int:
    try:
        from osgeo import ogr
    except ImportError:  # no GDAL bindings: assume the worst and export
        return 2
    ds = ogr.Open(path)
    return ds.GetLayerCount() if ds is not None else 0


def plain_file(layer) -> str | None:
    """The file behind `layer` when the engine can read that file as the layer shows it."""
    if isinstance(layer, QgsRasterLayer):
        if layer.providerType() != "gdal":
            return None
        path = QgsProviderRegistry.instance().decodeUri("gdal", layer.source()).get("path", "")
        ok = os.path.isfile(path) and os.path.splitext(path)[1].lower() in RASTER_SUFFIXES
        return path if ok else None
    if isinstance(layer, QgsVectorLayer):
        if layer.providerType() != "ogr" or layer.subsetString():
            return None
        parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
        path = parts.get("path", "")
        if not os.path.isfile(path) or os.path.splitext(path)[1].lower() not in VECTOR_SUFFIXES:
            return None
        # the engine opens a file's first layer; a named layer among several needs exporting
        named = parts.get("layerName") or parts.get("layerId") not in (None, 0, "")
        if named and _ogr_layer_count(path) > 1:
            return None
        return path
    return None


def _safe_name(layer) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", layer.name() or "layer").strip("_") or "layer"
    return f"{stem[:40]}_{uuid.uuid4().hex[:8]}"


def layer_to_path(layer, tmp_dir: str, selected_only: bool = False) -> str:
    """Path of a file holding `layer`'s data: its own file when plain, else a temporary copy in tmp_dir."""
    if layer is None or not layer.isValid():
        raise LayerExportError(f"layer {getattr(layer, 'name', lambda: '?')()!r} is not valid")
    selected_only = selected_only and isinstance(layer, QgsVectorLayer) and layer.selectedFeatureCount() > 0
    if not selected_only:
        path = plain_file(layer)
        if path:
            return path
    os.makedirs(tmp_dir, exist_ok=True)
    if isinstance(layer, QgsVectorLayer):
        return _export_vector(layer, tmp_dir, selected_only)
    if isinstance(layer, QgsRasterLayer):
        return _export_raster(layer, tmp_dir)
    raise LayerExportError(f"layer {layer.name()!r} is neither a vector nor a raster layer")


def _export_vector(layer: QgsVectorLayer, tmp_dir: str, selected_only: bool) -> str:
    out = os.path.join(tmp_dir, _safe_name(layer) + ".gpkg")
    opts = QgsVectorFileWriter.SaveVectorOptions()
    opts.driverName = "GPKG"
    opts.layerName = "layer"
    opts.fileEncoding = "UTF-8"
    opts.onlySelectedFeatures = selected_only
    # keep the layer's CRS: the engine reprojects itself and EGMS points must stay in EPSG:3035
    err, msg, _, _ = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, out, QgsCoordinateTransformContext(), opts)
    if err != QgsVectorFileWriter.NoError:
        raise LayerExportError(f"could not export layer {layer.name()!r} to {out}: {msg}")
    return out


def _export_raster(layer: QgsRasterLayer, tmp_dir: str) -> str:
    out = os.path.join(tmp_dir, _safe_name(layer) + ".tif")
    provider = layer.dataProvider()
    pipe = QgsRasterPipe()
    if not pipe.set(provider.clone()):
        raise LayerExportError(f"could not read raster layer {layer.name()!r}")
    writer = QgsRasterFileWriter(out)
    writer.setOutputFormat("GTiff")
    err = writer.writeRaster(pipe, provider.xSize(), provider.ySize(), provider.extent(), layer.crs())
    if err != QgsRasterFileWriter.NoError:
        raise LayerExportError(f"could not export raster layer {layer.name()!r} to {out} (error {err})")
    return out



# -- files the engine reads, opened as QGIS point layers -------------------------------------
SOURCE_FILE_KEY = "groundcast/source_file"  # layer property: the file the layer was opened from
POINT_FILE_SUFFIXES = (".zip", ".csv", ".txt")  # read as EGMS CSV by the engine


class PointsFileError(ValueError):
    """A file the dock will not open as points; the message is one sentence in the user's words."""


def date_fields(layer) -> list:
    """The dates of a vector layer's displacement fields (the engine's date-column rule), sorted."""
    import datetime as dt

    from ..engine.definitions import date_of_column

    if not isinstance(layer, QgsVectorLayer):
        return []
    dates = []
    for field in layer.fields():
        iso = date_of_column(field.name())
        if iso:
            try:
                dates.append(dt.date.fromisoformat(iso))
            except ValueError:
                continue
    return sorted(dates)


def _csv_members(archive) -> list:
    # the members the engine considers (no folders, hidden files or macOS resource forks)
    return [n for n in archive.namelist()
            if n.lower().endswith(".csv") and not n.endswith("/")
            and not os.path.basename(n).startswith(".") and "__MACOSX" not in n]


def _header(raw) -> tuple:
    """(column names, delimiter) of a CSV's first non-empty line, as the engine splits it."""
    line = b""
    while not line.strip():
        line = raw.readline(1 << 20)
        if not line:
            break
    text = line.decode("utf-8-sig", "replace")
    delimiter = ";" if text.count(";") > text.count(",") else ","
    return [h.strip().strip('"') for h in text.split(delimiter)], delimiter


def _coordinates(names: list, path: str) -> tuple:
    from ..engine.definitions import COORDINATE_PAIRS, EGMS_CRS, coordinate_columns

    found = coordinate_columns(names)
    if found is None:
        pairs = ", ".join(f"{x}/{y}" for x, y, _ in COORDINATE_PAIRS)
        raise PointsFileError(f"{os.path.basename(path)} has no coordinate columns ({pairs}), "
                              "so it is not an EGMS file.")
    x, y, crs = found
    if crs is None:
        prj = os.path.splitext(path)[0] + ".prj"
        if not path.lower().endswith(".zip") and os.path.isfile(prj):
            from qgis.core import QgsCoordinateReferenceSystem

            with open(prj, encoding="utf-8", errors="replace") as handle:
                sidecar = QgsCoordinateReferenceSystem.fromWkt(handle.read())
            crs = sidecar.authid() or sidecar.toWkt() if sidecar.isValid() else None
    return x, y, crs or EGMS_CRS


def load_points_layer(path: str) -> QgsVectorLayer:
    """A file the engine reads as points (EGMS .zip/.csv, or any point layer with date fields) as a
    QGIS layer, not yet in the project. Raises PointsFileError for a file the engine would refuse."""
    import zipfile

    from qgis.core import QgsCoordinateReferenceSystem, QgsWkbTypes
    from qgis.PyQt.QtCore import QUrl

    path = os.path.abspath(path)
    name = os.path.basename(path)
    stem, suffix = os.path.splitext(name)
    if not os.path.isfile(path):
        raise PointsFileError(f"{name} does not exist.")
    if suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                members = _csv_members(archive)
                if len(members) != 1:
                    raise PointsFileError(f"{name} holds {len(members) or 'no'} CSV files; an EGMS download "
                                          "holds one.")
                with archive.open(members[0]) as raw:
                    names, delimiter = _header(raw)
        except zipfile.BadZipFile:
            raise PointsFileError(f"{name} is not a readable zip file.") from None
        x, y, crs = _coordinates(names, path)
        separator = "SEMICOLON" if delimiter == ";" else "COMMA"
        # HEADERS=YES: GDAL's header guess fails when most column names are numbers (the dates)
        uri = (f"/vsizip/{path}/{members[0]}|option:HEADERS=YES|option:SEPARATOR={separator}"
               f"|option:X_POSSIBLE_NAMES={x}|option:Y_POSSIBLE_NAMES={y}|option:AUTODETECT_TYPE=YES")
        layer = QgsVectorLayer(uri, stem, "ogr")
        layer.setCrs(QgsCoordinateReferenceSystem(crs))  # a CSV carries no CRS of its own
    elif suffix.lower() in POINT_FILE_SUFFIXES:
        try:
            with open(path, "rb") as raw:
                names, delimiter = _header(raw)
        except OSError as exc:
            raise PointsFileError(f"{name} cannot be read ({exc.strerror or exc}).") from None
        x, y, crs = _coordinates(names, path)
        uri = (f"{QUrl.fromLocalFile(path).toString()}?type=csv&delimiter={delimiter}&xField={x}&yField={y}"
               f"&crs={crs}&detectTypes=yes&geomType=point&spatialIndex=yes")
        layer = QgsVectorLayer(uri, stem, "delimitedtext")
    else:
        layer = QgsVectorLayer(path, stem, "ogr")
        if not layer.isValid() or layer.geometryType() != QgsWkbTypes.PointGeometry:
            raise PointsFileError(f"{name} holds no points: open an EGMS download (.zip or .csv) or a "
                                  "point file with date fields.")
    if not layer.isValid():
        raise PointsFileError(f"{name} could not be opened as a point layer.")
    if not date_fields(layer):
        raise PointsFileError(f"{name} has no date columns (named yyyymmdd or Dyyyymmdd), so it holds no "
                              "displacement series.")
    layer.setCustomProperty(SOURCE_FILE_KEY, path)
    return layer


def points_file(layer, tmp_dir: str) -> str:
    """A file the engine reads: the file itself when the layer shows all of it, else a copy."""
    from qgis.PyQt.QtCore import QUrl

    if not layer.subsetString():
        source = layer.customProperty(SOURCE_FILE_KEY)
        if source and os.path.isfile(source):
            return source
        if layer.providerType() == "delimitedtext":
            path = QUrl(layer.source().split("?")[0]).toLocalFile()
            if os.path.isfile(path):
                return path
        match = re.match(r"^/vsizip/(.+?\.zip)(/|$)", layer.source(), re.I)
        if match and os.path.isfile(match.group(1)):
            return match.group(1)
    return layer_to_path(layer, tmp_dir)


class LoadPointsTask(QgsTask):
    """Opens a points file in the background: a large EGMS burst takes seconds to scan.

    Signals, in the GUI thread: loaded(layer) with the layer not yet in the project;
    failed(str) with one sentence.
    """

    loaded = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, path: str):
        super().__init__(f"GroundCast: opening {os.path.basename(path)}", QgsTask.Flag.CanCancel)
        self.path = path
        self.layer = None
        self.error = ""

    def run(self) -> bool:
        from qgis.core import QgsApplication

        try:
            layer = load_points_layer(self.path)
            layer.featureCount()  # the scan that would otherwise freeze the GUI thread
        except PointsFileError as exc:
            self.error = str(exc)
            return False
        except Exception as exc:  # noqa: BLE001 (a worker must never raise into QGIS)
            self.error = f"{os.path.basename(self.path)} could not be opened ({type(exc).__name__}: {exc})."
            return False
        layer.moveToThread(QgsApplication.instance().thread())  # the project lives in the GUI thread
        self.layer = layer
        return not self.isCanceled()

    def finished(self, result: bool) -> None:  # GUI thread
        if result and self.layer is not None:
            self.loaded.emit(self.layer)
        elif not self.isCanceled():
            self.failed.emit(self.error or f"{os.path.basename(self.path)} could not be opened.")
