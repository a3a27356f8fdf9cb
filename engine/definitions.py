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


# Geology and soil classes mean the same in every area only through their names: a fixed
# vocabulary of lithology and texture words, read from the class names, gives the base model
# embedding rows that transfer. Row 0 is "no map", row 1 a name with none of the words.
CLASS_KEYWORDS = (
    "clay", "silt", "loam", "sand", "gravel", "peat", "organic", "alluvium", "fill", "loess",
    "marl", "mudstone", "shale", "flysch", "limestone", "chalk", "dolomite", "gypsum", "evaporite",
    "sandstone", "conglomerate", "granite", "gneiss", "schist", "basalt", "tuff", "volcanic", "rock",
)
CLASS_ROWS = len(CLASS_KEYWORDS) + 2
_KEYWORD_PATTERNS = sorted(CLASS_KEYWORDS, key=len, reverse=True)  # "sandstone" before "sand"


def class_row(name: str) -> int:
    """The vocabulary row of a class name: its last lithology or texture word (English puts the
    head noun last: "sandy clay" is a clay), longer words first; 1 when it has none."""
    text = name.lower()
    best, where = 1, -1
    for word in _KEYWORD_PATTERNS:
        at = text.rfind(word)
        if at > where and not any(longer.startswith(word) and text.startswith(longer, at)
                                  for longer in _KEYWORD_PATTERNS if len(longer) > len(word)):
            best, where = CLASS_KEYWORDS.index(word) + 2, at
    return best
