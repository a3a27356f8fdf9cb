"""How good are the maps? forecast.tif's cells against the cells' held-out values.

Holds out the last `--holdout-days`, runs MM-STT as `python -m engine backtest` does, and
scores at the grid cells (the median of the points per cell and epoch, as the engine grids
them), each horizon at the nearest regular epoch:

* the calibrated map (what `forecast.tif` holds),
* the network's own cells before that calibration,
* each cell's level at the origin (persistence) and its time-function fit;

and the 90 % coverage of the calibrated map.

    .venv/bin/python bench/maps.py --points EGMS.zip [--holdout-days 365] [--aoi aoi.geojson]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.aoi import read_aoi  # noqa: E402
from engine.baselines import timefn_fit  # noqa: E402
from engine.evaluate import BACKTEST_HORIZONS_DAYS  # noqa: E402
from engine.params import RunConfig  # noqa: E402
from engine.prepare import prepare  # noqa: E402
from engine.run import forecast_scene  # noqa: E402
from engine.points import read_points  # noqa: E402
from engine.definitions import STEP_DAYS  # noqa: E402
from engine.sample import forecast_area  # noqa: E402
from engine.windows import make_area  # noqa: E402


def map_scores(config: RunConfig, holdout_days: int) -> dict:
    full = read_points(config.points, aoi=read_aoi(config.aoi) if config.aoi else None)
    scene = prepare(config, until=full.dates[-1] - np.timedelta64(holdout_days, "D"), points=full)
    observed = prepare(config, points=full).cube.displacement_mm  # same grid, every epoch
    fc = forecast_scene(scene, config, holdout_days, log=lambda *a: None)
    T, h, w = scene.cube.displacement_mm.shape
    area = make_area(scene.cube, scene.priors, fc.trained.model.config)
    raw, level = forecast_area(fc.trained, area)
    hist = scene.cube.displacement_mm.reshape(T, -1).T
    fit = timefn_fit(scene.regular.dates[:T], hist, np.isfinite(hist))
    timefn = fit.predict(fc.dates).T.reshape(-1, h, w)
    horizons = [d for d in BACKTEST_HORIZONS_DAYS if d <= holdout_days]
    rows = {"calibrated map": [], "network's own cells": [], "persistence (level)": [], "time function": []}
    coverage = []
    for days in horizons:
        k = min(max(round(days / STEP_DAYS) - 1, 0), len(fc.dates) - 1)
        if T + k >= len(observed):
            raise SystemExit(f"{config.points}: no held-out epoch {days} days after the cut.")
        truth = observed[T + k, :h, :w]
        ok = np.isfinite(truth) & np.isfinite(fc.cells_mm[1, k]) & np.isfinite(raw[1, k])
        for name, pred in zip(rows, (fc.cells_mm[1, k], level + raw[1, k], level, timefn[k])):
            rows[name].append(float(np.sqrt(np.mean((truth[ok] - pred[ok]) ** 2))))
        coverage.append(float(((fc.cells_mm[0, k] <= truth) & (truth <= fc.cells_mm[2, k]))[ok].mean()))
    return {"horizons_days": horizons, "rows": rows, "coverage90": coverage,
            "cell_shares": fc.trained.log["cell_shares"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", required=True)
    ap.add_argument("--aoi")
    ap.add_argument("--holdout-days", type=int, default=365)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    config = RunConfig(points=args.points, out_dir="", aoi=args.aoi, seed=args.seed)
    table = map_scores(config, args.holdout_days)
    hs = table["horizons_days"]
    print(f"{Path(args.points).name}, last {args.holdout_days} days held out, RMSE at the cells")
    print("| RMSE, mm | " + " | ".join(f"{h} d" for h in hs) + " |")
    print("|---|" + "---|" * len(hs))
    for name, values in table["rows"].items():
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    print("| 90 % coverage, calibrated | " + " | ".join(f"{v:.2f}" for v in table["coverage90"]) + " |")
    return table


if __name__ == "__main__":
    main()
