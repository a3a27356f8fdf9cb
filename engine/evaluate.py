"""Backtest scoring: forecasts at the input points against their held-out values."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .baselines import persistence, timefn_fit
from .metrics import coverage, crps_from_quantiles, mae, nearest_epoch_index, r2, rmse
from .points import PointSeries

if TYPE_CHECKING:
    from .params import RunConfig
    from .prepare import Scene
    from .run import Forecast

BACKTEST_HORIZONS_DAYS = (12, 90, 180, 365)


def held_out(full: PointSeries, train: PointSeries) -> tuple[np.ndarray, np.ndarray]:
    """(dates [E] after the training period, observed values [E, N] in train's point order, NaN missing)."""
    index = {pid: i for i, pid in enumerate(full.ids)}
    rows = np.array([index[p] for p in train.ids])
    future = full.dates > train.dates[-1]
    truth = np.where(full.valid[rows][:, future], full.displacement_mm[rows][:, future], np.nan)
    return full.dates[future], truth.T


def on_epochs(dates_fc: np.ndarray, values: np.ndarray, dates_future: np.ndarray) -> np.ndarray:
    """A forecast [..., H, N] on its own dates -> [..., E, N] on the held-out epochs (nearest step)."""
    step_of = np.clip(nearest_epoch_index(dates_fc, dates_future), 0, len(dates_fc) - 1)
    return values[..., step_of, :]


def score(truth: np.ndarray, preds: dict, dates_future: np.ndarray, origin: np.datetime64,
          horizons_days, reference: np.ndarray | None = None, range_mm: float = float("nan"),
          common: bool = True) -> dict:
    """Scores of each forecast in preds {name: [E, N]} against truth [E, N] on the held-out dates.

    Per horizon: RMSE, MAE, R² at the held-out epoch nearest origin + horizon. `common`: every
    model is scored on the cases where all of them have a forecast (a fair table); otherwise
    each on its own. Pooled over those epochs: the same three, R² of the change since
    `reference` [N] (the last observed value), RMSE / std(truth) and RMSE / range_mm.
    """
    targets = np.datetime64(origin, "D") + np.asarray(horizons_days).astype("timedelta64[D]")
    epochs = nearest_epoch_index(dates_future, targets)
    reference = np.zeros(truth.shape[1]) if reference is None else reference
    shared = np.isfinite(truth[epochs]) & np.isfinite(reference)[None]
    for pred in preds.values() if common else ():
        shared &= np.isfinite(pred[epochs])
    out = {}
    for name, pred in preds.items():
        guess = pred[epochs]
        ok = shared if common else shared & np.isfinite(guess)
        truth_h = np.where(ok, truth[epochs], np.nan)
        t, g = truth_h[ok], guess[ok]
        rmse_all = rmse(t, g)
        ref = np.broadcast_to(reference, ok.shape)[ok]
        out[name] = {
            "rmse_mm": [rmse(truth_h[i], guess[i]) for i in range(len(epochs))],
            "mae_mm": [mae(truth_h[i], guess[i]) for i in range(len(epochs))],
            "r2": [r2(truth_h[i], guess[i]) for i in range(len(epochs))],
            "pooled": {"rmse_mm": rmse_all, "mae_mm": mae(t, g), "r2": r2(t, g),
                       "r2_change": r2(t - ref, g - ref),
                       "nrmse_std": rmse_all / float(np.std(t)) if t.size else float("nan"),
                       "nrmse_range": rmse_all / range_mm},
        }
    meta = {"horizons_days": [int(h) for h in horizons_days],
            "epochs": [str(dates_future[e]) for e in epochs],
            "n_cases": [int(n) for n in shared.sum(1)], "range_mm": float(range_mm)}
    return {"meta": meta, "models": out}


def score_backtest(full: PointSeries, scene: Scene, fc: Forecast, config: RunConfig):
    """Errors at the input points against their observed values, each horizon at the nearest held-out
    epoch, each model on its own cases."""
    train = scene.points
    dates_future, truth_e = held_out(full, train)  # [E, N]
    truth_all = truth_e.T
    q_at = on_epochs(fc.dates, fc.points_mm, dates_future)  # [Q, E, N]
    last = persistence(train.displacement_mm, train.valid)
    timefn = timefn_fit(train.dates, train.displacement_mm, train.valid).predict(dates_future).T  # [E, N]

    horizons = [h for h in BACKTEST_HORIZONS_DAYS if h <= config.holdout_days]
    models = {"mmstt": q_at[1], "persistence": np.broadcast_to(last, truth_e.shape), "timefn": timefn}
    scored = score(truth_e, models, dates_future, train.dates[-1], horizons, common=False)
    keys = ("rmse_mm", "mae_mm", "r2")
    metrics = {"horizons_days": horizons,
               "models": {name: {k: scores[k] for k in keys} for name, scores in scored["models"].items()}}
    metrics["mmstt_coverage90"] = coverage(truth_e, q_at[0], q_at[2])
    at = nearest_epoch_index(dates_future, train.dates[-1] + np.asarray(horizons).astype("timedelta64[D]"))
    metrics["mmstt_coverage90_by_horizon"] = [coverage(truth_e[e], q_at[0, e], q_at[2, e]) for e in at]
    metrics["mmstt_crps_mm"] = crps_from_quantiles(truth_e, list(fc.quantiles), q_at)
    metrics["variogram_range_m"] = fc.trained.model.variogram_range_m()
    metrics["n_points"] = int(train.n_points)
    metrics["n_epochs_train"] = int(len(train.dates))
    metrics["seconds_train"] = 0.0
    metrics["seconds_forecast"] = 0.0
    metrics["device"] = fc.trained.device

    examples = []
    speed = np.abs(timefn_fit(train.dates, train.displacement_mm, train.valid).coefficient("velocity"))
    finite = np.where(np.isfinite(speed) & np.isfinite(q_at[1]).all(0))[0]
    for i in (
        finite[np.argsort(speed[finite])][::-1][:2].tolist()
        + finite[len(finite) // 2 : len(finite) // 2 + 1].tolist()
    ):
        examples.append(
            {
                "label": f"point {train.ids[i]}",
                "dates_obs": train.dates,
                "obs_mm": np.where(train.valid[i], train.displacement_mm[i], np.nan),
                "dates_truth": dates_future,
                "truth_mm": truth_all[i],
                "dates_fc": fc.dates,
                "q05_mm": fc.points_mm[0, :, i],
                "q50_mm": fc.points_mm[1, :, i],
                "q95_mm": fc.points_mm[2, :, i],
                "timefn_mm": timefn_fit(
                    train.dates, train.displacement_mm[i : i + 1], train.valid[i : i + 1]
                ).predict(fc.dates)[0],
                "persistence_mm": np.full(len(fc.dates), last[i]),
            }
        )
    return metrics, examples
