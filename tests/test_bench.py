"""The benchmark runs end to end on a tiny demo and scores every model on the same cases."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench.compare import MODELS, main


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    # 2 km demo, one training step per model: checks the plumbing, not the skill
    main(["--demo", "--demo-km", "2", "--quick", "--epochs", "1", "--steps", "1", "--out", str(out)])
    return out


def test_writes_table_files(report):
    for name in ("table.md", "table.json", "rmse_by_horizon.png"):
        assert (report / name).stat().st_size > 0
    assert "| mmstt |" in (report / "table.md").read_text(encoding="utf-8")


def test_every_model_is_scored_at_every_horizon_on_the_same_cases(report):
    data = json.loads((report / "table.json").read_text(encoding="utf-8"))
    assert data["budget"]["epochs"] == 1 and data["budget"]["steps"] == 1
    sections = data["sections"]
    # demo: observed and noise-free truth, each with both point mappings
    assert {(s["against"], s["point_mapping"]) for s in sections} == {
        (a, m) for a in ("observed", "noise-free truth") for m in ("MM-STT's", "level + cell increment")}
    for sec in sections:
        assert sec["horizons_days"] == [12, 90, 180, 365]
        assert len(sec["epochs"]) == 4 and min(sec["n_cases"]) > 0
        assert list(sec["models"]) == list(MODELS)
        for name, m in sec["models"].items():
            for key in ("rmse_mm", "mae_mm", "r2"):
                assert len(m[key]) == 4, (name, key)
            assert all(math.isfinite(v) for v in m["rmse_mm"]), name
            assert math.isfinite(m["pooled"]["nrmse_std"]) and math.isfinite(m["pooled"]["nrmse_range"])
            assert m["parameters"] >= 0 and m["train_seconds"] >= 0
    # the same scored cases in every section of the run
    assert len({tuple(s["n_cases"]) for s in sections if s["against"] == "observed"}) == 1


def test_noise_floor_measures_the_noise_it_was_given(tmp_path):
    from bench.noise_floor import floor_table

    # straight-line motion + white noise of 2 mm: hindsight fits see only the noise
    rng = np.random.default_rng(0)
    dates = np.datetime64("2020-01-03") + np.arange(0, 4 * 365, 6).astype("timedelta64[D]")
    years = (dates - dates[0]).astype(float) / 365.25
    n = 400
    velocity = rng.normal(-5, 3, n)
    series = velocity[:, None] * years[None] + rng.normal(0, 2.0, (n, len(dates)))
    header = "pid,easting,northing," + ",".join(str(d).replace("-", "") for d in dates)
    lines = [header] + [
        f"p{i},{4e6 + 20 * i},{2e6},{','.join(f'{v:.3f}' for v in row)}" for i, row in enumerate(series)
    ]
    path = tmp_path / "line.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = floor_table(str(path), 365)
    rows = table["rows"]
    assert table["horizons_days"] == [12, 90, 180, 365]
    assert abs(table["residual_mm"] - 2.0) < 0.15
    # the true model is a line: its hindsight fit is at the noise, and persistence falls behind it
    assert all(abs(v - 2.0) < 0.35 for v in rows["hindsight straight line"])
    assert rows["persistence"][-1] > rows["straight line"][-1] + 1.0
    best = np.min([rows[k] for k in ("persistence", "mean of last 5", "straight line", "time function")], 0)
    assert np.allclose(rows["0.9 x best baseline"], 0.9 * best)


def test_maps_are_scored_against_the_held_out_cells(demo_data_dir):
    from bench.maps import map_scores
    from engine.params import RunConfig

    config = RunConfig(points=str(demo_data_dir / "EGMS_L2b_demo_2020_2024.csv"), out_dir="", epochs=1,
                       device="cpu")
    table = map_scores(config, 90)
    assert table["horizons_days"] == [12, 90]
    rows = table["rows"]
    assert all(math.isfinite(v) for values in rows.values() for v in values)
    # the calibration only adds what helped on the validation period: never far worse than
    # the network's cells or the cells' persistence
    for h in range(2):
        best = min(rows["network's own cells"][h], rows["persistence (level)"][h])
        assert rows["calibrated map"][h] <= 1.15 * best
    assert all(0.5 <= c <= 1.0 for c in table["coverage90"])
