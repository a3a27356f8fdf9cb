"""Benchmark: every model on the same split of the same data, scored by one function, one table.

    python bench/compare.py --points EGMS.zip [--dem ... --aoi ...] [--demo] [--quick] --out DIR

MM-STT runs through engine.run exactly as `backtest --model scratch` does (with and without the
prior layers), trained from nothing like every other learned model here (bench/base_model.py
scores the pretrained base model); persistence and the time-function fit as in
engine.evaluate.score_backtest; ConvLSTM,
STGCN, STAEformer and DLinear (bench/models.py) learn on the same 6-day cube, windows, scale,
validation split, budget and seed, and their cell forecasts reach the points by MM-STT's own
mapping. bench/README.md says what each model is and how the scores are normalised.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # `import engine` from any folder

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from bench.models import STAEformer, STGCN, ConvLSTM, DLinear, scaled_laplacian  # noqa: E402
from engine.aoi import read_aoi  # noqa: E402
from engine.baselines import persistence, timefn_fit  # noqa: E402
from engine.demo import make_demo  # noqa: E402
from engine.model import ModelConfig  # noqa: E402
from engine.baselines import origin_level  # noqa: E402
from engine.calibrate import PointModel, calibrate_points, calibration_origins  # noqa: E402
from engine.definitions import STEP_DAYS  # noqa: E402
from engine.evaluate import BACKTEST_HORIZONS_DAYS, held_out, on_epochs, score  # noqa: E402
from engine.params import RunConfig, TrainOptions  # noqa: E402
from engine.prepare import prepare  # noqa: E402
from engine.run import forecast_scene  # noqa: E402
from engine.sample import forecast_area  # noqa: E402
from engine.points import read_points  # noqa: E402
from engine.windows import (MIN_HISTORY_STEPS, area_scale_mm, forecast_dates, make_area,  # noqa: E402
                            occupied_tiles, split_anchors)

MODELS = ("mmstt", "mmstt_no_priors", "persistence", "timefn", "mapped_baselines", "convlstm", "stgcn",
          "staeformer", "dlinear")
LEARNED = {"convlstm": "grid", "stgcn": "nodes", "staeformer": "nodes", "dlinear": "nodes"}


@dataclass
class Budget:
    """One training budget for every learned model: MM-STT's TrainOptions unless overridden."""
    epochs: int
    steps: int
    batch: int
    patience: int
    learning_rate: float
    weight_decay: float
    seed: int


def budget_from(args) -> Budget:
    engine = TrainOptions()
    epochs, steps = (2, 10) if args.quick else (engine.epochs, engine.steps_per_epoch)
    return Budget(args.epochs or epochs, args.steps or steps, engine.batch_tiles, engine.patience,
                  engine.learning_rate, engine.weight_decay, args.seed)


@contextmanager
def peak_memory():
    """Peak resident memory (MB) above the level at entry, sampled every 10 ms from /proc/self/statm.

    RSS, not tracemalloc, because torch's allocations bypass Python's allocator. Freed heap is
    handed back first (malloc_trim) so one model's leftovers do not hide the next one's peak.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    out, start, stop = {}, rss(), threading.Event()
    peak = [start]

    def watch():
        while not stop.wait(0.01):
            peak[0] = max(peak[0], rss())

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out["peak_mb"] = (max(peak[0], rss()) - start) / 2 ** 20


# ---------------------------------------------------------------- the learned baselines' data

@dataclass
class Setup:
    """The cube as the learned baselines see it, cut and scaled the way engine.train does for MM-STT."""
    dates: np.ndarray        # [T] regular training epochs
    grid: np.ndarray         # [T, Hp, Wp] padded to at least one tile (engine.train.make_area)
    rows: np.ndarray         # [N] cells with data
    cols: np.ndarray
    xy: torch.Tensor         # [N, 2] cell centres, metres
    near: np.ndarray         # [N, K] each cell's K nearest cells with data, itself first
    tiles: list              # MM-STT's training tiles
    tile: int
    scale: float             # mm per model unit (engine.train.area_scale_mm)
    train_anchors: np.ndarray
    val_anchors: np.ndarray
    cut: int                 # first validation epoch
    L: int
    H: int
    height: int
    width: int

    @property
    def series(self) -> np.ndarray:
        return self.grid[:, self.rows, self.cols]


def make_setup(scene, horizon_steps: int) -> Setup:
    mc = ModelConfig(horizon_steps=horizon_steps)
    area = make_area(scene.cube, scene.priors, mc)
    rows, cols = np.nonzero(np.isfinite(area.displacement_mm).any(0))
    x, y = scene.cube.grid.cell_centers()
    xy = np.stack([x[cols], y[rows]], 1)
    k = min(len(rows), mc.tile_cells ** 2)                  # a node "tile" holds as many cells as MM-STT's
    near = cKDTree(xy).query(xy, k=k)[1].reshape(len(rows), k)
    train, val, cut = split_anchors(len(area.dates), horizon_steps)
    return Setup(area.dates, area.displacement_mm, rows, cols, torch.as_tensor(xy, dtype=torch.float32), near,
                 occupied_tiles(area, mc.tile_cells), mc.tile_cells, area_scale_mm(area), train, val, cut,
                 mc.context_steps, horizon_steps, area.height, area.width)


def windows(views: list, anchors, L: int, H: int, scale: float):
    """Context [B, L, *space] and target [B, H, *space] relative to the origin level, in model units.

    The level is MM-STT's (origin_level of the last MIN_HISTORY_STEPS epochs); NaN where unobserved.
    """
    Lb = max(MIN_HISTORY_STEPS, L)
    B, space = len(views), views[0].shape[1:]
    look = np.full((B, Lb) + space, np.nan, np.float32)
    goal = np.full((B, H) + space, np.nan, np.float32)
    for i, (x, a) in enumerate(zip(views, anchors)):
        lo, hi = max(a - Lb, 0), min(a + H, len(x))
        look[i, Lb - (a - lo):] = x[lo:a]
        goal[i, :hi - a] = x[a:hi]
    level = origin_level(look[:, -MIN_HISTORY_STEPS:].reshape(B, MIN_HISTORY_STEPS, -1, 1), axis=1)
    level = level.reshape((B,) + space)
    return (look[:, -L:] - level[:, None]) / scale, (goal - level[:, None]) / scale, level


def make_batch(s: Setup, views: list, anchors, nodes=None):
    hist, goal, level = windows(views, anchors, s.L, s.H, s.scale)
    step = np.timedelta64(STEP_DAYS, "D")
    context = s.dates[0] + (np.asarray(anchors)[:, None] + np.arange(-s.L, 0)) * step
    day = (context - context.astype("datetime64[Y]")).astype(np.int64)
    month = context.astype("datetime64[M]").astype(np.int64) % 12
    batch = {"history": torch.as_tensor(np.nan_to_num(hist)),
             "mask": torch.as_tensor(np.isfinite(hist), dtype=torch.float32),
             "slot": torch.as_tensor(day // STEP_DAYS), "month": torch.as_tensor(month)}
    if nodes is not None:
        nodes = torch.as_tensor(np.asarray(nodes))
        batch["nodes"], batch["lap"] = nodes, scaled_laplacian(s.xy[nodes])
    return batch, torch.as_tensor(goal), level


def draw_batch(s: Setup, kind: str, rng, batch: int):
    """A training batch like MM-STT's: `batch` random (tile, origin) pairs, targets ending before the cut.

    ConvLSTM gets MM-STT's own S x S tiles; the node models the K = S*S nearest cells with data
    around a random cell (the whole area when it is smaller).
    """
    seen = s.grid[:s.cut]                                    # training targets never reach validation
    anchors = rng.choice(s.train_anchors, size=batch)
    if kind == "grid":
        pick = [s.tiles[i] for i in rng.integers(len(s.tiles), size=batch)]
        views = [seen[:, r:r + s.tile, c:c + s.tile] for r, c in pick]
        return make_batch(s, views, anchors)[:2]
    nodes = s.near[rng.integers(len(s.rows), size=batch)]
    series = seen[:, s.rows, s.cols]
    return make_batch(s, [series[:, n] for n in nodes], anchors, nodes)[:2]


def whole_area(s: Setup, kind: str, anchors):
    """All cells at each origin: what validation and the forecast see."""
    if kind == "grid":
        return make_batch(s, [s.grid] * len(anchors), anchors)
    nodes = np.tile(np.arange(len(s.rows)), (len(anchors), 1))
    return make_batch(s, [s.series] * len(anchors), anchors, nodes)


def masked_l1(pred, goal):
    """Mean absolute error where the target is observed: the median, as MM-STT's central quantile."""
    mask = torch.isfinite(goal)
    return (pred - torch.nan_to_num(goal)).abs().mul(mask).sum() / mask.sum().clamp(min=1)


def train(model, s: Setup, kind: str, budget: Budget, log) -> dict:
    """MM-STT's recipe (engine.train): AdamW without decay on vectors, one-cycle LR, gradient clipping,
    keep the best validation state, stop after `patience` epochs without improvement."""
    rng = np.random.default_rng(budget.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": budget.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=budget.learning_rate)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, budget.learning_rate,
                                                total_steps=budget.epochs * budget.steps, pct_start=0.15)
    val_batch, val_goal, _ = whole_area(s, kind, s.val_anchors)
    best, best_state, bad, history = math.inf, None, 0, []
    for epoch in range(budget.epochs):
        model.train()
        total = 0.0
        for _ in range(budget.steps):
            batch, goal = draw_batch(s, kind, rng, budget.batch)
            loss = masked_l1(model(batch), goal)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += loss.item() / budget.steps
        model.eval()
        with torch.no_grad():
            val = masked_l1(model(val_batch), val_goal).item()
        history.append({"epoch": epoch + 1, "train_loss": round(total, 5), "val_loss": round(val, 5)})
        log(f"  epoch {epoch + 1}: train {total:.4f} val {val:.4f}")
        if val < best - 1e-4:
            best, bad = val, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= budget.patience:
                break
    if best_state is not None:              # None only when validation never gave a finite loss
        model.load_state_dict(best_state)
    model.eval()
    return {"epochs_run": len(history), "best_val_loss": best, "history": history}


@torch.no_grad()
def forecast_cells(model, s: Setup, kind: str, anchor: int) -> np.ndarray:
    """Increments [H, height, width] in mm from each cell's level at `anchor`; NaN where the level is."""
    batch, _, level = whole_area(s, kind, [anchor])
    pred = model(batch)[0].numpy() * s.scale
    out = np.full((s.H,) + s.grid.shape[1:], np.nan, np.float32)
    if kind == "grid":
        out[:] = np.where(np.isfinite(level[0]), pred, np.nan)
    else:
        out[:, s.rows, s.cols] = np.where(np.isfinite(level[0]), pred, np.nan)
    return out[:, :s.height, :s.width]


def as_q(cells: np.ndarray) -> np.ndarray:
    """A median [H, ...] as the [3, H, ...] quantile stack PointModel and fit_shares read (median = [1])."""
    return np.repeat(cells[None], 3, 0)


def to_points(scene, cut: int, cells_from):
    """Median cell increments -> forecasts at the points, with the engine's own mapping
    (engine.calibrate.calibrate_points + PointModel), as engine.run.forecast_scene maps MM-STT's:
    the shares fitted on the same calibration_origins through the validation period from `cut`.

    cells_from(anchor) gives the [H, h, w] increments forecast at epoch `anchor`. Returns dates [H]
    and forecasts [H, N] twice: mapped like MM-STT, and plain (level + cell increment, no shares).
    """
    dates = scene.cube.dates
    T = len(dates)
    cells = cells_from(T)
    H = len(cells)
    origins = calibration_origins(cut, T)
    shares = calibrate_points(scene, origins, [as_q(cells_from(o)) for o in origins], H).shares
    dates_fc = forecast_dates(dates, T, H)
    points = PointModel.at(scene, T, dates_fc)
    return dates_fc, points.quantiles(as_q(cells), shares)[1], plain_points(points, cells)


def no_increment(s: Setup, anchor: int) -> np.ndarray:
    """[H, h, w] zero increments where a cell has a level at `anchor`: the point mapping with no network."""
    _, _, level = whole_area(s, "nodes", [anchor])
    out = np.full((s.H,) + s.grid.shape[1:], np.nan, np.float32)
    out[:, s.rows, s.cols] = np.where(np.isfinite(level[0]), 0.0, np.nan)
    return out[:, :s.height, :s.width]


def plain_points(points: PointModel, cells: np.ndarray) -> np.ndarray:
    """[H, N]: each point's level at the origin plus its cell's increment, nothing fitted."""
    return points.quantiles(as_q(cells))[1]


# ---------------------------------------------------------------- one dataset, every model

def run_mmstt(scene, config: RunConfig, budget: Budget, holdout_days: int):
    training = replace(config.training, steps_per_epoch=budget.steps)
    fc = forecast_scene(scene, replace(config, epochs=budget.epochs, seed=budget.seed, training=training),
                        holdout_days, log=lambda *a: None)
    n_params = sum(p.numel() for p in fc.trained.model.parameters())
    return fc, n_params, float(fc.trained.log["seconds"]), {"epochs_run": fc.trained.log["epochs_run"]}


def run_dataset(name: str, config: RunConfig, budget: Budget, holdout_days: int, models, truth_npz=None,
                log=print) -> list[dict]:
    """Train and score every model on one dataset; a section per scoring (observed, noise-free truth)."""
    full = read_points(config.points, aoi=read_aoi(config.aoi) if config.aoi else None)
    cut_date = full.dates[-1] - np.timedelta64(int(holdout_days), "D")
    scene = prepare(config, until=cut_date, points=full)
    train_pts = scene.points
    horizon_steps = max(1, math.ceil(holdout_days / STEP_DAYS))
    s = make_setup(scene, horizon_steps)
    dates_future, truth = held_out(full, train_pts)
    horizons = [h for h in BACKTEST_HORIZONS_DAYS if h <= holdout_days]
    log(f"{name}: {train_pts.n_points} points, {len(s.rows)} cells with data, {len(s.dates)} training epochs "
        f"to {train_pts.dates[-1]}, {len(dates_future)} held-out epochs, horizon {horizon_steps} steps")

    preds, plain, rows = {}, {}, {}     # point forecasts [E, N]: mapped like MM-STT, and level + cell only
    for model_name in models:
        log(f"{model_name} ...")
        started = time.perf_counter()
        info = {}
        with peak_memory() as mem:
            if model_name in ("mmstt", "mmstt_no_priors"):
                cfg = config if model_name == "mmstt" else replace(config, use_priors=False)
                sc = scene if model_name == "mmstt" else prepare(cfg, until=cut_date, points=full)
                fc, n_params, seconds, info = run_mmstt(sc, cfg, budget, holdout_days)
                preds[model_name] = on_epochs(fc.dates, fc.points_mm[1], dates_future)
                # the network's own cells, before the engine calibrates the maps as it does the points
                area = make_area(sc.cube, sc.priors, fc.trained.model.config)
                increments, _ = forecast_area(fc.trained, area)
                cell_only = plain_points(PointModel.at(sc, len(sc.cube.dates), fc.dates), increments[1])
                plain[model_name] = on_epochs(fc.dates, cell_only, dates_future)
            elif model_name == "persistence":
                t0 = time.perf_counter()
                last = persistence(train_pts.displacement_mm, train_pts.valid)
                seconds, n_params = time.perf_counter() - t0, 0
                preds[model_name] = plain[model_name] = np.broadcast_to(last, truth.shape)
            elif model_name == "timefn":
                t0 = time.perf_counter()
                fit = timefn_fit(train_pts.dates, train_pts.displacement_mm, train_pts.valid)
                seconds, n_params = time.perf_counter() - t0, int(fit.coefficients.size)
                preds[model_name] = plain[model_name] = fit.predict(dates_future).T
            elif model_name == "mapped_baselines":
                t0 = time.perf_counter()
                dates_fc, points, cell_only = to_points(scene, s.cut, lambda anchor: no_increment(s, anchor))
                seconds, n_params = time.perf_counter() - t0, 0
                preds[model_name] = on_epochs(dates_fc, points, dates_future)
                plain[model_name] = on_epochs(dates_fc, cell_only, dates_future)
            else:
                kind = LEARNED[model_name]
                torch.manual_seed(budget.seed)
                model = {"convlstm": lambda: ConvLSTM(s.H),
                         "stgcn": lambda: STGCN(s.L, s.H),
                         "staeformer": lambda: STAEformer(len(s.rows), s.L, s.H),
                         "dlinear": lambda: DLinear(s.L, s.H)}[model_name]()
                t0 = time.perf_counter()
                info = train(model, s, kind, budget, log)
                seconds = time.perf_counter() - t0
                n_params = sum(p.numel() for p in model.parameters())
                dates_fc, points, cell_only = to_points(
                    scene, s.cut, lambda anchor: forecast_cells(model, s, kind, anchor))
                preds[model_name] = on_epochs(dates_fc, points, dates_future)
                plain[model_name] = on_epochs(dates_fc, cell_only, dates_future)
        rows[model_name] = {"parameters": int(n_params), "train_seconds": round(seconds, 2),
                            "peak_mb": round(mem["peak_mb"], 1),
                            "wall_seconds": round(time.perf_counter() - started, 2), "training": info}
        log(f"  {model_name}: {seconds:.1f} s training, {time.perf_counter() - started:.1f} s in all")

    last = persistence(train_pts.displacement_mm, train_pts.valid)
    observed = np.concatenate([np.where(train_pts.valid, train_pts.displacement_mm, np.nan), truth.T], 1)
    sections = [("observed", truth, float(np.nanmax(observed) - np.nanmin(observed)))]
    if truth_npz is not None:
        with np.load(truth_npz, allow_pickle=False) as z:
            index = {p: i for i, p in enumerate(z["pid"])}
            at = [index[p] for p in train_pts.ids]
            days = z["dates"]
            cols = np.searchsorted(days, dates_future.astype(np.int64))
            if not np.array_equal(days[cols], dates_future.astype(np.int64)):
                raise AssertionError("truth.npz dates do not match the held-out epochs")
            clean = z["truth_mm"][at]
        # the same cases as the observed score: the noise-free value where an observation exists
        sections.append(("noise-free truth", np.where(np.isfinite(truth), clean[:, cols].T, np.nan),
                         float(clean.max() - clean.min())))
    out = []
    for against, target, range_mm in sections:
        for mapping, forecasts in (("MM-STT's", preds), ("level + cell increment", plain)):
            result = score(target, forecasts, dates_future, train_pts.dates[-1], horizons, last, range_mm)
            for m in result["models"]:
                result["models"][m].update(rows[m])
            out.append({"dataset": name, "against": against, "point_mapping": mapping, **result["meta"],
                        "models": result["models"], "n_points": int(train_pts.n_points),
                        "n_cells": int(len(s.rows))})
    return out


# ---------------------------------------------------------------- table and figure

def fmt(v, digits=2):
    return "–" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def markdown(sections: list[dict], budget: Budget, mode: str) -> str:
    lines = [f"# GroundCast benchmark ({mode})", "",
             f"Budget for every learned model: {budget.epochs} epochs x {budget.steps} steps, "
             f"batch {budget.batch}, patience {budget.patience}, seed {budget.seed}. RMSE per horizon in mm; "
             "MAE, R², R² of the change since the last observation and the normalised RMSEs pooled over "
             "the horizons; peak MB = peak RSS above the level at the model's start.", ""]
    for sec in sections:
        hz = sec["horizons_days"]
        lines += [f"## {sec['dataset']}, against {sec['against']}, point mapping: {sec['point_mapping']}", "",
                  f"{sec['n_points']} points, {sec['n_cells']} cells; cases per horizon {sec['n_cases']}; "
                  f"epochs {', '.join(sec['epochs'])}; min-max range {sec['range_mm']:.1f} mm.", "",
                  "| model | " + " | ".join(f"RMSE {h} d" for h in hz) +
                  " | MAE | R² | R² change | RMSE/σ | RMSE/range | params | train s | peak MB |",
                  "|---" * (len(hz) + 9) + "|"]
        for name, m in sec["models"].items():
            p = m["pooled"]
            lines.append(f"| {name} | " + " | ".join(fmt(v) for v in m["rmse_mm"]) +
                         f" | {fmt(p['mae_mm'])} | {fmt(p['r2'], 4)} | {fmt(p['r2_change'], 3)} | "
                         f"{fmt(p['nrmse_std'], 3)} | {fmt(p['nrmse_range'], 4)} | {m['parameters']:,} | "
                         f"{fmt(m['train_seconds'], 1)} | {fmt(m['peak_mb'], 0)} |")
        lines.append("")
    return "\n".join(lines)


def plot(sections: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(2, len(sections))
    rows = -(-len(sections) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False, sharey=True)
    for ax in axes.flat[len(sections):]:
        ax.axis("off")
    for ax, sec in zip(axes.flat, sections):
        for name, m in sec["models"].items():
            ax.plot(sec["horizons_days"], m["rmse_mm"], marker="o", label=name)
        ax.set(title=f"{sec['dataset']} vs {sec['against']}\n{sec['point_mapping']} point mapping",
               xlabel="horizon (days)", ylabel="RMSE (mm)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points")
    for name in ("dem", "geology", "geology-field", "soil", "soil-field", "aoi"):
        ap.add_argument(f"--{name}")
    ap.add_argument("--demo", action="store_true", help="also run the synthetic demo (scored vs its truth)")
    ap.add_argument("--demo-km", type=float, default=8.0)
    ap.add_argument("--holdout-days", type=int, default=365)
    ap.add_argument("--quick", action="store_true", help="2 epochs x 10 steps instead of the engine default")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if not args.points and not args.demo:
        ap.error("give --points, --demo or both")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - set(MODELS)
    if unknown:
        ap.error(f"unknown models {sorted(unknown)}; choose from {', '.join(MODELS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = budget_from(args)
    log = lambda *a: print(*a, file=sys.stderr, flush=True)   # noqa: E731 (stdout carries the table)

    started = time.perf_counter()
    sections = []
    if args.points:
        config = RunConfig(points=args.points, out_dir=str(out), dem=args.dem, geology=args.geology,
                           geology_field=args.geology_field, soil=args.soil, soil_field=args.soil_field,
                           aoi=args.aoi, device="cpu", holdout_days=args.holdout_days, model="scratch")
        sections += run_dataset(Path(args.points).name, config, budget, args.holdout_days, models, log=log)
    if args.demo:
        demo = make_demo(out / "demo_data", seed=0, size_km=args.demo_km)
        config = RunConfig(points=demo["points"], out_dir=str(out), dem=demo["dem"], geology=demo["geology"],
                           geology_field="unit", soil=demo["soil"], soil_field="soil", aoi=demo["aoi"],
                           device="cpu", holdout_days=args.holdout_days, model="scratch")
        sections += run_dataset(f"demo {args.demo_km:g} km", config, budget, args.holdout_days, models,
                                truth_npz=demo["truth"], log=log)
    mode = "quick" if args.quick else "custom" if args.epochs or args.steps else "full"
    table = markdown(sections, budget, mode)
    report = {"mode": mode, "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
              "budget": asdict(budget), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "total_seconds": round(time.perf_counter() - started, 1), "sections": sections}
    footer = f"\nTotal {report['total_seconds']:.0f} s on {os.cpu_count()} CPU cores.\n"
    (out / "table.md").write_text(table + footer, encoding="utf-8")
    (out / "table.json").write_text(json.dumps(report, indent=1, default=float) + "\n", encoding="utf-8")
    plot(sections, out / "rmse_by_horizon.png")
    print(table)
    print(f"Total {report['total_seconds']:.0f} s; wrote {out / 'table.md'}, table.json, rmse_by_horizon.png")
    return report


if __name__ == "__main__":
    main()
