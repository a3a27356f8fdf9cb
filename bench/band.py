"""Is the 90 % band honest point by point, not only pooled? Coverage by how noisy a point is.

    .venv/bin/python bench/band.py FILE [FILE ...] [--model base|zero-shot|scratch]

On the backtest's split (last 365 days held out), each file is forecast twice: with one band per
cell for all its points (every spread but none taken away from the calibration) and with the band
each point gets by default (widened by its own scatter, as much as the validation period says).
The points are cut into thirds by their epoch-to-epoch noise (`engine.calibrate.robust_noise`,
the MAD of first differences: not the scatter the band is widened by), and each third's coverage
per horizon, mean band width, interval score and CRPS are printed. A band that is honest point by
point covers about 90 % in every third.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import engine.calibrate  # noqa: E402
from engine.calibrate import robust_noise  # noqa: E402
from engine.evaluate import BACKTEST_HORIZONS_DAYS, held_out, nearest_epoch_index, on_epochs  # noqa: E402
from engine.metrics import coverage, crps_from_quantiles, interval_score  # noqa: E402
from engine.params import RunConfig  # noqa: E402
from engine.points import read_points  # noqa: E402
from engine.prepare import prepare  # noqa: E402
from engine.run import forecast_scene  # noqa: E402

RECENT_EPOCHS = 61  # the noise is measured on the last year of 6-day epochs, as the calibration reads it


def noise_thirds(noise: np.ndarray) -> np.ndarray:
    """[N] 0, 1 or 2: the third of the points by noise each falls in (ties go to the lower third)."""
    return np.digitize(noise, np.quantile(noise, [1 / 3, 2 / 3]), right=True)


def scores(truth: np.ndarray, q: np.ndarray, levels, epochs: np.ndarray, keep: np.ndarray) -> dict:
    """truth [E, N] and quantiles [3, E, N] on the held-out epochs, for the points `keep` [N]."""
    t, lo, hi = truth[:, keep], q[0][:, keep], q[2][:, keep]
    return {"coverage": [coverage(t[e], lo[e], hi[e]) for e in epochs],
            "width_mm": [float(np.nanmean(hi[e] - lo[e])) for e in epochs],
            "interval_score_mm": interval_score(t, lo, hi),
            "crps_mm": crps_from_quantiles(t, list(levels), q[:, :, keep])}


def bands(path: str, model: str, holdout_days: int = 365) -> list[dict]:
    full = read_points(path)
    cut_date = full.dates[-1] - np.timedelta64(holdout_days, "D")
    config = RunConfig(points=str(path), out_dir="", model=model)
    scene = prepare(config, until=cut_date, points=full)
    dates_future, truth = held_out(full, scene.points)
    horizons = [h for h in BACKTEST_HORIZONS_DAYS if h <= holdout_days]
    targets = scene.points.dates[-1] + np.asarray(horizons).astype("timedelta64[D]")
    epochs = nearest_epoch_index(dates_future, targets)
    noise = robust_noise(scene.regular.displacement_mm[:, -RECENT_EPOCHS:])
    thirds = noise_thirds(noise)
    rows = []
    spreads = engine.calibrate.SPREADS
    for band, allowed in (("one per cell", (0.0,)), ("per point", spreads)):
        engine.calibrate.SPREADS = allowed  # the ablation: the calibration may choose no spread but none
        try:
            fc = forecast_scene(scene, config, holdout_days, log=lambda *_: None)
        finally:
            engine.calibrate.SPREADS = spreads
        q = on_epochs(fc.dates, fc.points_mm, dates_future)
        chosen = fc.trained.log["band_spread"]["points"]
        groups = [("all", np.ones(len(noise), bool))]
        groups += [(f"noise {noise[thirds == k].min():.2f}-{noise[thirds == k].max():.2f} mm", thirds == k)
                   for k in range(3)]
        for name, keep in groups:
            rows.append({"file": Path(path).name, "band": band, "spread": chosen, "points": name,
                         "n": int(keep.sum()), **scores(truth, q, fc.quantiles, epochs, keep)})
    return rows


def table(rows: list[dict], horizons) -> str:
    head = ("| file | band (spread) | points | n | coverage " + " / ".join(f"{h}" for h in horizons)
            + " d | width mm | interval score | CRPS mm |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['file'][:30]} | {r['band']} ({r['spread']:g}) | {r['points']} | {r['n']} | "
                     + " / ".join(f"{c:.2f}" for c in r["coverage"])
                     + " | " + " / ".join(f"{w:.1f}" for w in r["width_mm"])
                     + f" | {r['interval_score_mm']:.2f} | {r['crps_mm']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--model", default="base")
    args = ap.parse_args(argv)
    rows = [row for path in args.files for row in bands(path, args.model)]
    print(table(rows, BACKTEST_HORIZONS_DAYS))


if __name__ == "__main__":
    main()
