"""How long adding a result's layers holds the QGIS interface, on a result folder of any size.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/layers.py RESULT_FOLDER [RESULT_FOLDER ...]

Adds each folder's layers as the dock does (ui.layers.add_result_layers) in a headless QGIS, and
prints the time the call holds the interface thread, the time a draw of the whole map takes
(drawing runs on QGIS's render threads, so it does not hold the interface), and the time the
dock's background task then spends on the points' timeline (ui.layers.build_point_timeline;
none beyond POINT_TIMELINE_MAX_POINTS).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def plugin_package():
    """The plugin as QGIS loads it: a package named groundcast (a link to this checkout)."""
    import tempfile

    link_parent = Path(tempfile.mkdtemp(prefix="groundcast-pkg-"))
    (link_parent / "groundcast").symlink_to(REPO, target_is_directory=True)
    sys.path.insert(0, str(link_parent))


def main(argv=None) -> int:
    from qgis.core import QgsApplication, QgsMapRendererParallelJob, QgsMapSettings, QgsProject
    from qgis.PyQt.QtCore import QSize

    app = QgsApplication([], False)
    app.initQgis()
    plugin_package()
    from groundcast.engine.results import ForecastRun
    from groundcast.ui import layers

    print("| result | points | adding the layers (interface held) | drawing the map (render threads) "
          "| points' timeline (background task) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for folder in (argv or sys.argv[1:]):
        project = QgsProject.instance()
        project.clear()
        t0 = time.perf_counter()
        built = layers.build_point_timeline(folder)
        background = f"{time.perf_counter() - t0:.1f} s" if built else "none (the maps follow)"
        t0 = time.perf_counter()
        result = layers.add_result_layers(folder, project=project)
        held = time.perf_counter() - t0
        settings = QgsMapSettings()
        shown = [result[k] for k in ("points", "change") if result.get(k) is not None]
        settings.setLayers(shown)
        settings.setDestinationCrs(shown[-1].crs())
        settings.setExtent(shown[-1].extent())
        settings.setOutputSize(QSize(1200, 800))
        job = QgsMapRendererParallelJob(settings)
        t0 = time.perf_counter()
        job.start()
        job.waitForFinished()
        drawn = time.perf_counter() - t0
        n = ForecastRun.open(folder).n_points
        print(f"| {Path(folder).name} | {n:,} | {held:.1f} s | {drawn:.1f} s | {background} |", flush=True)
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
