"""QGIS-facing adapters of GroundCast: dock, map tools, tasks, layer styling.

These modules only gather inputs, call `engine` and show what it wrote; no forecasting
logic lives here.
"""
