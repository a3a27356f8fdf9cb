"""Forecasts where history is short: held-out synthetic regions whose cells are seen only for their
last months, scored against the truth at those cells, with the priors and without them.

    .venv/bin/python bench/short_history.py --regions 6 --keep-epochs 20 --out bench/out/short

In each held-out region (engine.corpus, seeds at or above HELD_OUT_SEED, half of them of the held-out
configuration) the history before the last `--keep-epochs` epochs before the origin is blanked at
some cells: a random half of them ("scattered": new points among old ones, whose neighbours know
the area), or the western half of the region ("district": a new district, where only the priors
and the far side know it). The forecast is made a year before the region's end, as in
bench/base_model.py, and scored only at the blanked cells. Priors are where a model can learn how
ground it has barely seen moves, so this is where "priors on against off" should show, if anywhere.

Rows: persistence, the time-function fit, the calibrated forecast zero-shot and fine-tuned, and
the network's own cells (`*_network`, the median before the calibrated mapping), each with the
region's priors and with none (`*_no_priors`: blank maps, as for a file with no DEM or geology).
`fine_tuned_from_neighbours` gives each blanked cell the inverse-distance mean of the fine-tuned
forecast's increments at the 8 nearest cells that kept their history, `fine_tuned_from_maps` the
same increments regressed on the prior maps at those cells (`map_features`). The `oracle_*` rows are
ceilings that see the truth of the forecast year at the other cells (see `oracles`): how far the
prior maps, the neighbours, or both could take a forecast at all.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.base_model import cells_as_points  # noqa: E402
from engine.baselines import origin_level, timefn_fit  # noqa: E402
from engine.corpus import HELD_OUT_CONFIG, HELD_OUT_SEED, PRETRAIN_CONFIGS, make_region  # noqa: E402
from engine.definitions import STEP_DAYS  # noqa: E402
from engine.evaluate import BACKTEST_HORIZONS_DAYS  # noqa: E402
from engine.metrics import rmse  # noqa: E402
from engine.params import RunConfig  # noqa: E402
from engine.priors import build_priors  # noqa: E402
import engine.run  # noqa: E402
import engine.sample  # noqa: E402
from engine.run import forecast_scene  # noqa: E402
from engine.sample import forecast_area  # noqa: E402
from engine.windows import forecast_dates, make_area  # noqa: E402

HORIZON_DAYS = 365
LAYOUTS = ("scattered", "district")
MODELS = {"zero_shot": "zero-shot", "fine_tuned": "base"}


def blanked_cells(shape: tuple, layout: str, rng) -> np.ndarray:
    """[rows, cols] True where a cell's early history is blanked."""
    if layout == "scattered":
        return rng.random(shape) < 0.5
    mask = np.zeros(shape, bool)
    mask[:, : shape[1] // 2] = True
    return mask


def score_layout(region, layout: str, keep_epochs: int, seed: int, rng) -> dict | None:
    """RMSE (mm) per horizon at the blanked cells for every row; None where too few cells have data."""
    steps = math.ceil(HORIZON_DAYS / STEP_DAYS)
    T = len(region.cube.dates)
    anchor = T - steps
    mask = blanked_cells(region.cube.displacement_mm.shape[1:], layout, rng)
    observed = region.cube.displacement_mm.copy()
    observed[: anchor - keep_epochs, mask] = np.nan
    short = replace(region, cube=replace(region.cube, displacement_mm=observed))
    scene = cells_as_points(short, anchor)
    rows, cols = np.nonzero(np.isfinite(observed[:anchor]).any(0))
    at = mask[rows, cols]
    if at.sum() < 5:
        return None
    yx = np.column_stack([rows, cols]).astype(float)
    truth = region.truth_mm[anchor:, rows[at], cols[at]]
    lead = [min(max(round(h / STEP_DAYS) - 1, 0), steps - 1) for h in BACKTEST_HORIZONS_DAYS]
    series = scene.points.displacement_mm[at]
    medians = {
        "persistence": np.repeat(origin_level(series, axis=1)[None], steps, 0),
        "timefn": timefn_fit(scene.points.dates, series, np.isfinite(series)).predict(
            forecast_dates(region.cube.dates, anchor, steps)).T,
    }
    medians.update(oracles(region, anchor, rows, cols, at, medians["persistence"]))
    for row, model in MODELS.items():
        for suffix, priors in (("", scene.priors), ("_no_priors", build_priors(scene.cube.grid))):
            sc = replace(scene, priors=priors)
            config = RunConfig(points="", out_dir="", model=model, seed=seed)
            fc = forecast_scene(sc, config, steps * STEP_DAYS, log=lambda *_: None)
            medians[row + suffix] = fc.points_mm[1][:, at]
            if row == "fine_tuned" and not suffix:  # what a forecaster could borrow from its neighbours
                old_level = origin_level(scene.points.displacement_mm[~at], axis=1)
                older = (fc.points_mm[1][:, ~at] - old_level).T  # [older cells, H] their forecast increments
                borrowed = inverse_distance(yx[~at], older, yx[at])
                medians["fine_tuned_from_neighbours"] = medians["persistence"] + borrowed.T
                # the area's own reading of its maps: the older cells' forecasts regressed on them
                maps = map_features(scene.priors, rows, cols)
                read = fitted(maps[~at], maps[at], older)
                medians["fine_tuned_from_maps"] = medians["persistence"] + read.T
            area = make_area(sc.cube, sc.priors, fc.trained.model.config)
            increments, level = forecast_area(fc.trained, area)
            medians[f"{row}_network{suffix}"] = (level[None] + increments[1])[:steps, rows[at], cols[at]]
            if row == "fine_tuned" and not suffix:  # the network's own young cells, before the borrowing
                with patch.object(engine.sample, "borrow_for_young_cells", lambda *_: None):
                    increments, level = forecast_area(fc.trained, area)
                own = (level[None] + increments[1])[:steps, rows[at], cols[at]]
    metres = region.cube.grid.cell_size_m * np.min(
        np.hypot(*(yx[at][:, None] - yx[~at][None]).transpose(2, 0, 1)), axis=1)
    by_distance = {"distance_m": metres.tolist(), "lead_days": [BACKTEST_HORIZONS_DAYS[i] for i in (1, 3)]}
    for name, median in (("persistence", medians["persistence"]), ("network_own", own),
                         ("network_borrowed", medians["fine_tuned_network"])):
        by_distance[name] = [(median[lead[i]] - truth[lead[i]]).tolist() for i in (1, 3)]
    return {"n_cells": int(at.sum()), "by_distance": by_distance,
            "rmse_mm": {row: [rmse(truth[k], median[k]) for k in lead] for row, median in medians.items()}}


def oracles(region, anchor: int, rows, cols, at, level) -> dict:
    """Ceilings, not forecasts: the blanked cells' increments from the origin read off the truth of
    the forecast year at the other cells, through the prior maps (least squares on elevation, slope,
    geology and soil classes), through the nearest cells (inverse-distance mean of the 8 nearest),
    and through both. What no forecaster could know bounds what the priors could be worth here."""
    steps = len(level)
    truth = region.truth_mm[anchor - 1 : anchor + steps, rows, cols]
    increments = (truth[1:] - truth[:1]).T  # [N, H]
    known = ~at & np.isfinite(increments).all(1)
    maps = map_features(region.priors, rows, cols)
    yx = np.column_stack([rows, cols]).astype(float)

    near = inverse_distance(yx[known], increments[known], yx[at])
    near_known = inverse_distance(yx[known], increments[known], yx[known])

    out = {"oracle_priors": fitted(maps[known], maps[at], increments[known]), "oracle_neighbours": near}
    # the neighbours' increment at each lead, beside the maps
    out["oracle_both"] = np.stack([
        fitted(np.column_stack([maps[known], near_known[:, k]]), np.column_stack([maps[at], near[:, k]]),
               increments[known][:, k]) for k in range(steps)], 1)
    return {name: level + increment.T for name, increment in out.items()}


def map_features(priors, rows, cols) -> np.ndarray:
    """[N, F] the prior maps at the cells: a constant, elevation and slope (z-scored), one column
    per geology and soil class."""
    def zscored(values):
        values = np.nan_to_num(values[rows, cols].astype(float))
        return (values - values.mean()) / max(values.std(), 1e-9)

    columns = [np.ones(len(rows)), zscored(priors.elevation_m), zscored(priors.slope_deg)]
    for classes in (priors.geology, priors.soil):
        columns += [(classes[rows, cols] == k).astype(float) for k in np.unique(classes[rows, cols])[1:]]
    return np.stack(columns, 1)


def fitted(design_known: np.ndarray, design_at: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Ridge least squares of `goal` on `design_known`, applied to `design_at`."""
    ridge = 1e-3 * len(design_known) * np.eye(design_known.shape[1])
    return design_at @ np.linalg.solve(design_known.T @ design_known + ridge, design_known.T @ goal)


def inverse_distance(yx_from: np.ndarray, values: np.ndarray, yx_to: np.ndarray, k: int = 8) -> np.ndarray:
    """[n_to, H] the inverse-distance mean of `values` [n_from, H] at the k nearest cells, a cell
    itself left out."""
    distance = np.hypot(*(yx_to[:, None] - yx_from[None]).transpose(2, 0, 1))
    distance[distance == 0] = np.inf
    nearest = np.argsort(distance, axis=1)[:, :k]
    weight = 1 / np.take_along_axis(distance, nearest, 1)
    return (weight[..., None] * values[nearest]).sum(1) / weight.sum(1)[:, None]


def run(n_regions: int, keep_epochs: int, seed: int, log=print) -> dict:
    per_region = []
    for i in range(n_regions):
        config = HELD_OUT_CONFIG if i % 2 == 0 else PRETRAIN_CONFIGS[(i // 2) % len(PRETRAIN_CONFIGS)]
        region = make_region(HELD_OUT_SEED + i, config)
        rng = np.random.default_rng([seed, i])
        t0 = time.perf_counter()
        entry = {"seed": region.seed, "config": config, "processes": list(region.processes)}
        for layout in LAYOUTS:
            entry[layout] = score_layout(region, layout, keep_epochs, seed, rng)
        per_region.append(entry)
        took = time.perf_counter() - t0
        log(f"region {region.seed} ({config}, {'+'.join(region.processes)}): {took:.0f} s")
    mean = {}
    for layout in LAYOUTS:
        scored = [r[layout] for r in per_region if r[layout] is not None]
        names = scored[0]["rmse_mm"] if scored else []
        mean[layout] = {row: np.mean([s["rmse_mm"][row] for s in scored], 0).round(3).tolist()
                        for row in names}
        mean[layout + "_regions"] = len(scored)
        mean[layout + "_by_distance"] = pooled_by_distance([s["by_distance"] for s in scored])
    return {"checkpoint": str(engine.run.base_model_path()), "keep_epochs": keep_epochs,
            "regions": per_region, "mean": mean}


DISTANCE_BINS_M = (0, 250, 1000, 3000, np.inf)


def pooled_by_distance(entries: list) -> dict:
    """RMSE (mm) of the young cells pooled over regions, by distance to the nearest older cell."""
    distance = np.concatenate([e["distance_m"] for e in entries])
    table = {}
    for lo, hi in zip(DISTANCE_BINS_M[:-1], DISTANCE_BINS_M[1:]):
        inside = (distance > lo) & (distance <= hi)
        if not inside.any():
            continue
        label = f"{lo:.0f}–{hi:.0f} m" if np.isfinite(hi) else f"over {lo:.0f} m"
        table[label] = {"cells": int(inside.sum())}
        for name in ("persistence", "network_own", "network_borrowed"):
            errors = [np.concatenate([e[name][i] for e in entries]) for i in range(2)]
            table[label][name] = [float(np.sqrt(np.nanmean(err[inside] ** 2))) for err in errors]
    return table


def markdown(result: dict) -> str:
    days = result["keep_epochs"] * STEP_DAYS
    lines = []
    for layout in LAYOUTS:
        rows = result["mean"][layout]
        regions = result["mean"][layout + "_regions"]
        lines += [f"### {layout}: cells seen for their last {days} days only ({regions} regions), "
                  "RMSE mm at those cells against the truth",
                  "", "| row | " + " | ".join(f"{h} d" for h in BACKTEST_HORIZONS_DAYS) + " |",
                  "|---|" + "---|" * len(BACKTEST_HORIZONS_DAYS)]
        lines += [f"| {row} | " + " | ".join(f"{v:.2f}" for v in values) + " |"
                  for row, values in rows.items()]
        lines += ["", "By distance to the nearest older cell, fine-tuned, the network's cells at 90 / 365 d "
                  "(all regions' cells pooled):", "",
                  "| distance | cells | persistence | the network's own | borrowed |",
                  "|---|---|---|---|---|"]
        for label, entry in result["mean"][layout + "_by_distance"].items():
            lines.append(f"| {label} | {entry['cells']} | " + " | ".join(
                " / ".join(f"{v:.2f}" for v in entry[name])
                for name in ("persistence", "network_own", "network_borrowed")) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=6, help="held-out synthetic regions")
    parser.add_argument("--keep-epochs", type=int, default=20,
                        help="6-day epochs of history the blanked cells keep (20: four months)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/out/short")
    parser.add_argument("--base", help="score this base.safetensors (a pretraining's output) instead of the "
                        "shipped base model")
    args = parser.parse_args(argv)
    if args.base:  # every row starts from this one
        engine.run.base_model_path = lambda: Path(args.base).resolve()
    result = run(args.regions, args.keep_epochs, args.seed, log=lambda m: print(m, flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "short_history.json").write_text(json.dumps(result, indent=1, default=float))
    (out / "short_history.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
