"""Self-supervised training of MM-STT on an area's own history.

Training examples come from engine.windows; baselines fitted on the history before each
origin are given to the model, which learns a probabilistic correction of them. A temporal
validation split, never reached by a training target, decides early stopping.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .errors import InputError
from .model import MMSTT, ModelConfig, grid_coords_m, pinball_loss
from .params import TrainOptions
from .progress import check_cancel
from .baselines import LEVEL_STEPS
from .windows import Area, area_scale_mm, chunks, make_batch, occupied_tiles, sample_tiles, split_anchors



@dataclass
class TrainedModel:
    model: MMSTT
    scale_mm: float
    device: str
    validation_index: int  # the first epoch of the validation period: calibration forecasts from it
    log: dict = field(default_factory=dict)


def pick_device(name: str) -> str:
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("The CUDA device was chosen, but this computer has no CUDA GPU; choose auto or cpu.")
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def variography_field(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per tile, the standardised change over the context: the field whose covariance we learn."""
    hist, mask = batch.history, batch.history_mask
    first = (hist[:, :LEVEL_STEPS] * mask[:, :LEVEL_STEPS]).sum(1) / mask[:, :LEVEL_STEPS].sum(1).clamp(min=1)
    seen = mask[:, :LEVEL_STEPS].any(1) & mask[:, -LEVEL_STEPS:].any(1)
    change = (-first).flatten(1)  # history is relative to the level at the end
    seen = seen.flatten(1)
    m = seen.float()
    mean = (change * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
    std = (((change - mean) * m).square().sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)).sqrt()
    return ((change - mean) / (std + 1e-3)) * m, seen


def training_loss(net, model: MMSTT, batch, target, mask, variography_weight: float, coords, amp: bool,
                  truth=None, truth_mask=None):
    """Pinball loss of the quantiles (the median against `truth` where one is given), plus the
    kernel's likelihood of the context's field so its range is identified. `net` runs the
    forward pass (the model itself, or its DDP wrapper)."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        pred = net(batch)
    loss = pinball_loss(pred.float(), target, mask, model.config.quantiles, truth, truth_mask)
    if variography_weight:
        values, seen = variography_field(batch)
        if seen.sum() > 8:
            loss = loss + variography_weight * model.cov.gaussian_nll(values, coords, seen)
    return loss


def optimizer_step(opt, model: MMSTT, loss) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


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
    coords = grid_coords_m(S, area.cell_size_m or config.cell_size_m).to(device)

    val_tiles = sample_tiles(tiles, options.validation_tiles, options.seed)
    val_examples = [(t, a) for a in val_anchors for t in val_tiles]
    val_batches = [
        make_batch(area, [t for t, _ in chunk], [a for _, a in chunk], config, scale_mm, True)
        for chunk in chunks(val_examples, options.batch_tiles)
    ]

    best, best_state, bad, history = math.inf, None, 0, []
    start_val_loss = None
    if init_state is not None:  # fine-tuning must beat the weights it starts from, or they are kept
        start_val_loss = evaluate(model, val_batches, config, device)
        if math.isfinite(start_val_loss):
            best = start_val_loss
            best_state = _snapshot(model)
    best_epoch = 0
    for epoch in range(options.epochs):
        model.train()
        train_loss = 0.0
        for step in range(options.steps_per_epoch):
            check_cancel(progress)
            pick = rng.integers(len(tiles), size=options.batch_tiles)
            anchors = rng.choice(train_anchors, size=options.batch_tiles)
            inputs, targets = make_batch(
                seen_by_training, [tiles[i] for i in pick], anchors, config, scale_mm, True
            )
            batch = inputs.to(device)
            target = torch.as_tensor(targets.target).to(device)
            mask = torch.as_tensor(targets.target_mask).to(device)
            loss = training_loss(model, model, batch, target, mask, options.variography_weight, coords, amp)
            optimizer_step(opt, model, loss)
            sched.step()
            train_loss += loss.item() / options.steps_per_epoch
            if progress is not None:
                done = (epoch * options.steps_per_epoch + step + 1) / total_steps
                mean_loss = train_loss * options.steps_per_epoch / (step + 1)  # so far in this pass
                progress.progress(done, f"training pass {epoch + 1}/{options.epochs}, "
                                        f"mean loss {mean_loss:.3f}")
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
            best, bad, best_epoch = val_loss, 0, epoch + 1
            best_state = _snapshot(model)
        else:
            bad += 1
            if bad >= options.patience:
                break
    if best_state is None:  # the validation loss was never finite
        raise InputError("training diverged (the validation loss is not a number); check the input "
                         "series for extreme values, or try another random seed.")
    model.load_state_dict(best_state)
    model.eval()
    log_info = {
        "epochs_run": len(history),
        "best_val_loss": best,
        "best_epoch": best_epoch,  # 0: no pass beat the starting weights, which were kept
        "start_val_loss": start_val_loss,
        "history": history,
        "n_tiles": len(tiles),
        "n_validation_tiles": len(val_tiles),
        "n_train_origins": len(train_anchors),
        "validation_from": str(area.dates[cut]),
        "seconds": time.perf_counter() - started,
        "options": asdict(options),
    }
    return TrainedModel(model, scale_mm, device, int(cut), log_info)


def _snapshot(model: MMSTT) -> dict:
    """A copy of the weights as they are now, for early stopping to return to."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def evaluate(model: MMSTT, batches, config: ModelConfig, device: str) -> float:
    model.eval()
    total, weight = 0.0, 0.0
    for inputs, targets in batches:
        mask = torch.as_tensor(targets.target_mask).to(device)
        pred = model(inputs.to(device)).float()
        loss = pinball_loss(pred, torch.as_tensor(targets.target).to(device), mask, config.quantiles)
        n = float(mask.sum())
        total, weight = total + float(loss) * n, weight + n
    return total / max(weight, 1.0)
