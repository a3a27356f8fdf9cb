"""Every run parameter, defined once: the CLI, Processing and the dock are built from PARAMETERS.

A parameter says what it is (kind, unit, range, default), how a user reads it (label, help),
which commands take it and which front ends show it. `RunConfig` holds one run's values and
`RunConfig.check()` enforces the same ranges the front ends offer, so a value that a form
accepts never fails later in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from .errors import InputError

FRONTS = frozenset({"cli", "processing", "dock"})
COMMANDS = frozenset({"forecast", "backtest"})

# kinds: points (point file or layer), raster, polygons, field (of the `parent` layer),
# aoi (polygon layer, file or WKT), checkpoint (.safetensors file), folder (output),
# int, float, bool, choice.
FILE_KINDS = frozenset({"points", "raster", "polygons", "aoi", "checkpoint", "folder"})


@dataclass(frozen=True)
class Parameter:
    name: str  # the RunConfig field
    kind: str
    label: str  # the user's words, as a form shows them
    help: str
    default: object = None
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    optional: bool = True
    parent: str | None = None  # a field's layer parameter
    commands: frozenset = COMMANDS
    fronts: frozenset = FRONTS
    advanced: bool = False
    flag: str | None = None  # the CLI option, when not --name-with-dashes
    processing_name: str | None = None  # when not NAME_IN_CAPITALS

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def processing_key(self) -> str:
        return self.processing_name or self.name.upper()

    @property
    def is_file(self) -> bool:
        return self.kind in FILE_KINDS

    def range_text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"between {self.minimum:g} and {self.maximum:g}{unit}"

    def check(self, value) -> None:
        """InputError in the user's words unless `value` is allowed."""
        if value is None or value == "":
            if not self.optional:
                raise InputError(f"{self.label}: a value is needed.")
            return
        if self.kind == "choice" and value not in self.choices:
            options = f"{', '.join(self.choices[:-1])} or {self.choices[-1]}"
            raise InputError(f"{self.label} {value!r}: choose {options}.")
        if self.kind in ("int", "float"):
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InputError(f"{self.label} {value!r}: give a number {self.range_text()}.") from None
            if self.kind == "int" and number != int(number):
                raise InputError(f"{self.label} {value!r}: give a whole number {self.range_text()}.")
            low = -float("inf") if self.minimum is None else self.minimum
            high = float("inf") if self.maximum is None else self.maximum
            if not low <= number <= high:
                raise InputError(f"{self.label} of {value:g}{' ' + self.unit if self.unit else ''}: "
                                 f"choose {self.range_text()}.")


MAX_HORIZON_DAYS = 3 * 365

PARAMETERS: list[Parameter] = [
    Parameter("points", "points", "EGMS points",
              "EGMS .zip/.csv, or any point layer with yyyymmdd date fields", optional=False,
              processing_name="INPUT"),
    Parameter("dem", "raster", "DEM (elevation prior)", "elevation raster, any CRS and resolution"),
    Parameter("geology", "polygons", "Geology polygons", "geology map: polygons with a unit field"),
    Parameter("geology_field", "field", "Geology unit field", "the field of the geology polygons that "
              "names the unit", parent="geology"),
    Parameter("soil", "polygons", "Soil polygons", "soil map: polygons with a class field"),
    Parameter("soil_field", "field", "Soil class field", "the field of the soil polygons that names "
              "the class", parent="soil"),
    Parameter("aoi", "aoi", "Area of interest",
              "polygon file, or WKT text (EPSG:xxxx;POLYGON(...)); default: every point"),
    Parameter("cell_size_m", "float", "Cell size", "grid cell size of the forecast maps", default=100.0,
              unit="m", minimum=5.0, maximum=5000.0, optional=False, flag="--cell-size",
              processing_name="CELL_SIZE"),
    Parameter("horizon_days", "int", "Forecast horizon", "how far ahead to forecast", default=365,
              unit="days", minimum=1, maximum=MAX_HORIZON_DAYS, optional=False,
              commands=frozenset({"forecast"})),
    Parameter("holdout_days", "int", "Held-out period", "the last days kept back and scored", default=365,
              unit="days", minimum=6, maximum=MAX_HORIZON_DAYS, optional=False,
              commands=frozenset({"backtest"})),
    Parameter("threshold_mm", "float", "Exceedance threshold",
              "change since the forecast origin whose passing is mapped as a probability "
              "(negative: subsidence below it; positive: uplift above it)", default=-10.0, unit="mm",
              minimum=-1000.0, maximum=1000.0, optional=False),
    Parameter("use_priors", "bool", "Use the prior maps",
              "off: ignore DEM, geology and soil (the ablation without priors)", default=True,
              optional=False, advanced=True, flag="--priors", processing_name="USE_PRIORS"),
    Parameter("model", "choice", "Model",
              "base: the shipped base model, fine-tuned on this area; zero-shot: the base model as it is; "
              "scratch: a model trained on this area alone", default="base",
              choices=("base", "zero-shot", "scratch"), optional=False, advanced=True),
    Parameter("init_from", "checkpoint", "Start from model",
              "model.safetensors of an earlier forecast or pretraining: fine-tune it on this area "
              "instead of the base model", advanced=True),
    Parameter("epochs", "int", "Training passes", "passes over the training windows; empty: the built-in "
              "budget", minimum=1, maximum=1000, advanced=True),
    Parameter("seed", "int", "Random seed", "the same seed gives the same forecast on the CPU", default=0,
              minimum=0, maximum=2**31 - 1, optional=False, advanced=True),
    Parameter("device", "choice", "Device", "where the network runs: auto takes a GPU when there is one",
              default="auto", choices=("auto", "cpu", "cuda"), optional=False, advanced=True),
    Parameter("out_dir", "folder", "Output folder", "the folder the results are written to",
              optional=False, flag="--out", processing_name="OUTPUT_FOLDER"),
]


def parameters_for(command: str, front: str) -> list[Parameter]:
    """The parameters `command` takes, in the order a front end shows them."""
    return [p for p in PARAMETERS if command in p.commands and front in p.fronts]


def parameter(name: str) -> Parameter:
    for p in PARAMETERS:
        if p.name == name:
            return p
    raise KeyError(name)


# Fine-tuning the base model: a short, gentle budget. On the real burst the base model fine-tuned
# for 4 passes of 20 steps and the base model as it is scored the same to 0.01 mm
# (bench/base_model.py), so the budget is set by speed: a forecast of a burst in about 30 s.
FEW_SHOT_EPOCHS = 2
FEW_SHOT_STEPS = 8
FEW_SHOT_VALIDATION_TILES = 32
FINE_TUNE_LEARNING_RATE = 5e-4  # gentle: the pretrained weights are the point


@dataclass
class TrainOptions:
    """The training budget. Not a front-end parameter: the bench and tests set it on RunConfig."""

    epochs: int = 24
    steps_per_epoch: int = 20
    batch_tiles: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 5
    variography_weight: float = 0.05
    validation_tiles: int = 96  # at most this many tiles validate: the cost does not grow with the area
    seed: int = 0
    device: str = "auto"


@dataclass
class RunConfig:
    """One run's values; the fields are PARAMETERS' names, plus the training budget."""

    points: str
    out_dir: str
    dem: str | None = None
    geology: str | None = None
    geology_field: str | None = None
    soil: str | None = None
    soil_field: str | None = None
    aoi: str | None = None
    cell_size_m: float = 100.0
    horizon_days: int = 365
    holdout_days: int = 365  # backtest only
    threshold_mm: float = -10.0
    use_priors: bool = True  # off: the ablation without prior layers
    model: str = "base"  # base (fine-tuned) | zero-shot | scratch
    init_from: str | None = None  # a model.safetensors to fine-tune instead of the base model
    epochs: int | None = None  # None: the training budget's own
    seed: int = 0
    device: str = "auto"
    training: TrainOptions = field(default_factory=TrainOptions)

    def check(self, command: str = "forecast") -> None:
        """InputError, in the user's words, for the first value outside its parameter's range."""
        for p in PARAMETERS:
            if command in p.commands:
                p.check(getattr(self, p.name))
        for name in ("geology", "soil"):
            if getattr(self, name) and not getattr(self, f"{name}_field"):
                raise InputError(f"{getattr(self, name)}: give the {name} class field "
                                 f"({parameter(name + '_field').cli_flag}).")

    @property
    def fine_tunes(self) -> bool:
        """True when training starts from pretrained weights rather than from nothing."""
        return bool(self.init_from) or self.model == "base"

    def train_options(self) -> TrainOptions:
        """The budget with this run's seed, device and passes."""
        options = replace(self.training, seed=self.seed, device=self.device)
        if self.fine_tunes and self.epochs is None:
            options.epochs = min(options.epochs, FEW_SHOT_EPOCHS)
        if self.fine_tunes:
            options.learning_rate = min(options.learning_rate, FINE_TUNE_LEARNING_RATE)
            options.steps_per_epoch = min(options.steps_per_epoch, FEW_SHOT_STEPS)
            options.validation_tiles = min(options.validation_tiles, FEW_SHOT_VALIDATION_TILES)
        if self.epochs is not None:
            options.epochs = max(1, int(self.epochs))
        return options

    @classmethod
    def from_values(cls, values: dict) -> RunConfig:
        """A config from a front end's {name: value}; names it does not know are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"unknown run parameters: {', '.join(unknown)}")
        return cls(**values)
