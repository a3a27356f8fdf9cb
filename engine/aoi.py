"""Area of interest: a polygon from a file or WKT text, and clipping points to it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import shapely
import shapely.wkt
from shapely.geometry import shape
from shapely.errors import GEOSException

from .crs import check_geographic_range, crs_string, parse_crs, same_crs, transform_geometry
from .errors import InputError
from .fileio import reason

_WKT_START = re.compile(r"^\s*(MULTI)?POLYGON\b|^\s*GEOMETRYCOLLECTION\b", re.IGNORECASE)
_EPSG_PREFIX = re.compile(r"^\s*(?:EPSG:(\d+)|SRID=(\d+))\s*;", re.IGNORECASE)


@dataclass(frozen=True)
class AOI:
    geometry: object  # shapely Polygon or MultiPolygon, valid and not empty
    crs: str
    source: str       # file path, or "WKT text"
    notes: tuple[str, ...] = ()  # what reading repaired, one sentence each (for the log and summary)

    def to_crs(self, crs) -> AOI:
        """The same area in `crs`; edges are densified first so they follow the reprojection."""
        target = crs_string(crs, f"area of interest {self.source}: target")
        if same_crs(self.crs, target):
            return self
        moved = transform_geometry(self.geometry, self.crs, target, f"area of interest {self.source}")
        return AOI(_polygonal(moved, self.source, f"after reprojection to {target}"), target, self.source,
                   self.notes)


def read_aoi(source, default_crs: str = "EPSG:3035") -> AOI:
    """A polygon file (GeoJSON, GeoPackage, Shapefile: the union of its polygons, CRS from the file)
    or WKT text, optionally prefixed "EPSG:xxxx;", otherwise in `default_crs`."""
    text = str(source)
    if _WKT_START.match(_EPSG_PREFIX.sub("", text, count=1)):
        return _from_wkt(text, default_crs)
    path = Path(text)
    if not path.exists():
        raise InputError(f"area of interest {text[:80]!r}: neither an existing file nor WKT polygon text.")
    return _from_file(path)


def clip_points(points, aoi: AOI):
    """The points strictly inside the area of interest (in the points' CRS)."""
    geometry = aoi.to_crs(points.crs).geometry
    shapely.prepare(geometry)
    inside = shapely.contains_xy(geometry, points.x, points.y)
    if not inside.any():
        raise InputError(f"area of interest {aoi.source}: contains none of the {points.n_points:,} points "
                         f"of {points.source}.")
    return points.subset(inside)


def _from_wkt(text: str, default_crs: str) -> AOI:
    prefix = _EPSG_PREFIX.match(text)
    crs = f"EPSG:{prefix.group(1) or prefix.group(2)}" if prefix else default_crs
    crs = crs_string(crs, "area of interest WKT text")
    try:
        geometry = shapely.wkt.loads(text[prefix.end():] if prefix else text)
    except (GEOSException, ValueError) as exc:
        raise InputError(f"area of interest WKT text: not valid WKT ({str(exc).splitlines()[0]}).") from None
    check_geographic_range(geometry.bounds, crs, "area of interest WKT text",
                           "put their EPSG code before the text (EPSG:3035;POLYGON(...))")
    notes = _repair_notes([geometry], "WKT text")
    return AOI(_polygonal(geometry, "WKT text"), crs, "WKT text", notes)


def _from_file(path: Path) -> AOI:
    import fiona
    from fiona.errors import FionaError

    try:
        layers = fiona.listlayers(path)
        polygons, crs_wkt = [], None
        for name in layers:
            with fiona.open(path, layer=name) as layer:
                found = [shape(f.geometry) for f in layer
                         if f.geometry is not None and "Polygon" in f.geometry.type]
                if found:
                    polygons, crs_wkt = found, layer.crs_wkt
                    break
    except (FionaError, OSError) as exc:
        raise InputError(f"area of interest {path}: cannot be read ({reason(exc)}).") from None
    if not polygons:
        raise InputError(f"area of interest {path}: holds no polygons.")
    if not crs_wkt:
        raise InputError(f"area of interest {path}: has no coordinate reference system (for a shapefile, "
                         "a .prj file).")
    label = f"area of interest {path}"
    parse_crs(crs_wkt, label)
    check_geographic_range(shapely.total_bounds(polygons), crs_wkt, label,
                           "save the area with its true coordinate system (GDAL reads a GeoJSON \"crs\" "
                           "it does not know as EPSG:4326)")
    notes = _repair_notes(polygons, str(path))
    union = shapely.union_all([shapely.make_valid(p) for p in polygons])
    return AOI(_polygonal(union, str(path)), crs_string(crs_wkt, str(path)), str(path), notes)


def _repair_notes(polygons, source: str) -> tuple[str, ...]:
    n_invalid = int((~shapely.is_valid(polygons)).sum())
    if not n_invalid:
        return ()
    what = "polygon was" if n_invalid == 1 else "polygons were"
    return (f"area of interest {source}: {n_invalid:,} invalid {what} repaired (self-crossing or "
            "doubled edges); check that the area is the one meant.",)


def _polygonal(geometry, source: str, when: str = ""):
    """The polygon part of `geometry`, made valid; InputError if nothing of area is left."""
    if not shapely.is_valid(geometry):
        geometry = shapely.make_valid(geometry)
    parts = shapely.get_parts(geometry)
    polygons = [p for p in parts if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty]
    result = shapely.union_all(polygons) if polygons else None
    if result is None or result.is_empty or not result.area > 0:
        detail = f" {when}" if when else ""
        raise InputError(f"area of interest {source}: the polygon is empty or invalid{detail}.")
    return result
