"""The base model's honest ablations: held-out synthetic regions against their truth, and real files.

    .venv/bin/python bench/base_model.py --regions 8 --real ../shared/data/egms/*.zip --out bench/out/base

Synthetic rows, scored at the cells against the noise-free truth, from one origin a year before each
region's end: the base model zero-shot, fine-tuned, trained from scratch, fine-tuned without priors,
the calibrated mapping alone (no network), persistence, the time-function fit, the network's own
cells zero-shot and fine-tuned (`*_network`: forecast_area's median, before the mapping), and the
zero-shot foundation-model peer run per point (`peer`: bench/peer.py, whose band is 80 %). The regions are
seeds at or above engine.corpus.HELD_OUT_SEED, half of them of the configuration pretraining never
saw. Real rows: `python -m engine backtest` on each file with every --model choice, at the points, and
the peer on the same split and scoring (engine.evaluate.score, each horizon at the nearest held-out epoch).
Every row shares the split, the budget and the scoring. Tables go to OUT/base_model.md and .json.
`--base OUT/base.safetensors` scores a new pretraining's model before it is shipped.
`--against bench/results/base_model.json` prints every real file's change against those figures, per row
and horizon, and names each score that got worse (today's figures must never get worse).
`--keep bench/results/base_model.json` takes the tables and rows this run does not measure from there
(the synthetic table, the peer), so a change that touches only the real rows reruns only those.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from engine.baselines import origin_level, persistence, timefn_fit  # noqa: E402
from engine.calibrate import PointModel, calibrate_points, calibration_origins  # noqa: E402
from engine.corpus import CONFIGS, HELD_OUT_CONFIG, HELD_OUT_SEED, PRETRAIN_CONFIGS, make_region  # noqa: E402
from engine.definitions import STEP_DAYS  # noqa: E402
from engine.evaluate import BACKTEST_HORIZONS_DAYS  # noqa: E402
from engine.metrics import coverage, crps_from_quantiles, nearest_epoch_index, rmse  # noqa: E402
from engine.params import RunConfig  # noqa: E402
from engine.points import PointSeries  # noqa: E402
from engine.prepare import Scene  # noqa: E402
from engine.priors import build_priors  # noqa: E402
import engine.run  # noqa: E402
from engine.run import forecast_scene  # noqa: E402
from engine.sample import forecast_area  # noqa: E402
from bench import peer  # noqa: E402
from engine.windows import forecast_dates, make_area, split_anchors  # noqa: E402

HORIZON_DAYS = 365
ROWS = ("zero_shot", "fine_tuned", "scratch", "fine_tuned_no_priors", "mapping_alone", "persistence",
        "timefn", "zero_shot_network", "fine_tuned_network", "peer")
# the network's own cells, before the calibrated mapping: the median of forecast_area at each cell
NETWORK_ROWS = {"zero_shot_network": "zero_shot", "fine_tuned_network": "fine_tuned"}
MODEL_OF_ROW = {"zero_shot": "zero-shot", "fine_tuned": "base", "scratch": "scratch",
                "fine_tuned_no_priors": "base"}


def cells_as_points(region, anchor: int) -> Scene:
    """The region's history before `anchor` as a scene whose points are its cells (one per cell)."""
    cube = region.cube
    grid = cube.grid
    rows, cols = np.nonzero(np.isfinite(cube.displacement_mm[:anchor]).any(0))
    x, y = grid.cell_centers()
    series = cube.displacement_mm[:anchor, rows, cols].T
    points = PointSeries(ids=np.array([f"c{r}_{c}" for r, c in zip(rows, cols)]), x=x[cols], y=y[rows],
                         crs=grid.crs, dates=cube.dates[:anchor], displacement_mm=series,
                         valid=np.isfinite(series), attributes={}, source=f"region {region.seed}",
                         product=region.product)
    history = replace(cube, dates=cube.dates[:anchor], displacement_mm=cube.displacement_mm[:anchor],
                      count=cube.count[:anchor])
    return Scene(points, points, history, region.priors, None)


def score_region(region, steps: int, seed: int) -> dict:
    """RMSE (mm) and 90 % coverage per horizon at the cells, against the truth, for every row."""
    T = len(region.cube.dates)
    anchor = T - steps
    scene = cells_as_points(region, anchor)
    rows, cols = np.nonzero(np.isfinite(region.cube.displacement_mm[:anchor]).any(0))
    truth = region.truth_mm[anchor:, rows, cols]  # [H, N]
    dates_fc = forecast_dates(region.cube.dates, anchor, steps)
    lead = [min(max(round(h / STEP_DAYS) - 1, 0), steps - 1) for h in BACKTEST_HORIZONS_DAYS]
    out, seconds, trained = {}, {}, {}
    for row in ROWS:
        t0 = time.perf_counter()
        quantiles = None
        if row in NETWORK_ROWS:
            model = trained[NETWORK_ROWS[row]]
            increments, level = forecast_area(model, make_area(scene.cube, scene.priors, model.model.config))
            quantiles = (level[None, None] + increments)[:, :steps, rows, cols]
        elif row in MODEL_OF_ROW:
            sc = scene
            if row == "fine_tuned_no_priors":
                sc = replace(scene, priors=build_priors(scene.cube.grid))
            config = RunConfig(points="", out_dir="", model=MODEL_OF_ROW[row], seed=seed)
            fc = forecast_scene(sc, config, steps * STEP_DAYS, log=lambda *_: None)
            quantiles = fc.points_mm  # [3, H, N]
            trained[row] = fc.trained
        elif row == "mapping_alone":
            zeros = np.zeros((3, steps) + scene.cube.displacement_mm.shape[1:], np.float32)
            _, _, cut = split_anchors(anchor, steps)  # the validation period the networks calibrate on
            origins = calibration_origins(cut, anchor)  # and the origins they calibrate from
            calibration = calibrate_points(scene, origins, [zeros] * len(origins), steps)
            quantiles = calibration.quantiles(PointModel.at(scene, anchor, dates_fc), zeros)
        elif row == "peer":
            series = np.where(scene.points.valid, scene.points.displacement_mm, np.nan)
            quantiles = peer.forecast_points(series, steps)
        elif row == "persistence":
            level = origin_level(scene.points.displacement_mm, axis=1)
            median = np.repeat(level[None], steps, 0)
        else:
            fit = timefn_fit(scene.points.dates, scene.points.displacement_mm, scene.points.valid)
            median = fit.predict(dates_fc).T
        if quantiles is not None:
            median = quantiles[1]
        seconds[row] = time.perf_counter() - t0
        out[row] = {"rmse_mm": [rmse(truth[k], median[k]) for k in lead]}
        if quantiles is not None and row != "mapping_alone":  # with no network there is no band to cover
            key = "coverage80" if row == "peer" else "coverage90"
            out[row][key] = [coverage(truth[k], quantiles[0, k], quantiles[2, k]) for k in lead]
    return {"scores": out, "seconds": seconds}


def synthetic(n_regions: int, seed: int, log=print) -> dict:
    steps = math.ceil(HORIZON_DAYS / STEP_DAYS)
    per_region = []
    for i in range(n_regions):
        config = HELD_OUT_CONFIG if i % 2 == 0 else PRETRAIN_CONFIGS[(i // 2) % len(PRETRAIN_CONFIGS)]
        region = make_region(HELD_OUT_SEED + i, config)
        t0 = time.perf_counter()
        result = score_region(region, steps, seed)
        result.update(seed=region.seed, config=config, product=region.product,
                      processes=list(region.processes))
        per_region.append(result)
        log(f"region {region.seed} ({config}, {region.product}, {'+'.join(region.processes)}): "
            f"{time.perf_counter() - t0:.0f} s; 365 d RMSE "
            + ", ".join(f"{r} {result['scores'][r]['rmse_mm'][-1]:.2f}" for r in ROWS))
    mean = {row: {key: np.nanmean([r["scores"][row][key] for r in per_region], 0).round(3).tolist()
                  for key in per_region[0]["scores"][row]} for row in ROWS}
    return {"regions": per_region, "mean": mean, "held_out_config": HELD_OUT_CONFIG,
            "configs": {k: v for k, v in CONFIGS.items()}}


REAL_ROWS = {"fine_tuned": "base", "zero_shot": "zero-shot", "scratch": "scratch",
             "fine_tuned_no_priors": "base"}


def peer_backtest(path: str, holdout_days: int = 365) -> dict:
    """The peer on the engine backtest's split: each point's regular series up to the last
    `holdout_days`, scored at the points by engine.evaluate.score like the backtest's baselines."""
    from engine.evaluate import held_out, on_epochs, score
    from engine.points import read_points
    from engine.prepare import prepare

    full = read_points(path)
    cut_date = full.dates[-1] - np.timedelta64(holdout_days, "D")
    scene = prepare(RunConfig(points=str(path), out_dir=""), until=cut_date, points=full)
    train, regular = scene.points, scene.regular
    if list(regular.ids) != list(train.ids):
        raise RuntimeError(f"{path}: the regular series are not in the points' order")
    steps = math.ceil(holdout_days / STEP_DAYS) + 1
    t0 = time.perf_counter()
    quantiles = peer.forecast_points(np.where(regular.valid, regular.displacement_mm, np.nan), steps)
    seconds = time.perf_counter() - t0
    dates_fc = forecast_dates(regular.dates, len(regular.dates), steps)
    dates_future, truth = held_out(full, train)
    q_at = on_epochs(dates_fc, quantiles, dates_future)  # [3, E, N]
    horizons = [h for h in BACKTEST_HORIZONS_DAYS if h <= holdout_days]
    persistence_level = persistence(train.displacement_mm, train.valid)  # checks the split is the backtest's
    scored = score(truth, {"peer": q_at[1], "persistence": np.broadcast_to(persistence_level, truth.shape)},
                   dates_future, train.dates[-1], horizons, common=False)["models"]
    origin = train.dates[-1] + np.asarray(horizons).astype("timedelta64[D]")
    at = nearest_epoch_index(dates_future, origin)
    return {"rmse_mm": scored["peer"]["rmse_mm"], "persistence_rmse_mm": scored["persistence"]["rmse_mm"],
            "coverage80_by_horizon": [coverage(truth[e], q_at[0, e], q_at[2, e]) for e in at],
            "crps_mm": crps_from_quantiles(truth, list(peer.QUANTILES), q_at), "seconds_forecast": seconds,
            "n_points": int(train.n_points)}


def real(files: list, seed: int, rows=tuple(REAL_ROWS), log=print, with_peer: bool = True) -> dict:
    """Backtests of each real file with each model choice, through the engine's own backtest."""
    from engine.run import run_backtest

    results = {}
    for path in files:
        for row in rows:
            model = REAL_ROWS[row]
            out = Path("/tmp") / f"gc_base_bench_{Path(path).stem}_{row}"
            config = RunConfig(points=str(path), out_dir=str(out), model=model, seed=seed,
                               use_priors=row != "fine_tuned_no_priors")
            t0 = time.perf_counter()
            metrics = run_backtest(config, log=lambda *_: None)
            metrics["wall_seconds"] = time.perf_counter() - t0
            results.setdefault(str(path), {})[row] = metrics
            scores = {name: " ".join(f"{v:.2f}" for v in model_scores["rmse_mm"])
                      for name, model_scores in metrics["models"].items()}
            log(f"{Path(path).name} {row}: {scores['mmstt']} (persistence {scores['persistence']}, "
                f"time function {scores['timefn']}), {metrics['wall_seconds']:.0f} s")
        if with_peer:
            result = peer_backtest(path)
            results.setdefault(str(path), {})["peer"] = result
            check = " ".join(f"{v:.2f}" for v in result["persistence_rmse_mm"])
            log(f"{Path(path).name} peer: " + " ".join(f"{v:.2f}" for v in result["rmse_mm"])
                + f" (persistence on its split {check}), {result['seconds_forecast']:.0f} s")
    return results


WORSE_MM = 0.005  # a change of RMSE or CRPS below this is rounding, not worse


def by_name(real_results: dict) -> dict:
    """The real tables keyed by file name, not path: runs from other folders match."""
    return {Path(path).name: rows for path, rows in real_results.items()}


def keep_from(result: dict, previous: dict) -> dict:
    """`result` with what it did not measure taken from `previous`: the synthetic table, and each real
    file's rows (the peer's among them) that this run left out."""
    merged = dict(result)
    if "synthetic" not in merged and "synthetic" in previous:
        merged["synthetic"] = previous["synthetic"]
    old = by_name(previous.get("real", {}))
    real_rows = {}
    for path, rows in result.get("real", {}).items():
        kept = {row: scores for row, scores in old.get(Path(path).name, {}).items() if row not in rows}
        real_rows[path] = {**rows, **kept}
    for name, rows in old.items():  # files this run did not backtest at all
        if name not in by_name(real_rows):
            real_rows[name] = rows
    merged["real"] = real_rows
    return merged


def changes(result: dict, previous: dict) -> tuple[str, list[str]]:
    """(a markdown table of each real row's RMSE, coverage and CRPS now against `previous`, the scores
    that got worse by more than WORSE_MM), for the files and rows both hold."""
    old = by_name(previous.get("real", {}))
    lines = ["| file | row | RMSE mm per horizon, before → now | coverage now | CRPS before → now |",
             "|---|---|---|---|---|"]
    worse = []
    for name, rows in by_name(result.get("real", {})).items():
        for row, now in rows.items():
            before = old.get(name, {}).get(row)
            if before is None or row == "peer":
                continue
            rmse_now, rmse_before = now["models"]["mmstt"]["rmse_mm"], before["models"]["mmstt"]["rmse_mm"]
            pairs = " / ".join(f"{b:.2f} → {n:.2f}" for b, n in zip(rmse_before, rmse_now))
            cov = " / ".join(f"{c:.2f}" for c in now["mmstt_coverage90_by_horizon"])
            lines.append(f"| {name} | {row} | {pairs} | {cov} | "
                         f"{before['mmstt_crps_mm']:.3f} → {now['mmstt_crps_mm']:.3f} |")
            for days, b, n in zip(now["horizons_days"], rmse_before, rmse_now):
                if n > b + WORSE_MM:
                    worse.append(f"{name} {row} {days} d: RMSE {b:.3f} → {n:.3f} mm")
            if now["mmstt_crps_mm"] > before["mmstt_crps_mm"] + WORSE_MM:
                crps = f"{before['mmstt_crps_mm']:.3f} → {now['mmstt_crps_mm']:.3f}"
                worse.append(f"{name} {row}: CRPS {crps} mm")
    return "\n".join(lines), worse


def markdown(result: dict) -> str:
    lines = []
    if "synthetic" in result:
        syn = result["synthetic"]
        lines += [f"### Held-out synthetic regions ({len(syn['regions'])}, half of the held-out "
                  f"'{syn['held_out_config']}' configuration), RMSE mm at the cells against the truth", "",
                  "| row | " + " | ".join(f"{h} d" for h in BACKTEST_HORIZONS_DAYS) + " | 90 % coverage |",
                  "|---|" + "---|" * (len(BACKTEST_HORIZONS_DAYS) + 1)]
        for row in ROWS:
            scores = syn["mean"][row]
            cov = "–"
            if "coverage90" in scores:
                cov = " / ".join(f"{c:.2f}" for c in scores["coverage90"])
            elif "coverage80" in scores:
                cov = "80 % band: " + " / ".join(f"{c:.2f}" for c in scores["coverage80"])
            lines.append(f"| {row} | " + " | ".join(f"{v:.2f}" for v in scores["rmse_mm"]) + f" | {cov} |")
        lines.append("")
    for path, rows in result.get("real", {}).items():
        rows = dict(rows)
        peer_row = rows.pop("peer", None)
        first = next(iter(rows.values()))
        lines += [f"### {Path(path).name}: backtest RMSE mm at the points (last 365 days held out)", "",
                  "| row | " + " | ".join(f"{h} d" for h in first["horizons_days"])
                  + " | coverage per horizon | CRPS mm | train s | forecast s |",
                  "|---|" + "---|" * (len(first["horizons_days"]) + 4)]
        for row, m in rows.items():
            lines.append(f"| {row} | " + " | ".join(f"{v:.2f}" for v in m["models"]["mmstt"]["rmse_mm"])
                         + " | " + " / ".join(f"{c:.2f}" for c in m["mmstt_coverage90_by_horizon"])
                         + f" | {m['mmstt_crps_mm']:.2f} | {m['seconds_train']:.0f}"
                         + f" | {m['seconds_forecast']:.0f} |")
        m = first
        for name in ("persistence", "timefn"):
            lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in m["models"][name]["rmse_mm"])
                         + " | – | – | – | – |")
        if peer_row is not None:
            lines.append("| peer | " + " | ".join(f"{v:.2f}" for v in peer_row["rmse_mm"])
                         + " | 80 % band: "
                         + " / ".join(f"{c:.2f}" for c in peer_row["coverage80_by_horizon"])
                         + f" | {peer_row['crps_mm']:.2f} (of 0.1 / 0.5 / 0.9) | 0"
                         + f" | {peer_row['seconds_forecast']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=8, help="held-out synthetic regions")
    parser.add_argument("--real", nargs="*", default=[], help="real EGMS files to backtest")
    parser.add_argument("--rows", nargs="*", default=list(REAL_ROWS), choices=list(REAL_ROWS),
                        help="the model choices to backtest on the real files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/out/base")
    parser.add_argument("--base", help="score this base.safetensors (a pretraining's output) instead of the "
                        "shipped base model")
    parser.add_argument("--against", help="an earlier base_model.json: print the change against it")
    parser.add_argument("--keep", help="an earlier base_model.json: what this run leaves out comes from it")
    parser.add_argument("--no-peer", action="store_true", help="leave out the foundation-model peer "
                        "(about 0.05 s per point on 2 cores: 11 min on the 11,590-point burst)")
    args = parser.parse_args(argv)
    if args.base:  # every row that starts from the base model starts from this one
        engine.run.base_model_path = lambda: Path(args.base).resolve()
    if not engine.run.base_model_path().is_file():
        print(f"error: {engine.run.base_model_path()} is missing", file=sys.stderr)
        return 2
    result = {"checkpoint": str(engine.run.base_model_path())}
    if args.regions:
        result["synthetic"] = synthetic(args.regions, args.seed, log=lambda m: print(m, flush=True))
    if args.real:
        result["real"] = real(args.real, args.seed, args.rows, log=lambda m: print(m, flush=True),
                              with_peer=not args.no_peer)
    if args.keep:
        result = keep_from(result, json.loads(Path(args.keep).read_text()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "base_model.json").write_text(json.dumps(result, indent=1, default=float))
    (out / "base_model.md").write_text(markdown(result))
    print(markdown(result))
    if args.against:
        table, worse = changes(result, json.loads(Path(args.against).read_text()))
        verdict = ["", "Worse than before:", *(f"- {w}" for w in worse)] if worse else ["", "Nothing worse."]
        text = "\n".join([f"### Against {args.against}", "", table] + verdict)
        (out / "changes.md").write_text(text + "\n")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
