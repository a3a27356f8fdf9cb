"""Tiled inference: a trained model's quantile forecast over a whole area, in bounded memory."""

from __future__ import annotations

import numpy as np
import torch

from .progress import check_cancel
from .store import big_array, thread_map
from .train import TrainedModel
from .windows import MIN_OWN_RATE_SPAN_DAYS, Area, chunks, history_span_days, make_batch, occupied_tiles


@torch.no_grad()
def forecast_area(
    trained: TrainedModel, area: Area, anchor: int | None = None, progress=None, batch_tiles: int = 16,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Quantile increments [Q, H, height, width] (mm, from the level) and the level [height, width].

    Tiles overlap; their predictions are blended with weights that fall towards tile edges,
    so the cost grows linearly with the area and memory stays bounded by a few batches of tiles
    (the maps themselves go to disk inside a store.Scratch). A pool of `threads` (None: every
    core) prepares the next batches while the network runs on this one; the blending follows
    the tiles' order, so the result does not depend on the number of threads.
    """
    model, config = trained.model, trained.model.config
    S, H, Q = config.tile_cells, config.horizon_steps, len(config.quantiles)
    anchor = len(area.dates) if anchor is None else anchor
    Hp, Wp = area.displacement_mm.shape[1:]
    tiles = occupied_tiles(area.until(anchor), S)
    total = big_array((Q, H, Hp, Wp), np.float32, 0.0)
    level = big_array((Hp, Wp), np.float32, np.nan)
    weight = big_array((Hp, Wp), np.float32, 0.0)
    ramp = np.minimum(np.arange(S) + 1, S - np.arange(S)).astype(np.float32)
    tile_weight = np.minimum.outer(ramp, ramp)
    model.eval()
    groups = chunks(tiles, batch_tiles)

    def inputs_of(group):
        return make_batch(area, group, [anchor] * len(group), config, trained.scale_mm, False)

    for i, (group, (inputs, targets)) in enumerate(zip(groups, thread_map(inputs_of, groups, threads))):
        check_cancel(progress)
        pred = model(inputs.to(trained.device)).float().cpu().numpy() * trained.scale_mm
        for (r, c), p, lv in zip(group, pred, targets.level_mm):
            total[:, :, r : r + S, c : c + S] += p * tile_weight
            weight[r : r + S, c : c + S] += tile_weight
            level[r : r + S, c : c + S] = lv
        if progress is not None:
            progress.progress((i + 1) / max(1, -(-len(tiles) // batch_tiles)), "forecasting tiles")
    empty = (weight == 0) | ~np.isfinite(level)
    for q in range(Q):  # in place, a map at a time: no second copy of the maps
        for h in range(H):
            with np.errstate(invalid="ignore", divide="ignore"):
                layer = total[q, h] / weight
            layer[empty] = np.nan
            total[q, h] = layer
    increments = total[:, :, : area.height, : area.width]
    borrow_for_young_cells(increments, area, anchor)
    return increments, level[: area.height, : area.width]


BORROW_NEIGHBOURS = 8
BORROW_CHUNK_CELLS = 20_000  # young cells filled at a time: bounded memory on any area


def borrow_for_young_cells(increments: np.ndarray, area: Area, anchor: int) -> np.ndarray:
    """In place: a cell seen for less than MIN_OWN_RATE_SPAN_DAYS before `anchor` (new points only)
    takes the inverse-distance mean of the quantile increments of its BORROW_NEIGHBOURS nearest
    cells with a longer history; it keeps its own level. The network reads too little from a few
    months of a cell to say how it moves, its neighbours much more (bench/short_history.py).
    Returns the young cells' mask [height, width]."""
    from scipy.spatial import cKDTree

    height, width = increments.shape[2:]
    span = history_span_days(area.dates[:anchor], area.displacement_mm[:anchor, :height, :width])
    has = span >= 0
    young = has & (span < MIN_OWN_RATE_SPAN_DAYS)
    median = increments[len(increments) // 2, 0]
    older = np.argwhere(has & ~young & np.isfinite(median))
    if not young.any() or not len(older):
        return young
    tree = cKDTree(older)
    k = min(BORROW_NEIGHBOURS, len(older))
    targets = np.argwhere(young)
    for lo in range(0, len(targets), BORROW_CHUNK_CELLS):
        chunk = targets[lo : lo + BORROW_CHUNK_CELLS]
        rows, cols = chunk.T
        distance, nearest = tree.query(chunk, k=k)
        distance, nearest = distance.reshape(len(rows), k), nearest.reshape(len(rows), k)
        weight = (1.0 / distance).astype(np.float32)  # never 0: a young cell is not an older one
        weight /= weight.sum(1, keepdims=True)
        source_rows, source_cols = older[nearest, 0], older[nearest, 1]  # [n, k]
        for q in range(len(increments)):
            values = increments[q][:, source_rows, source_cols]  # [H, n, k]
            increments[q][:, rows, cols] = (values * weight[None]).sum(-1)
    return young
