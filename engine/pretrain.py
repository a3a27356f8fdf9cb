"""Pretraining the base model on the synthetic corpus (and real EGMS history), once, reproducibly.

Every step draws its batch from a generator seeded by (seed, step, rank), and the learning rate
is a function of the step, so a run resumed from its last checkpoint continues exactly as if it
had never stopped. Past one process it runs under torch.distributed (`torchrun`): DDP averages
the gradients, so every rank holds the same weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .checkpoint import save_checkpoint
from .corpus import make_region
from .errors import InputError
from .fileio import atomic_path
from .model import MMSTT, Batch, ModelConfig, grid_coords_m
from .progress import NullProgress, check_cancel
from .train import optimizer_step, pick_device, training_loss
from .windows import MIN_HISTORY_STEPS, Area, area_scale_mm, make_area, make_batch, occupied_tiles, padded

STATE_NAME = "pretrain_state.safetensors"
BASE_NAME = "base.safetensors"
REAL_HOLDOUT_DAYS = 365  # real files join only up to a year before their end: backtests stay unseen

# The base model's architecture: one year of horizon in its training windows.
BASE_CONFIG = ModelConfig(horizon_steps=61, context_steps=60, d_model=64, n_heads=4, n_layers=3,
                          n_baselines=3)


@dataclass
class PretrainOptions:
    regions: int = 192
    steps: int = 4000
    batch_tiles: int = 16
    regions_per_batch: int = 4
    learning_rate: float = 2e-3
    warmup_steps: int = 200
    weight_decay: float = 1e-4
    variography_weight: float = 0.05
    checkpoint_every: int = 200
    seed: int = 0
    device: str = "auto"
    real: list = field(default_factory=list)  # EGMS files whose history joins the corpus
    median_on_truth: bool = True  # synthetic regions score the median against their noise-free truth
    # the share of tiles where some cells are new (seen only for their last weeks or months): there the
    # history cannot say how the ground moves, and the priors and the neighbours must
    young_tiles: float = 0.0


@dataclass
class CorpusArea:
    area: Area
    scale_mm: float
    tiles: list
    source: str
    truth_mm: np.ndarray | None = None  # [T, Hp, Wp] a synthetic region's noise-free truth, as the area


def learning_rate(options: PretrainOptions, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth: a function of the step alone, so resuming is exact."""
    if step < options.warmup_steps:
        return options.learning_rate * (step + 1) / options.warmup_steps
    done = (step - options.warmup_steps) / max(options.steps - options.warmup_steps, 1)
    return options.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(done, 1.0))))


def build_corpus(options: PretrainOptions, config: ModelConfig, progress=None, log=print) -> list[CorpusArea]:
    """The synthetic regions of seeds 0..regions-1 (the pretraining configurations) and the real files."""
    progress = progress or NullProgress()
    areas = []
    for seed in range(options.regions):
        check_cancel(progress)
        region = make_region(seed)
        area = make_area(region.cube, region.priors, config)
        item = _corpus_area(area, config, f"region {seed}")
        if options.median_on_truth:
            item.truth_mm = padded(region.truth_mm, area.displacement_mm.shape[1:])
        areas.append(item)
        progress.progress((seed + 1) / max(options.regions, 1), f"building the corpus, region {seed + 1}")
    for path in options.real:
        areas.append(_corpus_area(_real_area(path, config), config, str(path)))
        log(f"{path}: its history up to {REAL_HOLDOUT_DAYS} days before its end joins the corpus")
    return [a for a in areas if a.tiles and len(a.area.dates) > MIN_HISTORY_STEPS + 1]


def _corpus_area(area: Area, config: ModelConfig, source: str) -> CorpusArea:
    return CorpusArea(area, area_scale_mm(area), occupied_tiles(area, config.tile_cells), source)


def _real_area(path, config: ModelConfig) -> Area:
    from .params import RunConfig
    from .points import read_points
    from .prepare import prepare

    points = read_points(path)
    until = points.dates[-1] - np.timedelta64(REAL_HOLDOUT_DAYS, "D")
    scene = prepare(RunConfig(points=str(path), out_dir=""), until=until, points=points)
    return make_area(scene.cube, scene.priors, config)


def draw_batch(corpus: list[CorpusArea], options: PretrainOptions, config: ModelConfig, step: int, rank: int):
    """The batch of one step on one rank: a few areas of one cell size, a few tiles and origins in each.

    Returns the inputs, the observed targets and their mask, and the median's targets and mask:
    a synthetic region's truth, or the observations where no truth is known."""
    rng = np.random.default_rng([options.seed, step, rank])
    young_rng = np.random.default_rng([options.seed, step, rank, 1])  # the main stream stays as it was
    sizes = sorted({a.area.cell_size_m for a in corpus})
    size = sizes[rng.integers(len(sizes))]
    pool = [a for a in corpus if a.area.cell_size_m == size]
    per_area = max(1, options.batch_tiles // options.regions_per_batch)
    inputs, targets = [], []
    for index in rng.integers(len(pool), size=options.regions_per_batch):
        item = pool[index]
        T = len(item.area.dates)
        tiles = [item.tiles[i] for i in rng.integers(len(item.tiles), size=per_area)]
        anchors = rng.integers(MIN_HISTORY_STEPS, T - 1, size=per_area)
        seen = young_cells(young_rng, per_area, config, options.young_tiles)
        batch, target = make_batch(item.area, tiles, anchors, config, item.scale_mm, True, item.truth_mm,
                                   seen)
        inputs.append(batch)
        targets.append(target)
    goal = np.concatenate([t.target for t in targets])
    mask = np.concatenate([t.target_mask for t in targets])
    truth = np.concatenate([t.target if t.truth is None else t.truth for t in targets])
    truth_mask = np.concatenate([t.target_mask if t.truth is None else t.truth_mask for t in targets])
    return Batch.concat(inputs), goal, mask, truth, truth_mask


YOUNG_SEEN_EPOCHS = (3, 61)  # a new cell keeps from 3 epochs (two weeks) to a year of history


def young_cells(rng, n_tiles: int, config: ModelConfig, share: float) -> np.ndarray | None:
    """[n_tiles, S, S] epochs of history each cell keeps: all of it, except in a `share` of the
    tiles, where a random half of the cells (new points among old ones) or the cells on one
    side of a random line (a new district) keep only their last few weeks or months."""
    if share <= 0:
        return None
    S = config.tile_cells
    seen = np.full((n_tiles, S, S), np.iinfo(np.int32).max, np.int64)
    rows, cols = np.mgrid[0:S, 0:S] - (S - 1) / 2
    for i in range(n_tiles):
        if rng.random() >= share:
            continue
        if rng.random() < 0.5:
            new = rng.random((S, S)) < 0.5
        else:
            angle = rng.uniform(0, 2 * np.pi)
            new = np.cos(angle) * cols + np.sin(angle) * rows > rng.uniform(-S / 4, S / 4)
        seen[i][new] = rng.integers(*YOUNG_SEEN_EPOCHS)
    return seen


def weights_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _save_state(path: Path, model: MMSTT, opt: torch.optim.Optimizer, step: int, options: PretrainOptions,
                log_rows: list) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    for index, state in opt_state["state"].items():
        for key, value in state.items():
            tensors[f"opt.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous().reshape(-1) \
                if key == "step" else value.detach().cpu().contiguous()
    meta = {"step": str(step), "options": json.dumps(asdict(options)),
            "config": json.dumps(asdict(model.config)),
            "log": json.dumps(log_rows)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _load_state(path: Path, model: MMSTT, opt: torch.optim.Optimizer, options: PretrainOptions):
    """Restore weights and optimizer moments; the step to continue from and the log so far."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        saved = json.loads(meta["options"])
    except Exception as exc:  # noqa: BLE001 (any unreadable state: one sentence)
        raise InputError(f"{path}: not a GroundCast pretraining state ({type(exc).__name__}); "
                         "remove it to start afresh.") from None
    same = {k: v for k, v in asdict(options).items() if k not in ("steps", "device", "checkpoint_every")}
    saved = {**asdict(PretrainOptions()), **saved}  # an option added since then had its default
    if {k: saved.get(k) for k in same} != same:
        raise InputError(f"{path}: it was made with other options ({_differences(saved, same)}); use another "
                         "--out, or the same options to resume.")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state = opt.state_dict()
    for index in state["state"] or range(sum(len(g["params"]) for g in state["param_groups"])):
        entries = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{index}.")}
        if entries:
            entries["step"] = entries["step"].reshape(())
            state["state"][index] = entries
    opt.load_state_dict(state)
    return int(meta["step"]), json.loads(meta.get("log", "[]"))


def _differences(saved: dict, wanted: dict) -> str:
    return ", ".join(f"{k} {saved.get(k)!r} there, {v!r} now" for k, v in wanted.items() if saved.get(k) != v)


def pretrain(out_dir, options: PretrainOptions, config: ModelConfig = BASE_CONFIG, progress=None,
             log=print) -> dict:
    """Pretrain (or resume) into out_dir: its state every checkpoint_every steps, base.safetensors last."""
    progress = progress or NullProgress()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = pick_device(options.device)
    rank, world = 0, 1
    if distributed:
        import torch.distributed as dist

        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    started = time.perf_counter()
    torch.manual_seed(options.seed)
    corpus = build_corpus(options, config, progress=progress if rank == 0 else NullProgress(),
                          log=log if rank == 0 else _quiet)
    model = MMSTT(config).to(device)
    opt = torch.optim.AdamW(model.param_groups(options.weight_decay), lr=options.learning_rate)
    state_path = out_dir / STATE_NAME
    first, rows = 0, []
    if state_path.exists():
        first, rows = _load_state(state_path, model, opt, options)
        if rank == 0:
            log(f"resuming from step {first} of {state_path}")
    net = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    amp = device == "cuda"
    recent: list[float] = []
    for step in range(first, options.steps):
        check_cancel(progress)
        torch.manual_seed(hash((options.seed, step, rank)) % 2**31)  # dropout, reproducible per step
        for group in opt.param_groups:
            group["lr"] = learning_rate(options, step)
        inputs, goal, mask, truth, truth_mask = draw_batch(corpus, options, config, step, rank)
        batch = inputs.to(device)
        target, seen = torch.as_tensor(goal).to(device), torch.as_tensor(mask).to(device)
        truth, truth_mask = torch.as_tensor(truth).to(device), torch.as_tensor(truth_mask).to(device)
        net.train()
        coords = grid_coords_m(config.tile_cells, batch.cell_size_m).to(device)
        loss = training_loss(net, model, batch, target, seen, options.variography_weight, coords, amp,
                             truth, truth_mask)
        optimizer_step(opt, model, loss)
        value = float(loss.detach())
        recent.append(value)
        done = step + 1
        if done % 50 == 0 or done == options.steps:
            rows.append({"step": done, "mean_loss": round(float(np.mean(recent)), 5),
                         "seconds": round(time.perf_counter() - started, 1)})
            recent = []
        elapsed = time.perf_counter() - started
        left = elapsed / max(done - first, 1) * (options.steps - done)
        progress.progress(done / options.steps, f"pretraining step {done}/{options.steps}, "
                          f"loss {value:.3f}, about {left / 60:.0f} min left")
        if rank == 0 and (done % options.checkpoint_every == 0 or done == options.steps):
            _save_state(state_path, model, opt, done, options, rows)
    digests = [weights_sha256(model)]
    if distributed:
        import torch.distributed as dist

        gathered = [None] * world
        dist.all_gather_object(gathered, digests[0])
        digests = gathered
    summary = {"steps": options.steps, "regions": options.regions, "areas": len(corpus),
               "real_files": [str(p) for p in options.real],
               "seconds": round(time.perf_counter() - started, 1),
               "device": device, "world_size": world, "weights_sha256_by_rank": digests, "log": rows,
               "options": asdict(options), "config": asdict(config)}
    if rank == 0:
        model.eval()
        save_checkpoint(out_dir / BASE_NAME, model, {"pretraining": summary})
        with atomic_path(out_dir / "pretrain.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=1))
    if distributed:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return summary


def _quiet(*_args) -> None:
    pass
