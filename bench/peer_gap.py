"""Our 12-day forecast against the zero-shot peer's, point by point, on the backtest's split.

    .venv/bin/python bench/peer_gap.py FILE [--model base|zero-shot] [--top 8]

A 12-day score is one held-out epoch, so a few points can decide it. Printed: both RMSEs, the
90 % interval of their difference from a paired bootstrap over the points, the RMSEs without the
`--top` points where the two differ most, and those points' last values.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench import peer  # noqa: E402
from engine.definitions import STEP_DAYS  # noqa: E402
from engine import metrics  # noqa: E402
from engine.evaluate import held_out, nearest_epoch_index, on_epochs  # noqa: E402
from engine.params import RunConfig  # noqa: E402
from engine.points import read_points  # noqa: E402
from engine.prepare import prepare  # noqa: E402
from engine.run import forecast_scene  # noqa: E402
from engine.windows import forecast_dates  # noqa: E402


def rmse(error: np.ndarray) -> float:
    return metrics.rmse(error, np.zeros_like(error))


def gap(path: str, model: str = "base", days: int = 12, holdout_days: int = 365, draws: int = 4000) -> dict:
    full = read_points(path)
    cut_date = full.dates[-1] - np.timedelta64(holdout_days, "D")
    config = RunConfig(points=str(path), out_dir="", model=model)
    scene = prepare(config, until=cut_date, points=full)
    fc = forecast_scene(scene, config, holdout_days, log=lambda *_: None)
    dates_future, truth = held_out(full, scene.points)
    at = scene.points.dates[-1] + np.array([days]).astype("timedelta64[D]")
    epoch = nearest_epoch_index(dates_future, at)[0]
    ours = on_epochs(fc.dates, fc.points_mm, dates_future)[1][epoch]
    regular = scene.regular
    steps = math.ceil(days / STEP_DAYS) + 2
    theirs = peer.forecast_points(np.where(regular.valid, regular.displacement_mm, np.nan), steps)
    dates_peer = forecast_dates(regular.dates, len(regular.dates), steps)
    theirs = on_epochs(dates_peer, theirs, dates_future)[1][epoch]
    t = truth[epoch]
    ok = np.isfinite(t) & np.isfinite(ours) & np.isfinite(theirs)
    e_ours, e_peer = ours[ok] - t[ok], theirs[ok] - t[ok]
    rng = np.random.default_rng(0)
    n = int(ok.sum())
    diffs = [rmse(e_ours[i]) - rmse(e_peer[i]) for i in (rng.integers(0, n, n) for _ in range(draws))]
    order = np.argsort(-(e_ours ** 2 - e_peer ** 2))
    return {"epoch": str(dates_future[epoch]), "points": n, "ours": rmse(e_ours), "peer": rmse(e_peer),
            "interval90": np.percentile(diffs, [5, 95]).tolist(), "order": order, "e_ours": e_ours,
            "e_peer": e_peer, "index": np.nonzero(ok)[0], "ours_values": ours[ok], "peer_values": theirs[ok],
            "truth": t[ok], "history": np.where(regular.valid, regular.displacement_mm, np.nan)[ok]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--model", default="base", choices=("base", "zero-shot"))
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args(argv)
    r = gap(args.file, args.model)
    lo, hi = r["interval90"]
    print(f"{Path(args.file).name}, held-out epoch {r['epoch']}, {r['points']} points")
    print(f"12-day RMSE: ours {r['ours']:.3f} mm, peer {r['peer']:.3f} mm; "
          f"ours - peer, 90 % paired bootstrap: {lo:+.3f} to {hi:+.3f} mm")
    rest = r["order"][args.top:]
    print(f"without the {args.top} points where the two differ most: ours {rmse(r['e_ours'][rest]):.3f}, "
          f"peer {rmse(r['e_peer'][rest]):.3f} mm")
    for i in r["order"][:args.top]:
        last = " ".join(f"{v:.1f}" for v in r["history"][i][np.isfinite(r["history"][i])][-6:])
        print(f"  point {r['index'][i]}: last values {last}, held out {r['truth'][i]:.1f}, "
              f"ours {r['ours_values'][i]:.1f}, peer {r['peer_values'][i]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
