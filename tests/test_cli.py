"""The command line other tools call: exit codes, one-line errors, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_bad_points_file_gives_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "not_egms.csv"
    bad.write_text("name,value\na,1\nb,2\n")
    out = tmp_path / "out"
    result = run("forecast", "--points", str(bad), "--out", str(out))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "not_egms.csv" in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("pid,easting,northing,20200101,20200101\nA,1,2,0,1\n")
    result = run("--debug", "backtest", "--points", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_demo_data_command_writes_the_region(tmp_path):
    result = run("demo-data", "--out", str(tmp_path / "demo"), "--size-km", "3", "--seed", "2")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "demo" / "EGMS_L2b_demo_2020_2024.csv").exists()


def test_help_lists_the_documented_options():
    text = run("forecast", "--help").stdout
    for option in (
        "--points",
        "--dem",
        "--geology",
        "--geology-field",
        "--soil",
        "--soil-field",
        "--aoi",
        "--cell-size",
        "--horizon-days",
        "--threshold-mm",
        "--seed",
        "--device",
        "--out",
    ):
        assert option in text
    assert "--holdout-days" in run("backtest", "--help").stdout


EGMS_ZIP = REPO / "tests" / "data" / "EGMS_L2b_022_0845_IW2_VV_2020_2024_1.zip"


def test_out_of_range_value_is_one_sentence_naming_the_flag(tmp_path):
    out = tmp_path / "out"
    result = run("forecast", "--points", str(EGMS_ZIP), "--out", str(out), "--cell-size", "2")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --cell-size 2: choose 5 to 5000 m."]
    assert not out.exists()


def test_priors_switch_keeps_its_old_flag():
    from engine.cli import parser

    base = ["forecast", "--points", "p.csv", "--out", "o"]
    assert parser().parse_args(base).use_priors is True
    assert parser().parse_args([*base, "--no-priors"]).use_priors is False
    assert parser().parse_args([*base, "--priors"]).use_priors is True


def test_a_good_run_prints_no_warning(tmp_path):
    """stderr holds the progress lines and the engine's notes, and nothing else (no PROJ warning)."""
    out = tmp_path / "fc"
    result = run("forecast", "--points", str(EGMS_ZIP), "--out", str(out), "--epochs", "1", "--horizon-days",
                 "30", "--cell-size", "200", "--model", "scratch")
    assert result.returncode == 0, result.stderr
    assert (out / "summary.json").is_file()
    assert "warning" not in result.stderr.lower(), result.stderr
    assert "training pass 1/1, mean loss" in result.stderr
