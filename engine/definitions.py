"""The field's names and rules, in one place: the engine, the dock and Processing import them."""

from __future__ import annotations

import re

EGMS_CRS = "EPSG:3035"  # the EGMS grid; geographic inputs are projected onto it
STEP_DAYS = 6  # the regular time axis: Sentinel-1's 6-day revisit

ATTRIBUTION = "Contains modified Copernicus EGMS data"

# A displacement column is named yyyymmdd, optionally behind a d/D (EGMS' two header generations).
DATE_COLUMN = re.compile(r"^[dD]?(\d{4})(\d{2})(\d{2})$")
# Coordinate column pairs in order of preference; the CRS None means "from the file, else EGMS_CRS".
COORDINATE_PAIRS = (
    ("easting", "northing", None),
    ("x", "y", None),
    ("lon", "lat", "EPSG:4326"),
    ("longitude", "latitude", "EPSG:4326"),
)
ID_NAMES = ("pid", "id", "point_id", "fid")

# The forecasters a backtest scores, in the order tables show them.
PRIMARY_MODEL = "mmstt"
MODEL_LABELS = {"mmstt": "MM-STT", "persistence": "Persistence", "timefn": "Time function"}
MODEL_COLORS = {"mmstt": "tab:blue", "timefn": "tab:orange", "persistence": "tab:green"}


def date_of_column(name: str) -> str | None:
    """ISO date of a displacement column name, or None when the name is not a date column."""
    match = DATE_COLUMN.match(name.strip())
    return f"{match[1]}-{match[2]}-{match[3]}" if match else None


def coordinate_columns(names) -> tuple[str, str, str | None] | None:
    """The (x, y, crs) column pair a table's names offer, matched without regard to case."""
    lower = {n.strip().lower(): n for n in names}
    for x, y, crs in COORDINATE_PAIRS:
        if x in lower and y in lower:
            return lower[x], lower[y], crs
    return None
