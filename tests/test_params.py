"""One specification of the run parameters: the CLI, Processing and the dock are built from it."""
from __future__ import annotations

from dataclasses import fields

import pytest

from groundcast.engine import cli, params
from groundcast.engine.errors import InputError
from groundcast.engine.params import PARAMETERS, Parameter, RunConfig, parameters_for

DUMMY = Parameter("dummy_budget", "float", "Dummy budget", "a parameter that exists only in this test",
                  default=3.0, unit="mm", minimum=2.0, maximum=7.5, optional=False, advanced=True)


@pytest.fixture
def dummy():
    """DUMMY added to the specification itself (in place: every front end sees the same list)."""
    PARAMETERS.append(DUMMY)
    try:
        yield DUMMY
    finally:
        PARAMETERS.remove(DUMMY)


def _cli_args(*extra, command="forecast"):
    return cli.parser().parse_args([command, "--points", "p.csv", "--out", "out", *extra])


def _cli_help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        cli.parser().parse_args([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_a_new_parameter_reaches_the_cli_with_its_range(dummy, capsys):
    assert _cli_args().dummy_budget == 3.0
    assert _cli_args("--dummy-budget", "4.5").dummy_budget == 4.5
    help_text = _cli_help("forecast", capsys)
    assert "--dummy-budget" in help_text and "2 to 7.5 mm" in help_text
    with pytest.raises(InputError, match=r"--dummy-budget 9: choose 2 to 7\.5 mm"):
        cli.run_config(_cli_args("--dummy-budget", "9"))


def test_a_new_parameter_reaches_processing_with_its_range(dummy, qgis_app):
    from qgis.core import QgsProcessingParameterDefinition, QgsProcessingParameterNumber

    from groundcast.ui.algorithms import BacktestAlgorithm, ForecastAlgorithm

    for cls in (ForecastAlgorithm, BacktestAlgorithm):
        alg = cls()
        alg.initAlgorithm()
        definition = alg.parameterDefinition("DUMMY_BUDGET")
        assert isinstance(definition, QgsProcessingParameterNumber)
        assert (definition.minimum(), definition.maximum(), definition.defaultValue()) == (2.0, 7.5, 3.0)
        assert definition.dataType() == QgsProcessingParameterNumber.Double
        assert definition.flags() & QgsProcessingParameterDefinition.FlagAdvanced
        assert "mm" in definition.description()


def test_a_new_parameter_reaches_the_dock_with_its_range(dummy, qgis_app):
    from groundcast.ui.panels.parameters import dock_parameters, value_of, widgets_for

    shown = dock_parameters()
    assert DUMMY in shown
    spin = widgets_for(shown)["dummy_budget"]
    assert (spin.minimum(), spin.maximum()) == (2.0, 7.5)
    assert value_of(DUMMY, spin) == 3.0
    assert spin.suffix().strip() == "mm"


def test_processing_and_cli_ranges_are_the_specifications(qgis_app, capsys):
    from qgis.core import QgsProcessingParameterDefinition

    from groundcast.ui.algorithms import BacktestAlgorithm, ForecastAlgorithm

    for cls in (ForecastAlgorithm, BacktestAlgorithm):
        alg = cls()
        alg.initAlgorithm()
        specs = parameters_for(cls.NAME, "processing")
        assert {p.processing_key for p in specs} <= {d.name() for d in alg.parameterDefinitions()}
        for p in specs:
            definition = alg.parameterDefinition(p.processing_key)
            optional = bool(definition.flags() & QgsProcessingParameterDefinition.FlagOptional)
            assert optional == p.optional, p.name
            assert bool(definition.flags() & QgsProcessingParameterDefinition.FlagAdvanced) == p.advanced
            if p.minimum is not None:
                assert (definition.minimum(), definition.maximum()) == (p.minimum, p.maximum), p.name
        help_text = _cli_help(cls.NAME, capsys)
        for p in parameters_for(cls.NAME, "cli"):
            assert p.cli_flag in help_text, p.name
            if p.minimum is not None:
                assert cli._range(p) in help_text, p.name


def test_run_config_fields_are_the_specifications_names():
    assert {f.name for f in fields(RunConfig)} == {p.name for p in PARAMETERS} | {"training"}
    for p in PARAMETERS:
        if p.default is not None:
            assert getattr(RunConfig(points="p", out_dir="o"), p.name) == p.default, p.name


@pytest.mark.parametrize("spec", [p for p in PARAMETERS if p.minimum is not None or p.choices],
                         ids=lambda p: p.name)
def test_run_config_check_enforces_every_range(spec):
    command = sorted(spec.commands)[0]

    def config(value):
        return RunConfig(points="p.csv", out_dir="out", **{spec.name: value})

    if spec.choices:
        for choice in spec.choices:
            config(choice).check(command)
        with pytest.raises(InputError, match=spec.label):
            config("no such choice").check(command)
        return
    config(spec.minimum).check(command)
    config(spec.maximum).check(command)
    step = 1 if spec.kind == "int" else 0.5
    for outside in (spec.minimum - step, spec.maximum + step):
        with pytest.raises(InputError, match=spec.label):
            config(outside).check(command)


def test_required_values_are_enforced():
    with pytest.raises(InputError, match=params.parameter("points").label):
        RunConfig(points="", out_dir="out").check("forecast")
