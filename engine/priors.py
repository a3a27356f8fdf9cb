"""Static maps on the analysis grid: elevation, slope, aspect, geology and soil classes."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.enums import Resampling
from rasterio.crs import CRS
from rasterio.errors import CRSError, RasterioError
from rasterio.features import rasterize
from rasterio.warp import reproject, transform_bounds
from shapely.geometry import box, shape

from .crs import crs_string, same_crs, transform_geometry
from .errors import InputError
from .fileio import atomic_dir, reason
from .grid import Grid, grid_values
from .progress import check_cancel, scaled

FLAT_SLOPE_DEG = 0.01   # below this the aspect is noise, so it is left NaN
NODATA_FLOAT = -9999.0  # nodata of the float GeoTIFFs (NaN in memory)
_MAX_CLASSES = np.iinfo(np.int16).max
ELEVATION_RANGE_M = (-1000.0, 9000.0)  # beyond this a DEM value is an undeclared no-data code or inf
_FEATURES_PER_CANCEL_CHECK = 1000


@dataclass
class Priors:
    grid: Grid
    elevation_m: np.ndarray      # [H, W] float32, NaN unknown
    slope_deg: np.ndarray        # [H, W] float32
    aspect_deg: np.ndarray       # [H, W] float32, 0 = north, clockwise; NaN on flat cells
    geology: np.ndarray          # [H, W] int16, 0 = no data, k = geology_classes[k-1]
    geology_classes: list[str]
    soil: np.ndarray             # [H, W] int16, 0 = no data, k = soil_classes[k-1]
    soil_classes: list[str]
    elevation_source: str        # "dem", "egms_height" or "none"
    notes: list[str] = field(default_factory=list)  # what was repaired, one sentence each


def build_priors(grid: Grid, *, dem=None, geology=None, geology_field=None, soil=None, soil_field=None,
                 points=None, progress=None) -> Priors:
    """Every prior is optional. Elevation comes from the DEM, else from the EGMS point heights.

    What was repaired (DEM cells with infinite or impossible values taken as no data, invalid
    polygons made valid) is said in `Priors.notes`, one sentence each.
    """
    notes: list[str] = []
    if dem is not None:
        elevation, source = _resample_dem(Path(dem), grid, notes), "dem"
    else:
        elevation, source = _egms_heights(points, grid)
    check_cancel(progress)
    slope, aspect = slope_aspect(elevation, grid.cell_size_m)
    if progress is not None:
        progress.progress(0.4, "Elevation, slope and aspect")
    geology_codes, geology_classes = _classes_or_empty(geology, geology_field, grid, "geology",
                                                       scaled(progress, 0.4, 0.7), notes)
    soil_codes, soil_classes = _classes_or_empty(soil, soil_field, grid, "soil", scaled(progress, 0.7, 1.0),
                                                 notes)
    return Priors(grid=grid, elevation_m=elevation, slope_deg=slope, aspect_deg=aspect,
                  geology=geology_codes, geology_classes=geology_classes, soil=soil_codes,
                  soil_classes=soil_classes, elevation_source=source, notes=notes)


def slope_aspect(elevation_m: np.ndarray, cell_size_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Slope (degrees) and aspect (degrees clockwise from north, the way the slope faces).

    Central differences where both neighbours are known, one-sided where only one is, NaN where
    neither is; row 0 is the north edge.
    """
    z = np.asarray(elevation_m, dtype=np.float64)
    z = np.where(np.isfinite(z), z, np.nan)  # inf is no data, never a slope
    dz_east = _derivative(z, axis=1) / cell_size_m
    dz_north = -_derivative(z, axis=0) / cell_size_m  # rows run north to south
    slope = np.degrees(np.arctan(np.hypot(dz_east, dz_north)))
    # The slope faces down the gradient: arctan2(east, north) of -gradient is clockwise from north.
    aspect = np.degrees(np.arctan2(-dz_east, -dz_north)) % 360.0
    aspect[~(slope >= FLAT_SLOPE_DEG)] = np.nan
    return slope.astype(np.float32), aspect.astype(np.float32)


def save_priors(priors: Priors, out_dir) -> dict[str, Path]:
    """Write elevation/slope/aspect GeoTIFFs and, when present, geology/soil class GeoTIFFs with a
    <name>_classes.csv table beside each; all or nothing. Returns {name: final path}."""
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    with atomic_dir(out_dir) as tmp:
        for name, values, unit in (("elevation", priors.elevation_m, "m"),
                                   ("slope", priors.slope_deg, "degree"),
                                   ("aspect", priors.aspect_deg, "degree")):
            _write_float(tmp / f"{name}.tif", priors.grid, values, name, unit, priors.elevation_source)
            written[name] = out_dir / f"{name}.tif"
        for name, codes, classes in (("geology", priors.geology, priors.geology_classes),
                                     ("soil", priors.soil, priors.soil_classes)):
            if not classes:
                continue
            _write_classes(tmp / f"{name}.tif", priors.grid, codes, classes, name)
            with open(tmp / f"{name}_classes.csv", "w", newline="", encoding="utf-8") as table:
                writer = csv.writer(table)
                writer.writerow(["code", "name"])
                writer.writerows((k, c) for k, c in enumerate(classes, start=1))
            written[name] = out_dir / f"{name}.tif"
            written[f"{name}_classes"] = out_dir / f"{name}_classes.csv"
    return written


# ---------------------------------------------------------------------------- elevation


def _resample_dem(path: Path, grid: Grid, notes: list[str]) -> np.ndarray:
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputError(f"DEM {path}: the raster has no coordinate reference system.")
            grid_box = transform_bounds(grid.crs, src.crs, *grid.bounds, densify_pts=21)
            if not shapely.intersects(box(*grid_box), box(*src.bounds)):
                raise InputError(f"DEM {path}: the raster does not overlap the grid.")
            elevation = np.full(grid.shape, np.nan, dtype=np.float32)
            reproject(source=rasterio.band(src, 1), destination=elevation, src_nodata=src.nodata,
                      dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=np.nan,
                      resampling=Resampling.bilinear)
    except (RasterioError, CRSError, OSError) as exc:
        raise InputError(f"DEM {path}: cannot be read as a raster ({reason(exc)}).") from None
    low, high = ELEVATION_RANGE_M
    with np.errstate(invalid="ignore"):
        impossible = ~np.isnan(elevation) & ~((elevation >= low) & (elevation <= high))
    if impossible.any():
        n_infinite = int(np.isinf(elevation).sum())
        elevation[impossible] = np.nan
        what = "infinite or " if n_infinite else ""
        notes.append(f"DEM {path}: {int(impossible.sum()):,} grid cells got {what}impossible elevations "
                     f"(outside {low:g} to {high:g} m), taken as no data; declare the raster's no-data "
                     "value to be sure.")
    if np.isnan(elevation).all():
        raise InputError(f"DEM {path}: the raster has no data over the grid.")
    return elevation


def _egms_heights(points, grid: Grid) -> tuple[np.ndarray, str]:
    heights = None if points is None else points.attributes.get("height")
    if heights is None or heights.dtype.kind != "f":
        return np.full(grid.shape, np.nan, dtype=np.float32), "none"
    if not same_crs(points.crs, grid.crs):
        raise InputError(f"{points.source}: the points are in {points.crs} but the grid is in {grid.crs}; "
                         "reproject the points first.")
    median, _ = grid_values(points.x, points.y, heights[:, None], grid)
    if np.isnan(median).all():
        return median[0], "none"
    return median[0], "egms_height"


def _derivative(z: np.ndarray, axis: int) -> np.ndarray:
    """dz per cell along `axis`: central where both neighbours exist, else one-sided, else NaN."""
    forward = np.full(z.shape, np.nan)
    backward = np.full(z.shape, np.nan)
    ahead = [slice(None)] * 2
    behind = [slice(None)] * 2
    ahead[axis], behind[axis] = slice(1, None), slice(None, -1)
    forward[tuple(behind)] = z[tuple(ahead)] - z[tuple(behind)]   # z[i+1] - z[i] at i
    backward[tuple(ahead)] = z[tuple(ahead)] - z[tuple(behind)]   # z[i] - z[i-1] at i
    both = ~np.isnan(forward) & ~np.isnan(backward)
    return np.where(both, (forward + backward) / 2, np.where(np.isnan(forward), backward, forward))


# ---------------------------------------------------------------------------- class maps


def _classes_or_empty(path, field_name, grid: Grid, what: str, progress,
                      notes: list[str]) -> tuple[np.ndarray, list[str]]:
    if path is None:
        return np.zeros(grid.shape, dtype=np.int16), []
    return _rasterize_classes(Path(path), field_name, grid, what, progress, notes)


def _rasterize_classes(path: Path, field_name, grid: Grid, what: str, progress, notes: list[str]):
    import fiona
    from fiona.errors import FionaError

    label = f"{what} layer {path}"
    try:
        with fiona.open(path) as layer:
            fields = list(layer.schema["properties"])
            crs_wkt = layer.crs_wkt
        if field_name not in fields:
            chosen = "no field was chosen" if field_name is None else f"it has no field {field_name!r}"
            raise InputError(f"{label}: {chosen}; available fields: {', '.join(fields) or 'none'}.")
        if not crs_wkt:
            raise InputError(f"{label}: has no coordinate reference system (for a shapefile, a .prj file).")
        layer_crs = crs_string(crs_wkt, label)
        # The class table comes from the whole layer, so every tile of an area gets the same codes.
        with fiona.open(path, include_fields=[field_name], ignore_geometry=True) as layer:
            classes = _class_names(f["properties"][field_name] for f in _cancellable(layer, progress))
        if len(classes) > _MAX_CLASSES:
            raise InputError(f"{label}: the field {field_name!r} has {len(classes):,} classes, more than "
                             f"{_MAX_CLASSES:,}; choose a field that names the units (lithology, soil type).")
        code_of = {name: code for code, name in enumerate(classes, start=1)}
        window = _grid_window(grid, layer_crs)
        polygons, codes, n_repaired = [], [], 0
        with fiona.open(path, include_fields=[field_name]) as layer:
            for feature in _cancellable(layer.filter(bbox=window.bounds), progress):
                value = _class_name(feature["properties"][field_name])
                if value is None or feature.geometry is None or "Polygon" not in feature.geometry.type:
                    continue
                polygon = shape(feature.geometry)
                if not polygon.is_valid:
                    polygon, n_repaired = shapely.make_valid(polygon), n_repaired + 1
                near = _polygon_near(polygon, window)
                if near is not None:
                    polygons.append(near)
                    codes.append(code_of[value])
        check_cancel(progress)
        shapes = _shapes_on_grid(polygons, codes, window, layer_crs, grid, label)
    except (FionaError, OSError) as exc:
        raise InputError(f"{label}: cannot be read ({reason(exc)}).") from None
    if n_repaired:
        notes.append(f"{label}: {n_repaired:,} invalid polygons were repaired (self-crossing or doubled "
                     "edges) before rasterising.")
    if not shapes:
        raise InputError(f"{label}: no polygon with a {field_name!r} value overlaps the grid.")
    if progress is not None:
        progress.progress(0.5, f"Rasterising {what}")
    codes = rasterize(shapes, out_shape=grid.shape, transform=grid.transform, fill=0, all_touched=False,
                      dtype="int16")
    return codes, classes


def _class_name(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _cancellable(features, progress):
    """The features, checking for cancel every _FEATURES_PER_CANCEL_CHECK of them."""
    for i, feature in enumerate(features):
        if i % _FEATURES_PER_CANCEL_CHECK == 0:
            check_cancel(progress)
        yield feature


def _class_names(values) -> list[str]:
    """Distinct class names, sorted; numbers sort by value (2 before 10)."""
    raw = {v for v in values if _class_name(v) is not None}
    if raw and all(isinstance(v, (int, float)) for v in raw):
        return list(dict.fromkeys(_class_name(v) for v in sorted(raw)))
    return sorted({_class_name(v) for v in raw})


def _grid_window(grid: Grid, layer_crs: str):
    """The grid's extent in the layer's CRS, with a margin, as a box."""
    x0, y0, x1, y1 = transform_bounds(grid.crs, layer_crs, *grid.bounds, densify_pts=21)
    margin = 0.1 * max(x1 - x0, y1 - y0)
    return box(x0 - margin, y0 - margin, x1 + margin, y1 + margin)


def _polygon_near(polygon, window):
    """The polygonal part of a (valid) polygon inside the window, in the layer's CRS, or None."""
    near = polygon.intersection(window)
    parts = [p for p in shapely.get_parts(near) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else None


def _shapes_on_grid(polygons: list, codes: list[int], window, layer_crs: str, grid: Grid, label: str):
    """(polygon in the grid's CRS, code) of those that touch the grid; all transformed at once."""
    if not polygons:
        return []
    polygons = np.array(polygons, dtype=object)
    if not same_crs(layer_crs, grid.crs):
        step = max(window.bounds[2] - window.bounds[0], window.bounds[3] - window.bounds[1]) / 256
        polygons = transform_geometry(polygons, layer_crs, grid.crs, label, max_segment=step)
    touching = shapely.intersects(polygons, box(*grid.bounds))
    return [(p, c) for p, c, t in zip(polygons, codes, touching) if t]


# ---------------------------------------------------------------------------- GeoTIFFs


def _profile(grid: Grid, dtype: str, nodata) -> dict:
    return dict(driver="GTiff", width=grid.width, height=grid.height, count=1, dtype=dtype,
                crs=CRS.from_user_input(grid.crs), transform=grid.transform, nodata=nodata,
                compress="deflate")


def _write_float(path: Path, grid: Grid, values: np.ndarray, name: str, unit: str, elevation_source: str):
    with rasterio.open(path, "w", **_profile(grid, "float32", NODATA_FLOAT)) as dst:
        dst.write(np.where(np.isnan(values), NODATA_FLOAT, values).astype(np.float32), 1)
        dst.set_band_description(1, name)
        dst.units = (unit,)
        dst.update_tags(elevation_source=elevation_source)


def _write_classes(path: Path, grid: Grid, codes: np.ndarray, classes: list[str], name: str):
    dtype = "uint8" if len(classes) <= np.iinfo(np.uint8).max else "int16"
    with rasterio.open(path, "w", **_profile(grid, dtype, 0)) as dst:
        dst.write(codes.astype(dtype), 1)
        dst.set_band_description(1, name)
        dst.update_tags(1, **{f"class_{k}": c for k, c in enumerate(classes, start=1)})
