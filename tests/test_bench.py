"""The benchmark runs end to end on a tiny demo and scores every model on the same cases."""
from __future__ import annotations

import json
import math

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
