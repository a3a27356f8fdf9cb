"""GroundCast QGIS plugin entry point.

QGIS calls `classFactory` when it loads the plugin. The import is deferred so that
importing this package (or `engine` from the repository root) never pulls in qgis or Qt.
"""


def classFactory(iface):  # name fixed by the QGIS plugin API
    from .plugin import GroundCastPlugin

    return GroundCastPlugin(iface)
