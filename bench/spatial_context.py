"""Does the network read its neighbours? Its own forecast at the cells of held-out synthetic regions,
as they are and with the cells shuffled among themselves (each keeps its history and priors, the
neighbours become strangers), scored against the truth.

    .venv/bin/python bench/spatial_context.py --regions 6

If the joint spatio-temporal attention carries motion from cell to cell, shuffling costs skill; if
the rows agree, each cell is forecast from its own inputs alone. Zero-shot and fine-tuned, the
network's own cells before the calibrated mapping (bench/base_model.py's `*_network` rows).
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.base_model import cells_as_points  # noqa: E402
from engine.corpus import HELD_OUT_CONFIG, HELD_OUT_SEED, PRETRAIN_CONFIGS, make_region  # noqa: E402
from engine.definitions import STEP_DAYS  # noqa: E402
from engine.evaluate import BACKTEST_HORIZONS_DAYS  # noqa: E402
from engine.metrics import rmse  # noqa: E402
from engine.params import RunConfig  # noqa: E402
from engine.run import model_config, start_model  # noqa: E402
from engine.sample import forecast_area  # noqa: E402
from engine.windows import make_area  # noqa: E402

HORIZON_DAYS = 365


def shuffled(area, rng):
    """The area with its cells that have data moved among themselves; and where each one went."""
    rows, cols = np.nonzero(np.isfinite(area.displacement_mm).any(0))
    order = rng.permutation(len(rows))
    moved = replace(area, displacement_mm=area.displacement_mm.copy(), priors=area.priors.copy(),
                    geology=area.geology.copy(), soil=area.soil.copy())
    moved.displacement_mm[:, rows, cols] = area.displacement_mm[:, rows[order], cols[order]]
    moved.priors[:, rows, cols] = area.priors[:, rows[order], cols[order]]
    moved.geology[rows, cols] = area.geology[rows[order], cols[order]]
    moved.soil[rows, cols] = area.soil[rows[order], cols[order]]
    return moved, (rows, cols, order)


def score(region, model: str, seed: int) -> dict:
    steps = math.ceil(HORIZON_DAYS / STEP_DAYS)
    anchor = len(region.cube.dates) - steps
    scene = cells_as_points(region, anchor)
    config = RunConfig(points="", out_dir="", model=model, seed=seed)
    mconfig, init_state = model_config(scene, steps, config)
    area = make_area(scene.cube, scene.priors, mconfig)
    trained = start_model(area, mconfig, init_state, config, None, lambda *_: None)
    rows, cols = np.nonzero(np.isfinite(scene.cube.displacement_mm).any(0))
    truth = region.truth_mm[anchor:, rows, cols]
    lead = [min(max(round(h / STEP_DAYS) - 1, 0), steps - 1) for h in BACKTEST_HORIZONS_DAYS]
    increments, level = forecast_area(trained, area)
    as_is = (level[None] + increments[1])[:steps, rows, cols]
    moved, (r, c, order) = shuffled(area, np.random.default_rng(seed))
    increments, level = forecast_area(trained, moved)
    back = np.empty((steps, len(r)), np.float32)
    back[:, order] = (level[None] + increments[1])[:steps, r, c]  # cell order[i] was forecast at (r[i], c[i])
    assert np.array_equal(r, rows) and np.array_equal(c, cols)  # the padding adds no cell with data
    return {name: [rmse(truth[k], forecast[k]) for k in lead] for name, forecast in
            (("as_is", as_is), ("shuffled", back))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    table = {}
    for i in range(args.regions):
        config = HELD_OUT_CONFIG if i % 2 == 0 else PRETRAIN_CONFIGS[(i // 2) % len(PRETRAIN_CONFIGS)]
        region = make_region(HELD_OUT_SEED + i, config)
        for model in ("zero-shot", "base"):
            for name, values in score(region, model, args.seed).items():
                table.setdefault(f"{model} {name}", []).append(values)
        print(f"region {region.seed} ({config})", flush=True)
    print("| the network's own cells | " + " | ".join(f"{h} d" for h in BACKTEST_HORIZONS_DAYS) + " |")
    print("|---|" + "---|" * len(BACKTEST_HORIZONS_DAYS))
    for name, values in table.items():
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in np.mean(values, 0)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
