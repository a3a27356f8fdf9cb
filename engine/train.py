"""Self-supervised training of MM-STT on an area's own history, and tiled forecasting.

The cube is cut into overlapping S x S tiles; a training example is one tile at one
forecast origin ("anchor"): the L steps before it are the context, the H steps from it
the target. Everything is expressed relative to the origin's level (the mean of the last
few valid epochs) and divided by one scale for the area, so the model never sees
absolute displacement and runs on any area. Baselines fitted on the history before the
origin are given to the model, which learns a probabilistic correction of them.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .errors import InputError
from .params import TrainOptions
from .model import MMSTT, ModelConfig, grid_coords_m, pinball_loss, time_features
from .progress import check_cancel

STEP_DAYS = 6
LEVEL_STEPS = 5  # the origin's level: mean of the last five valid epochs (30 days)
LOOKBACK_STEPS = 122  # two years of history for the per-window time-function baseline
MIN_HISTORY_STEPS = 61  # an origin needs a year of history
N_CLASSES = 16  # geology/soil embedding rows; class codes beyond fold onto them
TILE_OVERLAP = 4


@dataclass
class Area:
    """The model's view of one area: regular-time cube plus static priors, padded to whole tiles."""

    dates: np.ndarray  # [T] datetime64[D], regular STEP_DAYS axis
    displacement_mm: np.ndarray  # [T, Hp, Wp] float32, NaN where no data
    priors: np.ndarray  # [C, Hp, Wp] float32, NaN-free
    geology: np.ndarray  # [Hp, Wp] int64
    soil: np.ndarray  # [Hp, Wp] int64
    height: int  # the grid's own size (before padding)
    width: int

    def until(self, n_steps: int) -> Area:
        """The area as it was known after its first n_steps epochs."""
        return Area(
            self.dates[:n_steps],
            self.displacement_mm[:n_steps],
            self.priors,
            self.geology,
            self.soil,
            self.height,
            self.width,
        )


@dataclass
class TrainedModel:
    model: MMSTT
    scale_mm: float
    device: str
    log: dict = field(default_factory=dict)


def make_area(cube, priors, tile_cells: int) -> Area:
    """Stack the cube and priors into model inputs, padded with no-data to at least one tile."""
    T, H, W = cube.displacement_mm.shape
    Hp, Wp = max(H, tile_cells), max(W, tile_cells)
    disp = np.full((T, Hp, Wp), np.nan, np.float32)
    disp[:, :H, :W] = cube.displacement_mm
    elev = priors.elevation_m.astype(np.float64)
    known = np.isfinite(elev)
    z = (elev - np.nanmean(elev)) / (np.nanstd(elev) + 1e-6) if known.any() else np.zeros_like(elev)
    aspect = np.deg2rad(np.nan_to_num(priors.aspect_deg, nan=0.0))
    flat = ~np.isfinite(priors.aspect_deg)
    channels = [
        z,
        np.nan_to_num(priors.slope_deg, nan=0.0) / 30.0,
        np.where(flat, 0.0, np.sin(aspect)),
        np.where(flat, 0.0, np.cos(aspect)),
        known,
    ]
    prior = np.zeros((len(channels), Hp, Wp), np.float32)
    for i, channel in enumerate(channels):
        prior[i, :H, :W] = np.nan_to_num(channel, nan=0.0)

    def classes(codes):
        out = np.zeros((Hp, Wp), np.int64)
        codes = codes.astype(np.int64)
        out[:H, :W] = np.where(codes > 0, (codes - 1) % (N_CLASSES - 1) + 1, 0)
        return out

    return Area(cube.dates, disp, prior, classes(priors.geology), classes(priors.soil), H, W)


def tile_origins(size: int, tile: int) -> list[int]:
    """Start offsets of overlapping tiles covering [0, size); the last one flush with the end."""
    stride = tile - TILE_OVERLAP
    starts = list(range(0, max(size - tile, 0) + 1, stride))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def occupied_tiles(area: Area, tile: int) -> list[tuple[int, int]]:
    seen = np.isfinite(area.displacement_mm).any(0)
    return [
        (r, c)
        for r in tile_origins(seen.shape[0], tile)
        for c in tile_origins(seen.shape[1], tile)
        if seen[r : r + tile, c : c + tile].any()
    ]


def window_level(hist: np.ndarray) -> np.ndarray:
    """Origin level [..., S, S] of a history [..., L, S, S]: mean of the last LEVEL_STEPS valid epochs."""
    valid = np.isfinite(hist)
    rank = np.cumsum(valid[..., ::-1, :, :], axis=-3)[..., ::-1, :, :]  # valid epochs from here to the end
    recent = valid & (rank <= LEVEL_STEPS)
    total = np.where(recent, hist, 0.0).sum(-3)
    count = recent.sum(-3)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def window_baselines(hist: np.ndarray, level: np.ndarray, horizon_steps: int) -> np.ndarray:
    """[B, K=2, H, S, S] baseline increments from the level, fitted on hist [B, Lb, S, S].

    K0: offset + velocity + annual + semi-annual over the whole lookback (MintPy-style);
    K1: offset + velocity over the last year only, which follows recent changes of rate.
    """
    B, Lb, S, _ = hist.shape
    t = (np.arange(Lb) - Lb) * STEP_DAYS / 365.25  # years before the origin
    tf = np.arange(horizon_steps) * STEP_DAYS / 365.25
    out = np.zeros((B, 2, horizon_steps, S, S), np.float32)
    y = hist.reshape(B, Lb, S * S).transpose(0, 2, 1)  # [B, N, Lb]
    w = np.isfinite(y)
    y = np.where(w, y, 0.0)
    for k, (recent, seasonal) in enumerate(((Lb, True), (61, False))):
        cols = [np.ones_like(t), t]
        fcols = [np.ones_like(tf), tf]
        if seasonal:
            for harmonic in (1, 2):
                cols += [np.sin(2 * np.pi * harmonic * t), np.cos(2 * np.pi * harmonic * t)]
                fcols += [np.sin(2 * np.pi * harmonic * tf), np.cos(2 * np.pi * harmonic * tf)]
        A, Af = np.stack(cols, 1), np.stack(fcols, 1)
        wk = w.copy()
        wk[..., : Lb - recent] = False
        AtA = np.einsum("lk,bnl,lj->bnkj", A, wk, A)
        # shrink seasonal and rate terms towards zero where data are thin (ridge, not the offset)
        ridge = np.full(A.shape[1], 1.0)
        ridge[0] = 1e-6
        AtA = AtA + np.diag(ridge)
        Aty = np.einsum("lk,bnl->bnk", A, y * wk)
        coef = np.linalg.solve(AtA, Aty[..., None])[..., 0]  # [B, N, K]
        pred = np.einsum("hk,bnk->bnh", Af, coef).transpose(0, 2, 1).reshape(B, horizon_steps, S, S)
        enough = wk.sum(-1).reshape(B, 1, S, S) >= 6
        out[:, k] = np.where(enough, pred - level[:, None], 0.0)
    return out


def make_batch(area: Area, tiles, anchors, config: ModelConfig, scale_mm: float, with_target: bool):
    """Numpy arrays for a list of (row, col) tiles at forecast origins `anchors` (epoch indices)."""
    S, L, H = config.tile_cells, config.context_steps, config.horizon_steps
    T = len(area.dates)
    Lb = max(LOOKBACK_STEPS, L)
    n = len(tiles)
    look = np.full((n, Lb, S, S), np.nan, np.float32)
    target = np.full((n, H, S, S), np.nan, np.float32)
    tfeat = np.zeros((n, L + H, 5), np.float32)
    for i, ((r, c), a) in enumerate(zip(tiles, anchors)):
        lo = max(a - Lb, 0)
        look[i, Lb - (a - lo) :] = area.displacement_mm[lo:a, r : r + S, c : c + S]
        if with_target:
            hi = min(a + H, T)
            target[i, : hi - a] = area.displacement_mm[a:hi, r : r + S, c : c + S]
        step = np.timedelta64(STEP_DAYS, "D")
        origin = area.dates[0] + a * step
        tfeat[i] = time_features(origin + np.arange(-L, H) * step)
    level = window_level(look[:, -MIN_HISTORY_STEPS:])
    hist = look[:, -L:] - level[:, None]
    baselines = window_baselines(look, level, H)
    rows = [r for r, _ in tiles]
    cols = [c for _, c in tiles]
    idx = (
        np.array(rows)[:, None, None] + np.arange(S)[None, :, None],
        np.array(cols)[:, None, None] + np.arange(S)[None, None, :],
    )
    batch = {
        "history": np.nan_to_num(hist / scale_mm, nan=0.0),
        "history_mask": np.isfinite(hist),
        "time_features": tfeat,
        "priors": area.priors[:, idx[0], idx[1]].transpose(1, 0, 2, 3),
        "geology": area.geology[idx],
        "soil": area.soil[idx],
        "baselines": baselines / scale_mm,
    }
    extra = {"level_mm": level}
    if with_target:
        goal = (target - level[:, None]) / scale_mm
        extra["target"] = np.nan_to_num(goal, nan=0.0)
        extra["target_mask"] = np.isfinite(goal)
    return batch, extra


def to_torch(arrays: dict, device) -> dict:
    return {k: torch.as_tensor(v).to(device) for k, v in arrays.items()}


def area_scale_mm(area: Area) -> float:
    """Typical one-year change of the area, robustly: the unit the model works in."""
    d = area.displacement_mm
    if len(d) <= MIN_HISTORY_STEPS:
        return 5.0
    change = (d[MIN_HISTORY_STEPS:] - d[:-MIN_HISTORY_STEPS]).ravel()
    change = change[np.isfinite(change)]
    if not len(change):
        return 5.0
    mad = np.median(np.abs(change - np.median(change))) * 1.4826
    return float(np.clip(max(mad, np.sqrt(np.mean(change**2)) * 0.5), 1.0, 200.0))


def pick_device(name: str) -> str:
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch finds no CUDA GPU on this machine.")
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def variography_field(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per tile, the standardised change over the context: the field whose covariance we learn."""
    hist, mask = batch["history"], batch["history_mask"]
    first = (hist[:, :LEVEL_STEPS] * mask[:, :LEVEL_STEPS]).sum(1) / mask[:, :LEVEL_STEPS].sum(1).clamp(min=1)
    seen = mask[:, :LEVEL_STEPS].any(1) & mask[:, -LEVEL_STEPS:].any(1)
    change = (-first).flatten(1)  # history is relative to the level at the end
    seen = seen.flatten(1)
    m = seen.float()
    mean = (change * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
    std = (((change - mean) * m).square().sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)).sqrt()
    return ((change - mean) / (std + 1e-3)) * m, seen


def fit(
    area: Area,
    config: ModelConfig,
    options: TrainOptions,
    progress=None,
    log=print,
    init_state: dict | None = None,
) -> TrainedModel:
    """Train on sliding windows with a temporal validation split and early stopping.

    `init_state` (weights of a model trained on another area) starts from what that area
    taught: the few-shot path, where a short budget adapts it to this area.
    """
    device = pick_device(options.device)
    try:
        return _fit_on(device, area, config, options, progress, init_state)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        log("The GPU ran out of memory; training again on the CPU.")
        return _fit_on("cpu", area, config, options, progress, init_state)


def split_anchors(n_epochs: int, horizon_steps: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Training origins whose targets end before the validation period, and validation origins."""
    val_steps = int(np.clip(n_epochs // 5, 10, horizon_steps))
    cut = n_epochs - val_steps
    train = np.arange(MIN_HISTORY_STEPS, cut)  # the last one's first target is epoch cut - 1
    val = np.unique(np.linspace(cut, max(cut, n_epochs - 2), 3).astype(int))
    if len(train) < 4:
        raise InputError(
            f"the series has {n_epochs} regular epochs; training needs at least "
            f"{MIN_HISTORY_STEPS + val_steps + 5} (about two years)."
        )
    return train, val, cut


def _fit_on(
    device: str, area: Area, config: ModelConfig, options: TrainOptions, progress, init_state: dict | None
) -> TrainedModel:
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    started = time.perf_counter()
    S = config.tile_cells
    tiles = occupied_tiles(area, S)
    if not tiles:
        raise InputError("no grid cell holds any displacement value.")
    scale_mm = area_scale_mm(area)
    train_anchors, val_anchors, cut = split_anchors(len(area.dates), config.horizon_steps)
    seen_by_training = area.until(cut)  # training targets never reach the validation period

    model = MMSTT(config)
    if init_state is not None:
        model.load_state_dict(init_state)
    model = model.to(device)
    opt = torch.optim.AdamW(
        model.param_groups(options.weight_decay), lr=options.learning_rate
    )  # no decay on the range
    total_steps = options.epochs * options.steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, options.learning_rate, total_steps=total_steps, pct_start=0.15
    )
    amp = device == "cuda"
    coords = grid_coords_m(S, config.cell_size_m).to(device)

    val_examples = [(t, a) for a in val_anchors for t in tiles]
    val_batches = [
        make_batch(area, [t for t, _ in chunk], [a for _, a in chunk], config, scale_mm, True)
        for chunk in chunks(val_examples, options.batch_tiles)
    ]

    best, best_state, bad, history = math.inf, None, 0, []
    for epoch in range(options.epochs):
        model.train()
        train_loss = 0.0
        for step in range(options.steps_per_epoch):
            check_cancel(progress)
            pick = rng.integers(len(tiles), size=options.batch_tiles)
            anchors = rng.choice(train_anchors, size=options.batch_tiles)
            arrays, extra = make_batch(
                seen_by_training, [tiles[i] for i in pick], anchors, config, scale_mm, True
            )
            batch = to_torch(arrays, device)
            target = torch.as_tensor(extra["target"]).to(device)
            mask = torch.as_tensor(extra["target_mask"]).to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                pred = model(batch)
            loss = pinball_loss(pred.float(), target, mask, config.quantiles)
            if options.variography_weight:
                values, seen = variography_field(batch)
                if seen.sum() > 8:
                    loss = loss + options.variography_weight * model.cov.gaussian_nll(values, coords, seen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            train_loss += loss.item() / options.steps_per_epoch
            if progress is not None:
                done = (epoch * options.steps_per_epoch + step + 1) / total_steps
                progress.progress(done, f"training epoch {epoch + 1}/{options.epochs}, loss {train_loss:.3f}")
        val_loss = evaluate(model, val_batches, config, device)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": round(train_loss, 5),
                "val_loss": round(val_loss, 5),
                "range_m": round(model.variogram_range_m(), 1),
            }
        )
        if val_loss < best - 1e-4:
            best, bad = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= options.patience:
                break
    if best_state is None:  # the validation loss was never finite
        raise InputError("training diverged (the validation loss is not a number); check the input "
                         "series for extreme values, or try another --seed.")
    model.load_state_dict(best_state)
    model.eval()
    log_info = {
        "epochs_run": len(history),
        "best_val_loss": best,
        "history": history,
        "n_tiles": len(tiles),
        "n_train_origins": len(train_anchors),
        "validation_from": str(area.dates[cut]),
        "validation_index": int(cut),
        "seconds": time.perf_counter() - started,
        "options": asdict(options),
    }
    return TrainedModel(model, scale_mm, device, log_info)


def chunks(items: list, size: int):
    return [items[i : i + size] for i in range(0, len(items), size)]


@torch.no_grad()
def evaluate(model: MMSTT, batches, config: ModelConfig, device: str) -> float:
    model.eval()
    total, weight = 0.0, 0.0
    for arrays, extra in batches:
        mask = torch.as_tensor(extra["target_mask"]).to(device)
        pred = model(to_torch(arrays, device)).float()
        loss = pinball_loss(pred, torch.as_tensor(extra["target"]).to(device), mask, config.quantiles)
        n = float(mask.sum())
        total, weight = total + float(loss) * n, weight + n
    return total / max(weight, 1.0)


@torch.no_grad()
def forecast_area(
    trained: TrainedModel, area: Area, anchor: int | None = None, progress=None, batch_tiles: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Quantile increments [Q, H, height, width] (mm, from the level) and the level [height, width].

    Tiles overlap; their predictions are blended with weights that fall towards tile edges,
    so the cost grows linearly with the area and memory stays bounded by one batch of tiles.
    """
    model, config = trained.model, trained.model.config
    S, H, Q = config.tile_cells, config.horizon_steps, len(config.quantiles)
    anchor = len(area.dates) if anchor is None else anchor
    Hp, Wp = area.displacement_mm.shape[1:]
    tiles = occupied_tiles(area.until(anchor), S)
    total = np.zeros((Q, H, Hp, Wp), np.float32)
    level = np.full((Hp, Wp), np.nan, np.float32)
    weight = np.zeros((Hp, Wp), np.float32)
    ramp = np.minimum(np.arange(S) + 1, S - np.arange(S)).astype(np.float32)
    tile_weight = np.minimum.outer(ramp, ramp)
    model.eval()
    for i, group in enumerate(chunks(tiles, batch_tiles)):
        check_cancel(progress)
        arrays, extra = make_batch(area, group, [anchor] * len(group), config, trained.scale_mm, False)
        pred = model(to_torch(arrays, trained.device)).float().cpu().numpy() * trained.scale_mm
        for (r, c), p, lv in zip(group, pred, extra["level_mm"]):
            total[:, :, r : r + S, c : c + S] += p * tile_weight
            weight[r : r + S, c : c + S] += tile_weight
            level[r : r + S, c : c + S] = lv
        if progress is not None:
            progress.progress((i + 1) / max(1, -(-len(tiles) // batch_tiles)), "forecasting tiles")
    with np.errstate(invalid="ignore", divide="ignore"):
        quantiles = total / weight
    quantiles[:, :, weight == 0] = np.nan
    quantiles[:, :, ~np.isfinite(level)] = np.nan
    return quantiles[:, :, : area.height, : area.width], level[: area.height, : area.width]
