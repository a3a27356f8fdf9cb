"""The Processing provider in real QGIS: parameters, every algorithm through processing.run, qgis_process."""
from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from pathlib import Path

import pytest

from qgis.core import (
    QgsApplication,
    QgsFeature,
    QgsFeatureRequest,
    QgsGeometry,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFolderDestination,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

from groundcast.engine.params import PARAMETERS
from groundcast.ui.layer_io import layer_to_path, plain_file
from groundcast.ui.provider import GroundCastProvider

from conftest import PLUGIN_PARENT

FORECAST_FILES = ("forecast.tif", "forecast_q05.tif", "forecast_q95.tif", "interval90.tif", "exceedance.tif",
                  "points.gpkg", "series.npz", "summary.json")
MODEL_PARAMS = {"INPUT", "DEM", "GEOLOGY", "GEOLOGY_FIELD", "SOIL", "SOIL_FIELD", "AOI", "CELL_SIZE",
                "THRESHOLD_MM", "USE_PRIORS", "INIT_FROM", "SEED", "EPOCHS", "DEVICE", "OUTPUT_FOLDER"}
EXPECTED_PARAMS = {
    "groundcast:forecast": MODEL_PARAMS | {"HORIZON_DAYS"},
    "groundcast:backtest": MODEL_PARAMS | {"HOLDOUT_DAYS"},
    "groundcast:demodata": {"SEED", "SIZE_KM", "OUTPUT_FOLDER"},
    "groundcast:rasterizepriors": {"INPUT", "DEM", "GEOLOGY", "GEOLOGY_FIELD", "SOIL", "SOIL_FIELD",
                                   "CELL_SIZE", "OUTPUT_FOLDER"},
}
# Small enough for two shared cores: 3 km demo, 200 m cells, a few epochs.
PARAMETERS_BY_NAME = {p.name: p for p in PARAMETERS}
# Trained from scratch: the tests do not depend on the shipped base model.
SCRATCH = PARAMETERS_BY_NAME["model"].choices.index("scratch")
QUICK = {"CELL_SIZE": 200, "HORIZON_DAYS": 60, "EPOCHS": 1, "SEED": 0, "MODEL": SCRATCH}


@pytest.fixture(scope="module")
def provider(qgis_processing):
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("groundcast")
    if provider is None:
        # keep the Python object referenced: sip drops the subclass's methods with the last reference
        provider = GroundCastProvider()
        assert registry.addProvider(provider)
    yield provider


@pytest.fixture(scope="module")
def tiny_demo(provider, tmp_path_factory):
    """The demodata algorithm's output (3 km): the test of that algorithm and the others' input."""
    import processing

    out = tmp_path_factory.mktemp("tiny_demo")
    result = processing.run("groundcast:demodata", {"SEED": 0, "SIZE_KM": 3, "OUTPUT_FOLDER": str(out)})
    return out, result


def _demo_inputs(demo: Path) -> dict:
    return {"INPUT": str(demo / "EGMS_L2b_demo_2020_2024.csv"), "DEM": str(demo / "dem.tif"),
            "GEOLOGY": str(demo / "geology.gpkg"), "GEOLOGY_FIELD": "unit",
            "SOIL": str(demo / "soil.gpkg"), "SOIL_FIELD": "soil", "AOI": str(demo / "aoi.geojson")}


def test_provider_registers_four_algorithms(provider):
    assert provider.name() == "GroundCast"
    assert not provider.icon().isNull()
    ids = {alg.id() for alg in provider.algorithms()}
    assert ids == set(EXPECTED_PARAMS)


@pytest.mark.parametrize("alg_id", sorted(EXPECTED_PARAMS))
def test_parameter_names(provider, alg_id):
    alg = QgsApplication.processingRegistry().algorithmById(alg_id)
    names = {p.name() for p in alg.parameterDefinitions()}
    assert EXPECTED_PARAMS[alg_id] <= names, EXPECTED_PARAMS[alg_id] - names
    out = alg.parameterDefinition("OUTPUT_FOLDER")
    assert isinstance(out, QgsProcessingParameterFolderDestination)
    if "GEOLOGY_FIELD" in names:
        assert alg.parameterDefinition("GEOLOGY_FIELD").parentLayerParameterName() == "GEOLOGY"
        assert alg.parameterDefinition("SOIL_FIELD").parentLayerParameterName() == "SOIL"
        for optional in ("DEM", "GEOLOGY", "SOIL"):
            assert alg.parameterDefinition(optional).flags() & QgsProcessingParameterDefinition.FlagOptional
    if alg_id in ("groundcast:forecast", "groundcast:backtest"):
        for advanced in ("SEED", "EPOCHS", "DEVICE", "USE_PRIORS", "INIT_FROM"):
            assert alg.parameterDefinition(advanced).flags() & QgsProcessingParameterDefinition.FlagAdvanced
        defaults = {n: alg.parameterDefinition(n).defaultValue() for n in ("CELL_SIZE", "THRESHOLD_MM",
                                                                          "USE_PRIORS")}
        assert defaults == {"CELL_SIZE": 100, "THRESHOLD_MM": -10, "USE_PRIORS": True}
    if alg_id == "groundcast:forecast":
        assert alg.parameterDefinition("HORIZON_DAYS").defaultValue() == 365
    if alg_id == "groundcast:backtest":
        assert alg.parameterDefinition("HOLDOUT_DAYS").defaultValue() == 365
    # named outputs, so the algorithms chain in the Model Designer
    outputs = {o.name() for o in alg.outputDefinitions()}
    assert "OUTPUT_FOLDER" in outputs
    if alg_id == "groundcast:forecast":
        assert {"FORECAST", "EXCEEDANCE", "INTERVAL90", "POINTS"} <= outputs


def test_demodata_writes_the_demo(tiny_demo):
    out, result = tiny_demo
    for name in ("EGMS_L2b_demo_2020_2024.csv", "dem.tif", "geology.gpkg", "soil.gpkg", "aoi.geojson"):
        assert (out / name).is_file(), name
    assert Path(result["POINTS"]) == out / "EGMS_L2b_demo_2020_2024.csv"
    assert QgsRasterLayer(result["DEM"], "dem", "gdal").isValid()


@pytest.fixture(scope="module")
def forecast_run(tiny_demo, tmp_path_factory):
    """One real forecast through processing.run, shared by the tests that read its output."""
    import processing

    demo, _ = tiny_demo
    # a memory AOI: not a file, so the algorithm must export it for the engine
    aoi_file = QgsVectorLayer(str(demo / "aoi.geojson"), "aoi", "ogr")
    memory = aoi_file.materialize(QgsFeatureRequest())
    QgsProject.instance().addMapLayer(memory)
    messages, progress = [], []

    class Feedback(QgsProcessingFeedback):
        def pushInfo(self, info):
            messages.append(info)
            super().pushInfo(info)

    feedback = Feedback()
    feedback.progressChanged.connect(progress.append)
    out = tmp_path_factory.mktemp("forecast") / "fc"
    params = {**_demo_inputs(demo), **QUICK, "AOI": memory.id(), "OUTPUT_FOLDER": str(out)}
    try:
        result = processing.run("groundcast:forecast", params, feedback=feedback)
    finally:
        QgsProject.instance().removeMapLayer(memory.id())
    return out, result, messages, progress


def test_forecast_runs_and_writes_its_files(forecast_run):
    out, result, messages, progress = forecast_run
    for name in FORECAST_FILES:
        assert (out / name).is_file(), name
    assert Path(result["OUTPUT_FOLDER"]) == out
    assert Path(result["FORECAST"]) == out / "forecast.tif"
    assert QgsRasterLayer(result["EXCEEDANCE"], "p", "gdal").isValid()
    assert QgsVectorLayer(result["POINTS"], "pts", "ogr").featureCount() > 0
    assert progress and max(progress) == pytest.approx(100, abs=1)
    assert messages  # the engine's progress messages reach the log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"]["aoi"].endswith(".gpkg")  # the memory AOI went as a temporary GeoPackage
    assert summary["inputs"]["cell_size_m"] == 200


def test_report_from_a_real_forecast(forecast_run, tmp_path):
    from groundcast.ui import layers, report

    out, _, _, _ = forecast_run
    project = QgsProject()
    result = layers.add_result_layers(str(out), "GroundCast", project=project)
    summary = json.loads((out / "summary.json").read_text())
    example = report.load_series_example(str(out / "series.npz"))
    layout = report.build_report(project, result, str(tmp_path), None, example, None, summary)
    report.export_report(layout, str(tmp_path / "report.pdf"), str(tmp_path / "report.png"))
    assert (tmp_path / "report.pdf").stat().st_size > 10_000
    assert project.layoutManager().layoutByName(layout.name()) is layout


def test_backtest_runs_and_writes_metrics(tiny_demo, tmp_path):
    import processing

    demo, _ = tiny_demo
    params = {**_demo_inputs(demo), **QUICK, "HOLDOUT_DAYS": 120, "OUTPUT_FOLDER": str(tmp_path / "bt")}
    del params["HORIZON_DAYS"]  # a backtest's horizon is its held-out period
    result = processing.run("groundcast:backtest", params)
    out = tmp_path / "bt"
    assert (out / "metrics.json").is_file() and (out / "backtest.png").is_file()
    assert Path(result["METRICS"]) == out / "metrics.json"
    metrics = json.loads((out / "metrics.json").read_text())
    assert "mmstt" in metrics["models"]


@pytest.mark.parametrize("grid_from", ["points", "aoi"])
def test_rasterizepriors_writes_priors(tiny_demo, tmp_path, grid_from):
    import processing

    demo, _ = tiny_demo
    inputs = _demo_inputs(demo)
    params = {"INPUT": inputs["INPUT"] if grid_from == "points" else inputs["AOI"], "DEM": inputs["DEM"],
              "GEOLOGY": inputs["GEOLOGY"], "GEOLOGY_FIELD": "unit", "SOIL": inputs["SOIL"],
              "SOIL_FIELD": "soil", "CELL_SIZE": 200, "OUTPUT_FOLDER": str(tmp_path / "priors")}
    result = processing.run("groundcast:rasterizepriors", params)
    out = tmp_path / "priors"
    for name in ("elevation.tif", "slope.tif", "aspect.tif", "geology.tif", "soil.tif",
                 "geology_classes.csv"):
        assert (out / name).is_file(), name
    elevation = QgsRasterLayer(result["ELEVATION"], "z", "gdal")
    assert elevation.isValid() and elevation.crs().authid() == "EPSG:3035"
    assert elevation.rasterUnitsPerPixelX() == pytest.approx(200)


def test_cancel_writes_nothing(tiny_demo, tmp_path):
    import processing

    demo, _ = tiny_demo
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    out = tmp_path / "cancelled"
    with pytest.raises(QgsProcessingException):
        processing.run("groundcast:forecast", {**_demo_inputs(demo), **QUICK, "OUTPUT_FOLDER": str(out)},
                       feedback=feedback)
    assert not out.exists() or not any(out.iterdir())


def test_model_designer_chains_demodata_into_rasterizepriors(provider, tmp_path):
    """Outputs of one GroundCast algorithm feed the next inside a Processing model."""
    from qgis.core import QgsProcessingContext, QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm
    from qgis.core import QgsProcessingModelChildParameterSource as Source

    model = QgsProcessingModelAlgorithm("demo priors", "GroundCast")
    demo = QgsProcessingModelChildAlgorithm("groundcast:demodata")
    demo.setChildId("demo")
    demo.addParameterSources("SEED", [Source.fromStaticValue(1)])
    demo.addParameterSources("SIZE_KM", [Source.fromStaticValue(2)])
    demo.addParameterSources("OUTPUT_FOLDER", [Source.fromStaticValue(str(tmp_path / "demo"))])
    model.addChildAlgorithm(demo)
    priors = QgsProcessingModelChildAlgorithm("groundcast:rasterizepriors")
    priors.setChildId("priors")
    for name in ("DEM", "GEOLOGY", "SOIL"):
        priors.addParameterSources(name, [Source.fromChildOutput("demo", name)])
    priors.addParameterSources("INPUT", [Source.fromChildOutput("demo", "POINTS")])
    priors.addParameterSources("GEOLOGY_FIELD", [Source.fromStaticValue("unit")])
    priors.addParameterSources("SOIL_FIELD", [Source.fromStaticValue("soil")])
    priors.addParameterSources("CELL_SIZE", [Source.fromStaticValue(200)])
    priors.addParameterSources("OUTPUT_FOLDER", [Source.fromStaticValue(str(tmp_path / "priors"))])
    model.addChildAlgorithm(priors)
    context = QgsProcessingContext()
    results, ok = model.run({}, context, QgsProcessingFeedback())
    assert ok
    assert (tmp_path / "priors" / "elevation.tif").is_file()
    assert (tmp_path / "priors" / "geology.tif").is_file()


def test_toolbox_loads_styled_temporal_layers(provider, tmp_path):
    """What the toolbox does after a forecast: load the listed layers, run their post-processors."""
    from qgis.core import QgsProcessingContext, QgsProcessingUtils, QgsSingleBandPseudoColorRenderer

    from groundcast.ui.algorithms import ForecastAlgorithm
    from test_report import FC, write_synthetic_outputs

    write_synthetic_outputs(tmp_path)
    project = QgsProject()
    context = QgsProcessingContext()
    context.setProject(project)
    for key, (fname, label, kind) in ForecastAlgorithm.RASTERS.items():
        if kind:
            ForecastAlgorithm._load_on_completion(context, str(tmp_path / fname), label, key, kind)
    ForecastAlgorithm._load_on_completion(context, f"{tmp_path / 'points.gpkg'}|layername=points", "Points",
                                          "POINTS", "points")
    feedback = QgsProcessingFeedback()
    loaded = {}
    for source, details in context.layersToLoadOnCompletion().items():
        layer = QgsProcessingUtils.mapLayerFromString(source, context)
        assert layer is not None and layer.isValid(), source
        details.project.addMapLayer(layer)
        details.postProcessor().postProcessLayer(layer, context, feedback)
        loaded[details.outputName] = layer
    assert set(loaded) == {"CHANGE", "FORECAST", "INTERVAL90", "EXCEEDANCE", "POINTS"}
    forecast = loaded["FORECAST"]
    assert isinstance(forecast.renderer(), QgsSingleBandPseudoColorRenderer)
    assert forecast.renderer().band() == len(FC)
    assert forecast.temporalProperties().isActive()
    assert project.timeSettings().temporalRange().begin().date().toPyDate() == FC[0]


def test_layer_to_path_exports_what_is_not_a_plain_file(tiny_demo, tmp_path, qgis_app):
    demo, _ = tiny_demo
    geology = QgsVectorLayer(str(demo / "geology.gpkg"), "geology", "ogr")
    assert plain_file(geology) == str(demo / "geology.gpkg")
    assert layer_to_path(geology, str(tmp_path)) == str(demo / "geology.gpkg")
    dem = QgsRasterLayer(str(demo / "dem.tif"), "dem", "gdal")
    assert layer_to_path(dem, str(tmp_path)) == str(demo / "dem.tif")

    memory = QgsVectorLayer("Polygon?crs=EPSG:3035&field=unit:string", "drawn", "memory")
    feature = QgsFeature(memory.fields())
    feature.setGeometry(QgsGeometry.fromWkt("POLYGON((0 0, 100 0, 100 100, 0 0))"))
    feature["unit"] = "clay"
    memory.dataProvider().addFeatures([feature])
    path = layer_to_path(memory, str(tmp_path))
    assert path.endswith(".gpkg") and Path(path).parent == tmp_path
    back = QgsVectorLayer(path, "back", "ogr")
    assert back.featureCount() == 1 and back.crs().authid() == "EPSG:3035"

    geology.selectByIds([next(geology.getFeatures()).id()])
    selected = layer_to_path(geology, str(tmp_path), selected_only=True)
    assert selected != str(demo / "geology.gpkg")
    assert QgsVectorLayer(selected, "sel", "ogr").featureCount() == 1

    geology.setSubsetString("1 = 0")
    assert plain_file(geology) is None


def _qgis_process(args, home, timeout=240):
    # QGIS's own Python plus this venv's packages (torch etc.), as docs/processing.md describes
    site = sysconfig.get_paths()["purelib"]
    env = dict(os.environ, HOME=str(home), QT_QPA_PLATFORM="offscreen", QGIS_PLUGINPATH=str(PLUGIN_PARENT),
               PYTHONPATH=os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH", "")) if p))
    return subprocess.run(["/usr/bin/qgis_process.bin", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.skipif(not Path("/usr/bin/qgis_process.bin").exists(), reason="qgis_process not installed")
def test_qgis_process_runs_the_plugin_headless(tmp_path):
    home = tmp_path / "home"  # a throw-away profile: enabling the plugin must not touch the user's
    home.mkdir()
    enabled = _qgis_process(["plugins", "enable", "groundcast"], home)
    # plugins found through QGIS_PLUGINPATH may count as enabled already, depending on the profile
    assert enabled.returncode == 0 or "already enabled" in enabled.stderr, enabled.stdout + enabled.stderr
    listed = _qgis_process(["list"], home)
    assert "groundcast:forecast" in listed.stdout, listed.stdout[-2000:] + listed.stderr[-2000:]
    out = tmp_path / "demo"
    run = _qgis_process(["--json", "run", "groundcast:demodata", "--", "SIZE_KM=3", f"OUTPUT_FOLDER={out}"],
                        home)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert (out / "EGMS_L2b_demo_2020_2024.csv").is_file()
    reply = json.loads(run.stdout[run.stdout.index("{"):])
    assert Path(reply["results"]["OUTPUT_FOLDER"]) == out



@pytest.mark.skipif(not Path("/usr/bin/qgis_process.bin").exists(), reason="qgis_process not installed")
def test_qgis_process_forecasts_from_an_egms_zip(tmp_path):
    """EGMS downloads are zips: qgis_process must hand the zip to the engine, not try it as a layer."""
    home = tmp_path / "home"
    home.mkdir()
    _qgis_process(["plugins", "enable", "groundcast"], home)
    zipped = PLUGIN_PARENT / "groundcast" / "tests" / "data" / "EGMS_L2b_022_0845_IW2_VV_2020_2024_1.zip"
    out = tmp_path / "fc"
    run = _qgis_process(["--json", "run", "groundcast:forecast", "--", f"INPUT={zipped}", "EPOCHS=1",
                         "HORIZON_DAYS=30", "CELL_SIZE=200", f"MODEL={SCRATCH}", f"OUTPUT_FOLDER={out}"],
                        home, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    reply = json.loads(run.stdout[run.stdout.index("{"):])
    assert Path(reply["results"]["OUTPUT_FOLDER"]) == out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"]["points"].endswith(".zip")  # the engine read the zip itself
    assert QgsRasterLayer(reply["results"]["FORECAST"], "fc", "gdal").isValid()
