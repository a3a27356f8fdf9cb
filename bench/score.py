"""One scoring function for every model, the engine's backtest rule made reusable.

As engine.pipeline.score_backtest: at the input points, against the held-out values, each
horizon at the nearest held-out epoch, with engine.metrics. Unlike it, the cases are the ones
where every model has a forecast (so all rows are scored on the same points), and the pooled
normalised scores the MM-STT paper quotes are added.
"""
from __future__ import annotations

import numpy as np

from engine.metrics import mae, nearest_epoch_index, r2, rmse
from engine.points import PointSeries


def held_out(full: PointSeries, train: PointSeries) -> tuple[np.ndarray, np.ndarray]:
    """(dates [E] after the training period, observed values [E, N] in train's point order, NaN missing)."""
    index = {pid: i for i, pid in enumerate(full.ids)}
    rows = np.array([index[p] for p in train.ids])
    future = full.dates > train.dates[-1]
    truth = np.where(full.valid[rows][:, future], full.displacement_mm[rows][:, future], np.nan)
    return full.dates[future], truth.T


def on_epochs(dates_fc: np.ndarray, points_mm: np.ndarray, dates_future: np.ndarray) -> np.ndarray:
    """Forecast [H, N] on its own dates -> [E, N] on the held-out epochs (nearest forecast step)."""
    step_of = np.clip(nearest_epoch_index(dates_fc, dates_future), 0, len(dates_fc) - 1)
    return points_mm[step_of]


def score(truth: np.ndarray, preds: dict, dates_future: np.ndarray, origin: np.datetime64,
          horizons_days, reference: np.ndarray, range_mm: float) -> dict:
    """Scores of each forecast in preds {name: [E, N]} against truth [E, N] on the held-out dates.

    Per horizon: RMSE, MAE, R² at the held-out epoch nearest origin + horizon. Pooled over those
    epochs: the same three, R² of the change since `reference` [N] (the last observed value),
    RMSE / std(truth) and RMSE / range_mm (= RMSE of min-max normalised displacement).
    """
    targets = np.datetime64(origin, "D") + np.asarray(horizons_days).astype("timedelta64[D]")
    epochs = nearest_epoch_index(dates_future, targets)
    ok = np.isfinite(truth[epochs]) & np.isfinite(reference)[None]
    for pred in preds.values():
        ok &= np.isfinite(pred[epochs])
    truth_h = np.where(ok, truth[epochs], np.nan)
    out = {}
    for name, pred in preds.items():
        guess = pred[epochs]
        t, g = truth_h[ok], guess[ok]
        rmse_all = rmse(t, g)
        out[name] = {
            "rmse_mm": [rmse(truth_h[i], guess[i]) for i in range(len(epochs))],
            "mae_mm": [mae(truth_h[i], guess[i]) for i in range(len(epochs))],
            "r2": [r2(truth_h[i], guess[i]) for i in range(len(epochs))],
            "pooled": {"rmse_mm": rmse_all, "mae_mm": mae(t, g), "r2": r2(t, g),
                       "r2_change": r2(t - np.broadcast_to(reference, ok.shape)[ok],
                                       g - np.broadcast_to(reference, ok.shape)[ok]),
                       "nrmse_std": rmse_all / float(np.std(t)) if t.size else float("nan"),
                       "nrmse_range": rmse_all / range_mm},
        }
    meta = {"horizons_days": [int(h) for h in horizons_days],
            "epochs": [str(dates_future[e]) for e in epochs],
            "n_cases": [int(n) for n in ok.sum(1)], "range_mm": float(range_mm)}
    return {"meta": meta, "models": out}
