"""Processing refuses an output folder that cannot take the result before the run starts."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsProcessingContext

from groundcast.ui.provider import GroundCastProvider


@pytest.fixture(scope="module")
def provider(qgis_processing):
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("groundcast")
    if provider is None:
        provider = GroundCastProvider()  # kept referenced: sip drops a subclass's methods otherwise
        assert registry.addProvider(provider)
    yield provider


@pytest.mark.parametrize("alg_id", ["groundcast:forecast", "groundcast:backtest"])
def test_processing_refuses_a_users_folder_before_the_run(provider, tmp_path, alg_id):
    points = tmp_path / "points.csv"
    points.write_text("pid,easting,northing,20200101\n1,0,0,0\n")
    alg = QgsApplication.processingRegistry().algorithmById(alg_id)
    context = QgsProcessingContext()

    ok, message = alg.checkParameterValues({"INPUT": str(points), "OUTPUT_FOLDER": str(tmp_path)}, context)
    assert not ok and "input file" in message and message.endswith(".")
    (tmp_path / "result").write_text("a file")
    ok, message = alg.checkParameterValues({"INPUT": str(points), "OUTPUT_FOLDER": str(tmp_path / "result")},
                                           context)
    assert not ok and "is a file" in message
    fresh = {"INPUT": str(points), "OUTPUT_FOLDER": str(tmp_path / "new")}
    ok, message = alg.checkParameterValues(fresh, context)
    assert ok, message
    assert points.read_text().startswith("pid") and (tmp_path / "result").read_text() == "a file"
    assert not (tmp_path / "new").exists()

