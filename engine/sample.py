"""Tiled inference: a trained model's quantile forecast over a whole area, in bounded memory."""

from __future__ import annotations

import numpy as np
import torch

from .progress import check_cancel
from .train import TrainedModel
from .windows import Area, chunks, make_batch, occupied_tiles


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
        inputs, targets = make_batch(area, group, [anchor] * len(group), config, trained.scale_mm, False)
        pred = model(inputs.to(trained.device)).float().cpu().numpy() * trained.scale_mm
        for (r, c), p, lv in zip(group, pred, targets.level_mm):
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
