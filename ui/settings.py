"""The dock's remembered choices: every QgsSettings key is defined here, once.

A run parameter is remembered under its own name (`parameter_key(p.name)`); the few choices
that are not run parameters have a key below.
"""
from __future__ import annotations

from qgis.core import QgsSettings

PREFIX = "groundcast/"

HORIZON_MODE = PREFIX + "horizon_mode"  # "days" or "date"
TARGET_DATE = PREFIX + "target_date"  # yyyy-MM-dd
LAST_POINTS_DIR = PREFIX + "last_points_dir"  # where "Open EGMS file…" starts
LAST_REPORT_DIR = PREFIX + "last_report_dir"  # where "Report…" looks for a forecast without a run


def parameter_key(name: str) -> str:
    return PREFIX + name


def read(key: str, default, kind=None):
    """The stored value of `key` as `kind` (default: the default's type), else `default`."""
    kind = kind or (type(default) if default is not None else str)
    settings = QgsSettings()
    if not settings.contains(key):
        return default
    try:
        return settings.value(key, default, type=kind)
    except (TypeError, ValueError):
        return default


def write(key: str, value) -> None:
    QgsSettings().setValue(key, value)


def forget(key: str) -> None:
    QgsSettings().remove(key)
