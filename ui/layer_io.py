"""Hand QGIS layers to the engine, which reads plain files only.

A layer backed by one plain file goes as its path; anything else (memory layers,
subsets, selections, one layer out of a multi-layer GeoPackage, web services) is
written to a temporary GeoPackage or GeoTIFF first.
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
    QgsVectorFileWriter,
    QgsVectorLayer,
)

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

