"""bench/base_model.py compares a run with earlier figures and keeps what a run leaves out."""
from __future__ import annotations

from bench.base_model import changes, keep_from


def backtest(rmse, crps=1.0):
    return {"horizons_days": [12, 90, 180, 365], "models": {"mmstt": {"rmse_mm": rmse}},
            "mmstt_coverage90_by_horizon": [0.9] * 4, "mmstt_crps_mm": crps}


def test_changes_names_each_score_that_got_worse_and_only_those():
    before = {"real": {"/old/place/a.zip": {"fine_tuned": backtest([3.0, 4.0, 4.0, 4.0], 1.60),
                                            "peer": {"rmse_mm": [1.0] * 4}}}}
    now = {"real": {"../data/a.zip": {"fine_tuned": backtest([3.0, 4.1, 3.9, 4.004], 1.55),
                                      "zero_shot": backtest([9.0] * 4)}}}
    table, worse = changes(now, before)
    assert worse == ["a.zip fine_tuned 90 d: RMSE 4.000 → 4.100 mm"]  # 365 d moved by rounding only
    assert "3.00 → 3.00" in table and "1.600 → 1.550" in table
    assert "zero_shot" not in table  # no earlier figure to hold it to
    _, worse = changes({"real": {"a.zip": {"fine_tuned": backtest([3.0, 4.0, 4.0, 4.0], 1.7)}}}, before)
    assert worse == ["a.zip fine_tuned: CRPS 1.600 → 1.700 mm"]


def test_keep_takes_only_what_the_run_left_out():
    before = {"synthetic": {"mean": "old"},
              "real": {"/old/a.zip": {"fine_tuned": backtest([1.0] * 4), "peer": {"rmse_mm": [2.0] * 4}},
                       "/old/b.zip": {"fine_tuned": backtest([5.0] * 4)}}}
    now = {"checkpoint": "x", "real": {"a.zip": {"fine_tuned": backtest([0.5] * 4)}}}
    merged = keep_from(now, before)
    assert merged["synthetic"] == {"mean": "old"}
    assert merged["real"]["a.zip"]["fine_tuned"]["models"]["mmstt"]["rmse_mm"] == [0.5] * 4  # the new one
    assert merged["real"]["a.zip"]["peer"]["rmse_mm"] == [2.0] * 4
    assert merged["real"]["b.zip"]["fine_tuned"]["models"]["mmstt"]["rmse_mm"] == [5.0] * 4
    assert keep_from({"synthetic": {"mean": "new"}}, before)["synthetic"] == {"mean": "new"}
