"""The output folder: names, manifest, reader, and the rule that nothing GroundCast did not write is lost."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from results_fixtures import config_for, tiny_scene_and_forecast, write_tiny_backtest, write_tiny_forecast

from engine import fileio, results
from engine.errors import InputError
from engine.results import ForecastRun, OutputFolder, check_output_folder

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def one_sentence(text: str) -> bool:
    return "\n" not in text and text.endswith(".") and "Errno" not in text and "Error:" not in text


def snapshot(folder: Path) -> dict:
    """{relative path: bytes} of every file under folder."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list:
    ends = (".part", ".replaced", fileio.LOCK_SUFFIX)
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(ends))


# -- the folder and its reader ---------------------------------------------------------------------
def test_forecast_folder_round_trip(tmp_path):
    out = tmp_path / "out"
    summary = write_tiny_forecast(out)
    scene, fc = tiny_scene_and_forecast(0)
    run = ForecastRun.open(out)
    assert run.kind == "forecast" and run.manifest["schema_version"] == results.SCHEMA_VERSION
    assert set(run.files) == set(results.FORECAST_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(results.FORECAST_FILES + (results.MANIFEST,))
    assert run.summary["forecast_dates"] == summary["forecast_dates"]
    np.testing.assert_array_equal(run.forecast_dates, fc.dates)
    assert run.reference_dates == {"cumulative": scene.points.dates[0], "change": scene.points.dates[-1]}
    assert run.threshold_mm == -10.0
    assert leftovers(tmp_path) == []

    with rasterio.open(run.raster("change")) as src:
        change = src.read(masked=True)
        assert src.count == len(fc.dates) and src.nodata == -9999.0
        assert src.tags()["GROUNDCAST_REFERENCE"] == f"change since {scene.points.dates[-1]}"
    with rasterio.open(run.raster("forecast")) as src:
        assert src.tags()["GROUNDCAST_REFERENCE"] == f"cumulative since {scene.points.dates[0]}"
    expected = fc.cells_mm[1] - fc.cells_level_mm[None]
    assert change.mask[:, 0, 0].all()  # the cell far from every point stays nodata
    np.testing.assert_allclose(change.filled(np.nan)[:, 1:, 1:], expected[:, 1:, 1:], rtol=1e-6)
    with rasterio.open(run.raster("change_q05")) as lo, rasterio.open(run.raster("change_q95")) as hi:
        assert (lo.read(masked=True) < change).all() and (hi.read(masked=True) > change).all()


def test_one_point_series_by_index_or_pid(tmp_path):
    write_tiny_forecast(tmp_path / "out")
    scene, fc = tiny_scene_and_forecast(0)
    run = ForecastRun.open(tmp_path / "out")
    assert run.n_points == scene.points.n_points
    by_pid, by_index = run.series(pid="P3"), run.series(3)
    for key in results.SERIES_KEYS:
        np.testing.assert_array_equal(by_pid[key], by_index[key])
    np.testing.assert_allclose(by_pid["q50_mm"], fc.points_mm[1, :, 3], rtol=5e-5)  # 14 bits of mantissa
    np.testing.assert_allclose(by_pid["obs_mm"], scene.points.displacement_mm[3], rtol=5e-5)  # the same
    assert by_pid["x"] == scene.points.x[3]
    assert run._chunk_points is not None  # the chunked store: tests/test_scale.py reads one chunk of it
    with pytest.raises(InputError, match="no point"):
        run.series(pid="nope")


def test_backtest_folder(tmp_path):
    write_tiny_backtest(tmp_path / "bt")
    run = ForecastRun.open(tmp_path / "bt")
    assert run.kind == "backtest" and run.horizons_days == [12]
    assert run.metrics["models"]["mmstt"]["rmse_mm"] == [1.0]
    assert run.backtest_plot.is_file() and run.summary is None
    with pytest.raises(InputError, match="holds a backtest, not a forecast"):
        ForecastRun.open(tmp_path / "bt", kind="forecast")


@pytest.mark.parametrize("content", [
    {"summary.json": {"forecast_dates": ["2024-01-01"], "threshold_mm": -10}},
    {"metrics.json": {"horizon_days": [12], "models": {}}},
    {"summary.json": {}, results.MANIFEST: {"schema_version": 1, "files": {"summary.json": 2}}},
])
def test_a_folder_from_an_older_version_is_one_sentence(tmp_path, content):
    for name, value in content.items():
        (tmp_path / name).write_text(json.dumps(value))
    with pytest.raises(InputError) as info:
        ForecastRun.open(tmp_path)
    assert "older GroundCast" in str(info.value) and one_sentence(str(info.value))


def test_a_folder_from_a_newer_version_or_none_at_all(tmp_path):
    with pytest.raises(InputError, match="no such result folder"):
        ForecastRun.open(tmp_path / "missing")
    with pytest.raises(InputError, match="not a GroundCast result folder"):
        ForecastRun.open(tmp_path)
    (tmp_path / results.MANIFEST).write_text(json.dumps({"schema_version": 99, "files": {}}))
    with pytest.raises(InputError, match="newer GroundCast"):
        ForecastRun.open(tmp_path)


def test_file_names_are_written_in_one_place():
    names = results.FORECAST_FILES + results.BACKTEST_FILES + (results.MANIFEST, results.POINTS_CHANGE)
    sources = [p for folder in ("engine", "ui", "bench", "scripts") for p in (REPO / folder).rglob("*.py")]
    sources.append(REPO / "plugin.py")
    for name in names:
        pattern = re.compile(rf"""["']{re.escape(name)}["']""")
        homes = [p.relative_to(REPO).as_posix() for p in sources
                 if pattern.search(p.read_text(encoding="utf-8"))]
        assert homes == ["engine/results.py"], f"{name} is written in {homes}"


# -- the rule: never delete or overwrite what GroundCast did not write --------------------------------
def test_points_inside_the_output_folder_are_refused_and_unchanged(tmp_path):
    (tmp_path / "points.gpkg").write_bytes(b"the user's 209 dates")
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as info:
        write_tiny_forecast(tmp_path, points=str(tmp_path / "points.gpkg"))
    assert "input file" in str(info.value) and one_sentence(str(info.value))
    assert snapshot(tmp_path) == before and leftovers(tmp_path.parent) == []


def test_a_checkpoint_of_the_folder_being_replaced_is_refused(tmp_path):
    out = tmp_path / "out"
    write_tiny_forecast(out)
    before = snapshot(out)
    with pytest.raises(InputError, match="input file"):
        write_tiny_forecast(out, init_from=str(out / results.MODEL))
    assert snapshot(out) == before


def test_a_users_summary_json_is_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"mine": true}')
    with pytest.raises(InputError) as info:
        write_tiny_forecast(out)
    assert "GroundCast did not write" in str(info.value) and one_sentence(str(info.value))
    assert snapshot(out) == {"summary.json": b'{"mine": true}'}
    assert leftovers(tmp_path) == []


def test_a_users_folder_named_series_npz_is_untouched(tmp_path):
    out = tmp_path / "out"
    (out / "series.npz").mkdir(parents=True)
    (out / "series.npz" / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="GroundCast did not write"):
        write_tiny_forecast(out)
    assert snapshot(out) == {"series.npz/notes.txt": b"keep"}


def test_a_folder_with_the_users_other_files_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="new or empty folder") as info:
        write_tiny_forecast(out)
    assert one_sentence(str(info.value)) and snapshot(out) == {"notes.txt": b"keep"}


def test_an_earlier_result_with_a_users_file_is_refused(tmp_path):
    out = tmp_path / "out"
    write_tiny_forecast(out)
    (out / "my_project.qgz").write_bytes(b"project")
    before = snapshot(out)
    with pytest.raises(InputError, match="my_project.qgz"):
        write_tiny_forecast(out, seed=1)
    assert snapshot(out) == before


def test_an_earlier_result_is_replaced_whole(tmp_path):
    out = tmp_path / "out"
    write_tiny_forecast(out)
    (out / "forecast.tif.aux.xml").write_text("<PAMDataset/>")  # QGIS's statistics: derived, ours
    write_tiny_backtest(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(results.BACKTEST_FILES + (results.MANIFEST,))
    assert ForecastRun.open(out).kind == "backtest" and leftovers(tmp_path) == []


def test_an_empty_folder_is_written_into(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    write_tiny_backtest(out)
    assert ForecastRun.open(out).kind == "backtest"


def test_a_file_as_the_output_folder(tmp_path):
    target = tmp_path / "result"
    target.write_text("a file")
    with pytest.raises(InputError) as info:
        check_output_folder(config_for(target))
    assert "is a file" in str(info.value) and one_sentence(str(info.value))
    assert target.read_text() == "a file"


def test_a_folder_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        check_output_folder(config_for(tmp_path / "file" / "out"))
    with pytest.raises(InputError, match="cannot be written") as info:
        check_output_folder(config_for("/proc/groundcast-results"))
    assert one_sentence(str(info.value))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_a_folder_without_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InputError, match="permission denied") as info:
            check_output_folder(config_for(locked / "out"))
        assert one_sentence(str(info.value))
    finally:
        locked.chmod(0o700)


def test_a_gdal_error_while_writing_fails_the_run_and_writes_nothing(tmp_path, monkeypatch):
    """GDAL reports a full disk while flushing only to its error handler; the run must fail."""
    import logging

    from engine import outputs

    out = tmp_path / "out"
    write_tiny_backtest(out)
    before = snapshot(out)
    real_open = outputs.rasterio.open

    def failing_open(path, mode="r", **kw):
        dataset = real_open(path, mode, **kw)
        if mode == "w":
            logging.getLogger("rasterio._env").info(
                "GDAL signalled an error: err_no=1, msg='_tiffWriteProc:No space left on device'")
        return dataset

    monkeypatch.setattr(outputs.rasterio, "open", failing_open)
    with pytest.raises(InputError) as info:
        write_tiny_forecast(out)
    assert "the disk is full" in str(info.value) and "nothing was written" in str(info.value)
    assert snapshot(out) == before and leftovers(tmp_path) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root only); skipped where it cannot be mounted."""
    mount = tmp_path / "small"
    mount.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small disk needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode:
        pytest.skip("tmpfs cannot be mounted here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_fails_the_run_and_writes_nothing(small_disk, monkeypatch):
    from engine import grid

    big = grid.Grid("EPSG:3035", 4_321_000.0, 3_210_000.0, 100.0, width=300, height=200)
    monkeypatch.setattr("results_fixtures.GRID", big)
    scene, fc = tiny_scene_and_forecast(0)
    noise = np.random.default_rng(0).normal(size=(3, 3, 200, 300))  # incompressible: fills the disk
    fc.cells_mm, fc.cells_level_mm = noise, np.zeros((200, 300))
    config = config_for(small_disk / "out")
    with pytest.raises(InputError) as info:
        with OutputFolder(config) as folder:
            results.write_forecast_folder(folder, config, scene, fc, {})
    assert "the disk is full" in str(info.value) and one_sentence(str(info.value))
    assert list(small_disk.iterdir()) == []


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    with OutputFolder(config_for(out), "backtest"):
        with pytest.raises(InputError) as info:
            write_tiny_backtest(out)
        assert "another GroundCast run" in str(info.value) and one_sentence(str(info.value))
    write_tiny_backtest(out)  # the lock went with the first run
    assert ForecastRun.open(out).kind == "backtest" and leftovers(tmp_path) == []


def test_stale_part_folders_are_removed_but_not_the_users(tmp_path):
    out = tmp_path / "out"
    stale = tmp_path / ".out.abc123.part"
    stale.mkdir()
    (stale / "forecast.tif").write_bytes(b"half")
    marker = {"target": "out", "pid": 1, "started": time.time() - 60}
    (stale / fileio.PART_MARKER).write_text(json.dumps(marker))
    users = tmp_path / ".out.mine.part"  # no marker: not GroundCast's
    users.mkdir()
    (users / "keep.txt").write_text("keep")
    other = tmp_path / ".other.def456.part"  # another destination, whose run was killed
    other.mkdir()
    (other / fileio.PART_MARKER).write_text(json.dumps({"target": "other", "pid": 1, "started": 0}))
    write_tiny_backtest(out)
    assert not stale.exists() and not other.exists()
    assert (users / "keep.txt").read_text() == "keep"


def test_cross_device_staging(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev or not os.access(shm, os.W_OK):
        pytest.skip("no second file system at /dev/shm")
    import tempfile

    other = Path(tempfile.mkdtemp(dir=shm, prefix="groundcast-test-"))
    try:
        link = tmp_path / "usb"
        link.symlink_to(other, target_is_directory=True)
        write_tiny_backtest(link / "out")
        write_tiny_backtest(link / "out")  # and replaced there
        assert ForecastRun.open(link / "out").kind == "backtest"
        assert leftovers(other) == [] and leftovers(tmp_path) == []
        write_tiny_backtest(other / "direct")
        assert ForecastRun.open(other / "direct").kind == "backtest"
    finally:
        import shutil

        shutil.rmtree(other, ignore_errors=True)


# -- killed runs ---------------------------------------------------------------------------------------
KILLED = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{repo!r}, {tests!r}]
    from engine import fileio
    from results_fixtures import write_tiny_forecast
    real = fileio.exchange
    def slow(a, b):
        if {fallback}:
            return False
        print("before", flush=True); time.sleep(0.4)
        done = real(a, b)
        print("after", flush=True); time.sleep(30)
        return done
    real_rename = fileio.os.rename
    def slow_rename(a, b):
        real_rename(a, b)
        if {fallback} and str(b).endswith(".replaced"):
            print("aside", flush=True); time.sleep(30)
    fileio.exchange, fileio.os.rename = slow, slow_rename
    write_tiny_forecast(sys.argv[1], seed=1)
""")


def seed_of(out: Path) -> int:
    """The seed of the complete result in out; fails on a mix of two results."""
    run = ForecastRun.open(out)
    present = {p.name for p in out.iterdir()} - {results.MANIFEST, fileio.PART_MARKER}
    assert present == set(run.files)
    for name, size in run.files.items():
        assert (out / name).stat().st_size == size
    first = run.series(0)["q50_mm"][0]
    seeds = [seed for seed in range(3)  # the series keep 14 bits of mantissa
             if np.isclose(first, tiny_scene_and_forecast(seed)[1].points_mm[1, 0, 0], rtol=5e-5, atol=0)]
    assert len(seeds) == 1
    with rasterio.open(run.raster("forecast")) as src:  # the maps come from the same run as the series
        cell = src.read(1)[1, 1]
    assert cell == np.float32(tiny_scene_and_forecast(seeds[0])[1].cells_mm[1, 0, 1, 1])
    return seeds[0]


@pytest.mark.parametrize("when", ["before", "after", "aside"])
def test_a_run_killed_at_the_switch_leaves_the_old_result_or_the_new(tmp_path, when):
    out = tmp_path / "out"
    write_tiny_forecast(out, seed=0)
    script = KILLED.format(repo=str(REPO), tests=str(TESTS), fallback=when == "aside")
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        while (line := proc.stdout.readline().strip()) != when:
            assert line or proc.poll() is None, "the writer ended before the switch"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    if when == "aside":
        assert not out.exists()  # between the two renames: the next run puts the old result back
        write_tiny_backtest(tmp_path / "elsewhere")  # an unrelated run does not touch it
        with OutputFolder(config_for(out)):
            pass
    assert seed_of(out) == (1 if when == "after" else 0)
    write_tiny_forecast(out, seed=2)  # the next run into the folder removes the litter
    assert seed_of(out) == 2 and leftovers(tmp_path) == []


def test_sigterm_cancels_like_ctrl_c_and_writes_nothing(tmp_path, demo_data_dir):
    from engine.params import PARAMETERS

    out = tmp_path / "out"
    scratch = ["--model", "scratch"] if any(p.name == "model" for p in PARAMETERS) else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "forecast", "--points",
         str(demo_data_dir / "EGMS_L2b_demo_2020_2024.csv"), "--epochs", "1", "--horizon-days", "30",
         "--out", str(out), *scratch],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "train" in line.lower():
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
    finally:
        proc.wait(60)
    assert proc.returncode == 130, "".join(lines) + rest
    assert rest.strip().splitlines()[-1] == "error: interrupted; nothing was written."
    assert not out.exists() and leftovers(tmp_path) == []


# -- the property ----------------------------------------------------------------------------------------
def _other_fs():
    shm = Path("/dev/shm")
    try:
        return shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    except OSError:
        return None


STATES = ["missing", "users_files", "users_output_names", "previous_result", "a_file", "empty"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=st.sampled_from(STATES), other_fs=st.booleans(), names=st.sets(
    st.sampled_from(list(results.BACKTEST_FILES + results.FORECAST_FILES) + ["notes.txt", "a.csv"]),
    min_size=1, max_size=4))
def test_property_no_byte_of_a_users_file_changes(tmp_path_factory, state, other_fs, names):
    import shutil
    import tempfile

    base = tmp_path_factory.mktemp("prop")
    if other_fs and _other_fs() is not None:
        base = Path(tempfile.mkdtemp(dir=_other_fs(), prefix="groundcast-prop-"))
    try:
        out = base / "out"
        if state == "users_files":
            out.mkdir()
            for name in names:
                (out / name).write_bytes(os.urandom(16))
        elif state == "users_output_names":
            out.mkdir()
            for name in names:
                (out / name).mkdir()
                (out / name / "inside.txt").write_bytes(os.urandom(8))
        elif state == "previous_result":
            write_tiny_backtest(out)
        elif state == "a_file":
            out.write_bytes(os.urandom(32))
        elif state == "empty":
            out.mkdir()
        (base / "beside.txt").write_bytes(b"the user's")
        before = snapshot(base)
        users = {k: v for k, v in before.items() if state != "previous_result" or not k.startswith("out/")}
        try:
            write_tiny_backtest(out)
            written = True
        except InputError as exc:
            assert one_sentence(str(exc))
            written = False
        after = snapshot(base)
        for path, content in users.items():
            assert after.get(path) == content, f"{path} changed ({state})"
        assert written == (state in ("missing", "previous_result", "empty"))
        assert [p.name for p in base.iterdir() if p.name.endswith((".part", ".replaced"))] == []
    finally:
        if base.is_relative_to("/dev/shm"):
            shutil.rmtree(base, ignore_errors=True)


def test_a_refused_run_leaves_no_folder_behind(tmp_path):
    deep = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError):
        with OutputFolder(config_for(deep)):
            raise RuntimeError("bad input found while reading")
    assert list(tmp_path.iterdir()) == []
