"""How low can a point forecast's RMSE go on this file? Baselines beside hindsight fits.

Prints, per backtest horizon and at the same points and epochs `python -m engine backtest`
scores, the RMSE of:

* the baselines fitted on the history (persistence, the mean of the last 5 epochs, a straight
  line, the MintPy-style time function), and 0.9 x the best of them;
* hindsight fits: a straight line, or line + annual + semi-annual terms, fitted to every epoch
  of the file, the held-out ones included. They know the future trend; what they miss is
  mostly the per-epoch noise, so no forecaster that cannot predict that noise should expect
  to beat them.

With `--metrics` (a backtest's metrics.json) MM-STT's figures are added.

    .venv/bin/python bench/noise_floor.py --points EGMS.zip [--holdout-days 365] [--metrics metrics.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.baselines import persistence, timefn_fit  # noqa: E402
from engine.metrics import nearest_epoch_index, rmse  # noqa: E402
from engine.results import ForecastRun  # noqa: E402
from engine.evaluate import BACKTEST_HORIZONS_DAYS  # noqa: E402
from engine.points import read_points  # noqa: E402


def floor_table(points_path: str, holdout_days: int = 365) -> dict:
    """{row name: [RMSE per horizon]} plus the horizons and the per-epoch residual."""
    full = read_points(points_path)
    obs = np.where(full.valid, full.displacement_mm, np.nan)
    seen = full.dates <= full.dates[-1] - np.timedelta64(holdout_days, "D")
    if seen.sum() < 10 or (~seen).sum() < 1:
        raise SystemExit(f"{points_path}: a {holdout_days}-day hold-out leaves too little history.")
    # the points the backtest scores: those with at least one epoch before the cut
    obs = obs[np.isfinite(obs[:, seen]).any(1)]
    hist, dates_hist = obs[:, seen], full.dates[seen]
    truth, dates_future = obs[:, ~seen], full.dates[~seen]
    horizons = [h for h in BACKTEST_HORIZONS_DAYS if h <= holdout_days]
    at = nearest_epoch_index(dates_future, dates_hist[-1] + np.array(horizons).astype("timedelta64[D]"))

    def scores(pred_future):  # pred [E, N]
        return [rmse(truth[:, e], pred_future[e]) for e in at]

    shape = truth.T.shape
    ok = np.isfinite(hist)
    rows = {
        "persistence": scores(np.broadcast_to(persistence(hist, ok), shape)),
        "mean of last 5": scores(np.broadcast_to(persistence(hist, ok, 5), shape)),
        "straight line": scores(
            timefn_fit(dates_hist, hist, ok, annual=False, semiannual=False).predict(dates_future).T
        ),
        "time function": scores(timefn_fit(dates_hist, hist, ok).predict(dates_future).T),
    }
    best = np.min(list(rows.values()), axis=0)
    rows["0.9 x best baseline"] = (0.9 * best).tolist()
    every = np.isfinite(obs)
    line_all = timefn_fit(full.dates, obs, every, annual=False, semiannual=False)
    full_all = timefn_fit(full.dates, obs, every)
    rows["hindsight straight line"] = scores(line_all.predict(dates_future).T)
    rows["hindsight time function"] = scores(full_all.predict(dates_future).T)
    residual = obs - full_all.predict(full.dates)
    return {"horizons_days": horizons, "rows": rows, "residual_mm": float(np.nanstd(residual))}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", required=True)
    ap.add_argument("--holdout-days", type=int, default=365)
    ap.add_argument("--metrics", help="a backtest's folder (or its metrics.json), to add MM-STT's row")
    args = ap.parse_args(argv)
    table = floor_table(args.points, args.holdout_days)
    if args.metrics:
        given = Path(args.metrics)  # the backtest's folder, or its metrics.json
        metrics = ForecastRun.open(given if given.is_dir() else given.parent, kind="backtest").metrics
        if metrics["horizons_days"] != table["horizons_days"]:
            raise SystemExit(f"{args.metrics}: its horizons differ from this hold-out's.")
        table["rows"]["MM-STT (backtest)"] = metrics["models"]["mmstt"]["rmse_mm"]
    hs = table["horizons_days"]
    print(f"{Path(args.points).name}, last {args.holdout_days} days held out")
    print("| RMSE, mm | " + " | ".join(f"{h} d" for h in hs) + " |")
    print("|---|" + "---|" * len(hs))
    for name, values in table["rows"].items():
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    print(f"\nper-epoch residual of the hindsight time function: {table['residual_mm']:.2f} mm")
    return table


if __name__ == "__main__":
    main()
