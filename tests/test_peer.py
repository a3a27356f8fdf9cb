"""The benchmark's foundation-model peer: its packaged weights forecast, on the backtest's split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import peer
from bench.base_model import peer_backtest
from engine.params import RunConfig
from engine.run import run_backtest

TESTS_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def model():
    return peer.load_model()


def test_peer_continues_a_steady_trend_and_skips_short_series(model):
    rng = np.random.default_rng(3)
    steps, history = 30, 200
    t = np.arange(history + steps)
    rates = np.array([-0.5, -0.2, 0.3, 0.6])  # mm per 6-day epoch
    truth = rates[:, None] * t[None]
    series = (truth[:, :history] + rng.normal(0, 0.3, (len(rates), history))).astype(np.float32)
    series[:, rng.random(history) < 0.1] = np.nan
    short = np.full((1, history), np.nan, np.float32)
    short[0, -5:] = 1.0  # fewer values than the peer accepts
    q = peer.forecast_points(np.vstack([series, short]), steps, model)
    assert q.shape == (3, steps, len(rates) + 1)
    assert np.isnan(q[:, :, -1]).all() and np.isfinite(q[:, :, :-1]).all()
    assert (np.diff(q[:, :, :-1], axis=0) >= -1e-4).all()  # 0.1 <= 0.5 <= 0.9
    future = truth[:, history:].T
    held = np.broadcast_to(series[:, -1], future.shape)
    # a forecaster that ignored the trend would match persistence; this one halves its error (0.5 measured)
    assert np.sqrt(np.mean((q[1, :, :-1] - future) ** 2)) < 0.7 * np.sqrt(np.mean((held - future) ** 2))


def test_peer_is_scored_on_the_split_of_the_engine_backtest(tmp_path):
    points = TESTS_DATA / "EGMS_L3_E45N17_100km_U_2020_2024_1.zip"
    metrics = run_backtest(RunConfig(points=str(points), out_dir=str(tmp_path / "bt"), model="zero-shot"),
                           log=lambda *_: None)
    result = peer_backtest(str(points))
    assert result["persistence_rmse_mm"] == pytest.approx(metrics["models"]["persistence"]["rmse_mm"])
    assert len(result["rmse_mm"]) == len(metrics["horizons_days"]) and np.isfinite(result["rmse_mm"]).all()
    assert all(0.0 <= c <= 1.0 for c in result["coverage80_by_horizon"])
    assert result["n_points"] == metrics["n_points"]
