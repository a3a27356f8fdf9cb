"""GroundCast forecasting engine: plain Python and torch, no qgis or Qt."""

__version__ = "0.1.0"
