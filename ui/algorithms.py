"""Processing algorithms: thin wrappers that turn parameters into engine calls.

Inputs are resolved to plain files in prepareAlgorithm (main thread, where project
layers may be read safely); the engine then runs in processAlgorithm, which Processing
may put on a worker thread. The engine is imported lazily so that loading the provider
at QGIS start-up does not import torch.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputFile,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QCoreApplication

from ..engine import results as outputs
from ..engine.params import Parameter, parameter, parameters_for
from .layer_io import LayerExportError, layer_to_path


def tr(text: str) -> str:
    return QCoreApplication.translate("GroundCast", text)


def processing_parameter(spec: Parameter) -> QgsProcessingParameterDefinition:
    """The Processing parameter of one engine parameter: same name, label, default, range, flags."""
    key, optional = spec.processing_key, spec.optional
    label = tr(f"{spec.label} ({spec.unit})" if spec.unit else spec.label)
    if spec.kind in ("int", "float"):
        number = QgsProcessingParameterNumber
        number_type = number.Integer if spec.kind == "int" else number.Double
        kwargs = {}
        if spec.minimum is not None:
            kwargs["minValue"] = spec.minimum
        if spec.maximum is not None:
            kwargs["maxValue"] = spec.maximum
        param = number(key, label, number_type, spec.default, optional, **kwargs)
    elif spec.kind == "bool":
        param = QgsProcessingParameterBoolean(key, label, bool(spec.default), optional)
    elif spec.kind == "choice":
        default = spec.choices.index(spec.default) if spec.default else None
        param = QgsProcessingParameterEnum(key, label, list(spec.choices), False, default, optional)
    elif spec.kind == "points":
        param = QgsProcessingParameterFeatureSource(
            key, tr(f"{spec.label} (CSV/ZIP file or point layer)"),
            [QgsProcessing.TypeVectorPoint, QgsProcessing.TypeVector], optional=optional)
    elif spec.kind in ("polygons", "aoi"):
        param = QgsProcessingParameterFeatureSource(key, label, [QgsProcessing.TypeVectorPolygon],
                                                    optional=optional)
    elif spec.kind == "raster":
        param = QgsProcessingParameterRasterLayer(key, label, optional=optional)
    elif spec.kind == "field":
        parent = parameter(spec.parent).processing_key
        param = QgsProcessingParameterField(key, label, parentLayerParameterName=parent, optional=optional)
    elif spec.kind == "checkpoint":
        param = QgsProcessingParameterFile(key, label, QgsProcessingParameterFile.File, "safetensors",
                                           optional=optional)
    elif spec.kind == "folder":
        param = QgsProcessingParameterFolderDestination(key, label)
    else:
        raise ValueError(f"no Processing parameter for kind {spec.kind!r}")
    param.setHelp(tr(spec.help))
    if spec.advanced:
        param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return param


class FeedbackProgress:
    """The engine's Progress protocol on top of a QgsProcessingFeedback."""

    LOG_EVERY_S = 5.0

    def __init__(self, feedback):
        self.feedback = feedback
        self._last_topic = None
        self._last_logged = 0.0

    def progress(self, fraction: float, message: str) -> None:
        self.feedback.setProgress(100.0 * min(max(fraction, 0.0), 1.0))
        if not message:
            return
        self.feedback.setProgressText(message)
        # training reports every step ("training pass 3/24, ..."): log a new topic, else now and then
        topic = message.split(",")[0]
        now = time.monotonic()
        if topic != self._last_topic or now - self._last_logged >= self.LOG_EVERY_S:
            self._last_topic, self._last_logged = topic, now
            self.feedback.pushInfo(message)

    def should_cancel(self) -> bool:
        return self.feedback.isCanceled()


class _LayerStyler(QgsProcessingLayerPostProcessorInterface):
    """Styles a result layer once Processing has loaded it into the project (main thread)."""

    # sip may collect a post-processor that C++ still owns: hold the latest one per kind
    _alive: dict = {}

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    @classmethod
    def create(cls, kind: str) -> _LayerStyler:
        cls._alive[kind] = cls(kind)
        return cls._alive[kind]

    def postProcessLayer(self, layer, context, feedback):
        from . import layers

        if self.kind == "points":
            layers.style_points(layer)
            return
        style = {"forecast": layers.style_forecast, "change": layers.style_change,
                 "interval90": layers.style_interval, "exceedance": layers.style_exceedance}[self.kind]
        style(layer, band=layer.bandCount())  # the horizon, as the dock shows it
        dates = layers.band_dates(layer)
        if len(dates) == layer.bandCount():
            layers.set_temporal(layer, dates, context.project())


class GroundCastAlgorithm(QgsProcessingAlgorithm):
    """Shared parameter handling; subclasses define NAME, params and `run_engine`."""

    NAME = ""
    DISPLAY = ""
    GROUP = ""
    GROUP_ID = ""
    HELP = ""

    def __init__(self):
        super().__init__()
        self._tmp_dir = None
        self._inputs = {}

    def createInstance(self):
        return type(self)()

    def name(self):
        return self.NAME

    def displayName(self):
        return tr(self.DISPLAY)

    def group(self):
        return tr(self.GROUP)

    def groupId(self):
        return self.GROUP_ID

    def shortHelpString(self):
        return tr(self.HELP)

    def tags(self):
        return ["egms", "insar", "ground motion", "subsidence", "forecast", "groundcast"]

    # --- parameters, built from the engine's PARAMETERS --------------------------------
    def add_spec_parameter(self, spec: Parameter) -> None:
        self.addParameter(processing_parameter(spec))

    def _add_prior_params(self):
        for name in ("dem", "geology", "geology_field", "soil", "soil_field"):
            self.add_spec_parameter(parameter(name))

    def _add_cell_size(self):
        self.add_spec_parameter(parameter("cell_size_m"))

    def _add_output_folder(self):
        self.add_spec_parameter(parameter("out_dir"))

    def checkParameterValues(self, parameters, context):
        """As Processing checks, except that a point file given as a path is the engine's to read.

        Processing opens a feature source parameter's path as an OGR layer, and OGR sees no layer
        in an EGMS zip: qgis_process would refuse the file that EGMS downloads come as.
        """
        plain = {name for name in self.POINT_FILE_PARAMETERS
                 if isinstance(parameters.get(name), str) and os.path.isfile(parameters[name])}
        if not plain:
            return super().checkParameterValues(parameters, context)
        for definition in self.parameterDefinitions():
            if definition.name() in plain:
                continue
            if not definition.checkValueIsAcceptable(parameters.get(definition.name()), context):
                return False, tr(f"Incorrect parameter value for {definition.name()}")
        return True, ""

    POINT_FILE_PARAMETERS = ("INPUT",)

    def _input_file(self, parameters, name, context):
        """A plain file the engine can read for parameter `name`, or None when it is unset."""
        value = parameters.get(name)
        if value is None or value == "":
            return None
        # a file path goes as is: OGR sees no geometry in an EGMS CSV/ZIP, the engine does
        if isinstance(value, str) and os.path.isfile(value):
            return value
        selected = isinstance(value, QgsProcessingFeatureSourceDefinition) and value.selectedFeaturesOnly
        param = self.parameterDefinition(name)
        if isinstance(param, QgsProcessingParameterRasterLayer):
            layer = self.parameterAsRasterLayer(parameters, name, context)
        else:
            layer = self.parameterAsVectorLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(tr(f"{name}: cannot open {value!r} as a layer"))
        try:
            return layer_to_path(layer, self._tmp(), selected_only=selected)
        except LayerExportError as e:
            raise QgsProcessingException(f"{name}: {e}") from e

    def _field(self, parameters, name, context):
        value = self.parameterAsString(parameters, name, context)
        return value or None

    def _optional_int(self, parameters, name, context):
        value = parameters.get(name)
        if value is None or value == "":
            return None
        return self.parameterAsInt(parameters, name, context)

    def _tmp(self) -> str:
        if self._tmp_dir is None:
            self._tmp_dir = tempfile.mkdtemp(prefix="groundcast_", dir=QgsProcessingUtils.tempFolder())
        return self._tmp_dir

    def _output_folder(self, parameters, context) -> str:
        key = parameter("out_dir").processing_key
        out = self.parameterAsFileOutput(parameters, key, context)
        if not out:
            raise QgsProcessingException(tr(f"{key} is not set"))
        return out

    def _prior_inputs(self, parameters, context) -> dict:
        return {
            "dem": self._input_file(parameters, "DEM", context),
            "geology": self._input_file(parameters, "GEOLOGY", context),
            "geology_field": self._field(parameters, "GEOLOGY_FIELD", context),
            "soil": self._input_file(parameters, "SOIL", context),
            "soil_field": self._field(parameters, "SOIL_FIELD", context),
        }

    # --- running -----------------------------------------------------------------------
    def prepareAlgorithm(self, parameters, context, feedback):
        self._inputs = self.resolve_inputs(parameters, context, feedback)
        return True

    def resolve_inputs(self, parameters, context, feedback) -> dict:
        return {}

    def processAlgorithm(self, parameters, context, feedback):
        from ..engine.errors import Cancelled, InputError
        from .task import user_words

        try:
            return self.run_engine(self._inputs, parameters, context, FeedbackProgress(feedback), feedback)
        except Cancelled as e:
            raise QgsProcessingException(tr(f"Cancelled ({e}); nothing was written.")) from e
        except InputError as e:
            raise QgsProcessingException(user_words(str(e))) from e
        finally:
            if self._tmp_dir:
                shutil.rmtree(self._tmp_dir, ignore_errors=True)
                self._tmp_dir = None

    def run_engine(self, inputs, parameters, context, progress, feedback) -> dict:
        raise NotImplementedError


class _ModelAlgorithm(GroundCastAlgorithm):
    """Parameters shared by forecast and backtest."""

    def checkParameterValues(self, parameters, context):
        """The base checks, then the output folder: refused in one sentence before the run starts."""
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        from ..engine.errors import InputError
        from ..engine.params import RunConfig
        from ..engine.results import check_output_folder

        out = self.parameterAsFileOutput(parameters, parameter("out_dir").processing_key, context)
        points = parameters.get("INPUT")
        config = RunConfig(points=points if isinstance(points, str) else "", out_dir=out or "")
        try:
            check_output_folder(config, self.NAME)
        except InputError as exc:
            return False, str(exc)
        return True, ""

    GROUP = "Forecasting"
    GROUP_ID = "forecasting"

    def initAlgorithm(self, config=None):
        for spec in parameters_for(self.NAME, "processing"):
            self.add_spec_parameter(spec)
        self.add_outputs()

    def add_outputs(self):
        pass

    def resolve_inputs(self, parameters, context, feedback):
        """The file parameters as plain files, read on the main thread (project layers)."""
        inputs = {}
        for spec in parameters_for(self.NAME, "processing"):
            key = spec.processing_key
            if spec.kind in ("points", "raster", "polygons", "aoi"):
                inputs[spec.name] = self._input_file(parameters, key, context)
            elif spec.kind == "checkpoint":
                inputs[spec.name] = self.parameterAsFile(parameters, key, context) or None
        if inputs.get("points") is None:
            raise QgsProcessingException(tr(f"{parameter('points').processing_key}: no points given"))
        return inputs

    def run_config(self, inputs, parameters, context):
        """The engine's RunConfig from this algorithm's values, one per PARAMETERS entry."""
        from ..engine.params import RunConfig

        values = {}
        for spec in parameters_for(self.NAME, "processing"):
            if spec.name in inputs:
                values[spec.name] = inputs[spec.name]
            elif spec.kind == "folder":
                values[spec.name] = self._output_folder(parameters, context)
            else:
                values[spec.name] = self.parameter_value(spec, parameters, context)
        return RunConfig.from_values(values)

    def parameter_value(self, spec: Parameter, parameters, context):
        """The engine's value of a non-file parameter: None when an optional one is empty."""
        key = spec.processing_key
        raw = parameters.get(key)
        if (raw is None or raw == "") and spec.optional:
            return None
        if spec.kind == "int":
            return self.parameterAsInt(parameters, key, context)
        if spec.kind == "float":
            return self.parameterAsDouble(parameters, key, context)
        if spec.kind == "bool":
            return self.parameterAsBoolean(parameters, key, context)
        if spec.kind == "choice":
            return spec.choices[self.parameterAsEnum(parameters, key, context)]
        return self.parameterAsString(parameters, key, context) or None

    def run_engine(self, inputs, parameters, context, progress, feedback):
        from .task import run_engine

        config = self.run_config(inputs, parameters, context)
        result = run_engine(self.NAME, config, progress, log=feedback.pushInfo)
        return self.results(config.out_dir, result, context, feedback)

    def results(self, out: str, result: dict, context, feedback) -> dict:
        raise NotImplementedError


class ForecastAlgorithm(_ModelAlgorithm):
    NAME = "forecast"
    DISPLAY = "Forecast ground motion"
    HELP = ("Trains the GroundCast model on EGMS point time series (optionally with DEM, geology and soil "
            "priors) and writes probabilistic forecasts to OUTPUT_FOLDER, a new or empty folder (or an "
            "earlier result, which is replaced): change.tif (median change since the last observation) "
            "with change_q05.tif / change_q95.tif, forecast.tif (median cumulative displacement since the "
            "first epoch) with forecast_q05.tif / forecast_q95.tif, interval90.tif, exceedance.tif "
            "(probability of passing the threshold), points.gpkg, series.npz and summary.json. Raster "
            "bands are forecast dates.")
    RASTERS = {"CHANGE": (outputs.CHANGE, "Change since the last observation (median, mm)", "change"),
               "CHANGE_Q05": (outputs.CHANGE_Q05, "Change 5% quantile (mm)", None),
               "CHANGE_Q95": (outputs.CHANGE_Q95, "Change 95% quantile (mm)", None),
               "FORECAST": (outputs.FORECAST, "Forecast (median, mm)", "forecast"),
               "FORECAST_Q05": (outputs.FORECAST_Q05, "Forecast 5% quantile (mm)", None),
               "FORECAST_Q95": (outputs.FORECAST_Q95, "Forecast 95% quantile (mm)", None),
               "INTERVAL90": (outputs.INTERVAL90, "90% interval width (mm)", "interval90"),
               "EXCEEDANCE": (outputs.EXCEEDANCE, "Exceedance probability", "exceedance")}

    def add_outputs(self):
        for key, (_, label, _) in self.RASTERS.items():
            self.addOutput(QgsProcessingOutputRasterLayer(key, tr(label)))
        self.addOutput(QgsProcessingOutputVectorLayer("POINTS", tr("Forecast points"),
                                                      QgsProcessing.TypeVectorPoint))
        self.addOutput(QgsProcessingOutputFile("SUMMARY", tr("Run summary (JSON)")))

    def results(self, out, result, context, feedback):
        results = {"OUTPUT_FOLDER": out, "SUMMARY": os.path.join(out, outputs.SUMMARY),
                   "POINTS": os.path.join(out, outputs.POINTS) + "|layername=points"}
        for key, (fname, label, kind) in self.RASTERS.items():
            results[key] = os.path.join(out, fname)
            if kind:
                self._load_on_completion(context, results[key], label, key, kind)
        self._load_on_completion(context, results["POINTS"], "Forecast points", "POINTS", "points")
        feedback.pushInfo(tr(f"Forecast written to {out}"))
        return results

    @staticmethod
    def _load_on_completion(context, path, label, output_name, kind):
        # only the toolbox loads these; processing.run and qgis_process ignore them
        details = QgsProcessingContext.LayerDetails(tr(label), context.project(), output_name)
        details.setPostProcessor(_LayerStyler.create(kind))
        context.addLayerToLoadOnCompletion(path, details)


class BacktestAlgorithm(_ModelAlgorithm):
    NAME = "backtest"
    DISPLAY = "Backtest forecast skill"
    HELP = ("Holds out the last HOLDOUT_DAYS of every time series, forecasts them from the rest and scores "
            "the model against persistence and a time-function fit (RMSE per horizon, 90% interval "
            "coverage, CRPS). Writes metrics.json and backtest.png to OUTPUT_FOLDER.")

    def add_outputs(self):
        self.addOutput(QgsProcessingOutputFile("METRICS", tr("Backtest metrics (JSON)")))
        self.addOutput(QgsProcessingOutputFile("PLOT", tr("Backtest chart (PNG)")))

    def results(self, out, metrics, context, feedback):
        feedback.pushInfo(json.dumps(metrics, indent=1, default=str)[:4000])
        return {"OUTPUT_FOLDER": out, "METRICS": os.path.join(out, outputs.METRICS),
                "PLOT": os.path.join(out, outputs.BACKTEST_PLOT)}


class DemoDataAlgorithm(GroundCastAlgorithm):
    NAME = "demodata"
    DISPLAY = "Create demo data"
    GROUP = "Data"
    GROUP_ID = "data"
    HELP = ("Writes a synthetic region to OUTPUT_FOLDER: EGMS-style points (EGMS_L2b_demo_2020_2024.csv), "
            "dem.tif, geology.gpkg (field 'unit'), soil.gpkg (field 'soil'), aoi.geojson and the true "
            "displacement (truth.npz). Use it to try the forecast and backtest algorithms.")
    OUTPUTS = {"POINTS": "EGMS_L2b_demo_2020_2024.csv", "DEM": "dem.tif", "GEOLOGY": "geology.gpkg",
               "SOIL": "soil.gpkg", "AOI": "aoi.geojson", "TRUTH": "truth.npz"}

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterNumber(
            "SEED", tr("Random seed"), QgsProcessingParameterNumber.Integer, 0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            "SIZE_KM", tr("Region size (km)"), QgsProcessingParameterNumber.Double, 8.0, minValue=1.0,
            maxValue=100.0))
        self._add_output_folder()
        # vector outputs, not files, so the Model Designer can feed POINTS into the forecast
        self.addOutput(QgsProcessingOutputVectorLayer("POINTS", tr("Demo EGMS points (CSV)"),
                                                      QgsProcessing.TypeVectorPoint))
        self.addOutput(QgsProcessingOutputRasterLayer("DEM", tr("Demo DEM")))
        self.addOutput(QgsProcessingOutputVectorLayer("GEOLOGY", tr("Demo geology"),
                                                      QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputVectorLayer("SOIL", tr("Demo soil"),
                                                      QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputVectorLayer("AOI", tr("Demo area of interest"),
                                                      QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputFile("TRUTH", tr("True displacement (NPZ)")))

    def run_engine(self, inputs, parameters, context, progress, feedback):
        from ..engine.demo import make_demo

        out = self._output_folder(parameters, context)
        progress.progress(0.0, tr("Creating demo data"))
        make_demo(out, seed=self.parameterAsInt(parameters, "SEED", context),
                  size_km=self.parameterAsDouble(parameters, "SIZE_KM", context))
        progress.progress(1.0, tr(f"Demo data written to {out}"))
        return {"OUTPUT_FOLDER": out, **{k: os.path.join(out, f) for k, f in self.OUTPUTS.items()}}


class RasterizePriorsAlgorithm(GroundCastAlgorithm):
    NAME = "rasterizepriors"
    DISPLAY = "Rasterize prior maps"
    GROUP = "Data"
    GROUP_ID = "data"
    HELP = ("Puts the DEM, geology and soil maps on the forecast grid (the extent of INPUT: EGMS points or "
            "an area-of-interest polygon, cells of CELL_SIZE metres) and writes them as GeoTIFFs to "
            "OUTPUT_FOLDER, so the model's priors can be inspected before a run. Without a DEM, elevation "
            "comes from the EGMS point heights. Class rasters come with a <name>_classes.csv code table.")
    RASTERS = {"ELEVATION": "Elevation (m)", "SLOPE": "Slope (degrees)", "ASPECT": "Aspect (degrees)",
               "GEOLOGY_RASTER": "Geology classes", "SOIL_RASTER": "Soil classes"}
    # outputs may not share names with the GEOLOGY/SOIL inputs
    OUTPUT_KEYS = {"elevation": "ELEVATION", "slope": "SLOPE", "aspect": "ASPECT",
                   "geology": "GEOLOGY_RASTER", "soil": "SOIL_RASTER"}

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFeatureSource(
            "INPUT", tr("EGMS points or area of interest (defines the grid)"),
            [QgsProcessing.TypeVectorPoint, QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeVector]))
        self._add_prior_params()
        self._add_cell_size()
        self._add_output_folder()
        for key, label in self.RASTERS.items():
            self.addOutput(QgsProcessingOutputRasterLayer(key, tr(label)))

    def resolve_inputs(self, parameters, context, feedback):
        path = self._input_file(parameters, "INPUT", context)
        if path is None:
            raise QgsProcessingException(tr("INPUT: no points or area given"))
        # polygons define the grid as an AOI; anything else is read as EGMS points
        layer = QgsProcessingUtils.mapLayerFromString(path, context)
        is_area = isinstance(layer, QgsVectorLayer) and layer.geometryType() == QgsWkbTypes.PolygonGeometry
        return {"grid_source": path, "is_area": is_area, **self._prior_inputs(parameters, context)}

    def run_engine(self, inputs, parameters, context, progress, feedback):
        from ..engine.aoi import read_aoi
        from ..engine.grid import make_grid
        from ..engine.points import read_points
        from ..engine.priors import build_priors, save_priors
        from ..engine.progress import check_cancel, scaled

        out = self._output_folder(parameters, context)
        cell = self.parameterAsDouble(parameters, "CELL_SIZE", context)
        progress.progress(0.0, tr("Reading the grid extent"))
        points = None
        if inputs["is_area"]:
            crs = "EPSG:3035"  # the EGMS grid, as the forecast uses
            bounds = read_aoi(inputs["grid_source"]).to_crs(crs).geometry.bounds
        else:
            points = read_points(inputs["grid_source"], progress=scaled(progress, 0.0, 0.3))
            crs = points.crs
            bounds = (points.x.min(), points.y.min(), points.x.max(), points.y.max())
        grid = make_grid(bounds, cell, crs)
        progress.progress(0.3, tr(f"Rasterizing priors on a {grid.width} x {grid.height} grid of {cell:g} m"))
        priors = build_priors(grid, dem=inputs["dem"], geology=inputs["geology"],
                              geology_field=inputs["geology_field"], soil=inputs["soil"],
                              soil_field=inputs["soil_field"], points=points,
                              progress=scaled(progress, 0.3, 0.95))
        check_cancel(progress)
        written = save_priors(priors, out)
        progress.progress(1.0, tr(f"Priors written to {out} (elevation from {priors.elevation_source})"))
        results = {"OUTPUT_FOLDER": out}
        for name, path in written.items():
            if name in self.OUTPUT_KEYS:
                results[self.OUTPUT_KEYS[name]] = str(path)
        return results


ALGORITHMS = (ForecastAlgorithm, BacktestAlgorithm, DemoDataAlgorithm, RasterizePriorsAlgorithm)
