"""Coordinate reference systems: one string form, equality, metric checks, transforms."""
from __future__ import annotations

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError

from .errors import InputError


def parse_crs(crs_like, source: str) -> CRS:
    """A pyproj CRS from anything pyproj understands; InputError naming `source` otherwise."""
    try:
        return CRS.from_user_input(crs_like)
    except (CRSError, TypeError, ValueError) as exc:
        raise InputError(f"{source}: the coordinate reference system {str(crs_like)[:80]!r} "
                         f"is not recognised ({_first_line(exc)}).") from None


def crs_string(crs_like, source: str = "coordinate reference system") -> str:
    """'EPSG:xxxx' when the CRS has an authority code, else its WKT."""
    crs = parse_crs(crs_like, source)
    authority = crs.to_authority(min_confidence=90)
    return f"{authority[0]}:{authority[1]}" if authority else crs.to_wkt()


def same_crs(a, b) -> bool:
    return CRS.from_user_input(a) == CRS.from_user_input(b)


def require_metric(crs_like, source: str) -> CRS:
    """Grids and slopes need a projected CRS whose axes are in metres."""
    crs = parse_crs(crs_like, source)
    if not crs.is_projected:
        raise InputError(f"{source}: the coordinate reference system {crs_string(crs)} is not projected "
                         "(coordinates in degrees); reproject to a projected CRS in metres such as "
                         "EPSG:3035 first.")
    unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else None
    if unit is None or abs(unit - 1.0) > 1e-9:
        raise InputError(f"{source}: the coordinate reference system {crs_string(crs)} does not use "
                         "metres; reproject to a projected CRS in metres such as EPSG:3035 first.")
    return crs


def check_geographic_range(bounds, crs_like, source: str,
                           remedy: str = "give their true coordinate system") -> None:
    """InputError when a geographic CRS is given to coordinates that cannot be degrees.

    GDAL reads a GeoJSON whose "crs" it does not know as EPSG:4326, so metres arrive labelled
    as degrees; this says so instead of failing later in a transformation.
    """
    crs = parse_crs(crs_like, source)
    if not crs.is_geographic:
        return
    x0, y0, x1, y1 = (float(b) for b in bounds)
    if max(abs(x0), abs(x1)) <= 360 and max(abs(y0), abs(y1)) <= 90:
        return
    raise InputError(f"{source}: the coordinates (x {x0:.6g} to {x1:.6g}, y {y0:.6g} to {y1:.6g}) cannot be "
                     f"degrees, but their coordinate system is {crs_string(crs)}; {remedy}.")


def transform_xy(x, y, src_crs, dst_crs, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Transform coordinate arrays (x = easting/longitude); InputError if any result is not finite."""
    src, dst = parse_crs(src_crs, source), parse_crs(dst_crs, source)
    try:
        transformer = Transformer.from_crs(src, dst, always_xy=True)
        tx, ty = transformer.transform(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64),
                                       errcheck=False)
    except ProjError as exc:
        raise InputError(f"{source}: cannot transform from {crs_string(src)} to {crs_string(dst)} "
                         f"({_first_line(exc)}).") from None
    tx, ty = np.asarray(tx, dtype=np.float64), np.asarray(ty, dtype=np.float64)
    if not (np.isfinite(tx).all() and np.isfinite(ty).all()):
        bad = ~(np.isfinite(tx) & np.isfinite(ty))
        x_bad, y_bad = np.asarray(x, dtype=np.float64)[bad], np.asarray(y, dtype=np.float64)[bad]
        raise InputError(f"{source}: {int(bad.sum()):,} coordinates (such as {x_bad[0]:.6g}, {y_bad[0]:.6g}) "
                         f"cannot be transformed from {crs_string(src)} to {crs_string(dst)}; check the "
                         "file's coordinate system.")
    return tx, ty


def transform_geometry(geometry, src_crs, dst_crs, source: str, max_segment: float | None = None):
    """Transform a shapely geometry, or an array of them in one pass; edges are first cut into
    segments of at most `max_segment` (source units; default 1/64 of the extent) so they bend as
    the projection does."""
    if max_segment is None:
        x_min, y_min, x_max, y_max = shapely.total_bounds(geometry)
        max_segment = max(x_max - x_min, y_max - y_min) / 64
    dense = shapely.segmentize(geometry, max_segment) if max_segment > 0 else geometry

    def project(coords: np.ndarray) -> np.ndarray:
        return np.column_stack(transform_xy(coords[:, 0], coords[:, 1], src_crs, dst_crs, source))

    return shapely.transform(dense, project)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
