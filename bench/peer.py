"""The zero-shot time-series foundation model a data scientist would reach for, run per point.

Fracast-0 (the `fracast` package, Apache-2.0): an 85,001-parameter pretrained forecaster of
univariate series, 9 quantiles from 0.1 to 0.9, 48 steps per pass (longer horizons feed its
own median back). Its weights ship inside its wheel (`fracast/weights/model.safetensors`), so it
runs here with no download; it is loaded from that folder only, never from a model hub.

It sees each point's series on the engine's regular 6-day axis (NaN where no epoch), with no
coordinates, priors or neighbours: the peer a per-point approach stands for.
"""
from __future__ import annotations

import numpy as np

NAME = "fracast-0 (zero-shot, per point)"
QUANTILES = (0.1, 0.5, 0.9)  # the band it can give is 80 %, not 90 %
MIN_VALUES = 8  # the fewest finite values it accepts in a series


def load_model(device: str = "cpu"):
    """The packaged full-precision weights; an ImportError names the package when it is missing."""
    try:
        from fracast import FracastModel
        from fracast.inference import _PACKAGE_WEIGHTS_DIR
    except ImportError as error:
        raise ImportError("the foundation-model peer needs the `fracast` package "
                          "(pip install -r requirements-dev.txt)") from error
    return FracastModel.from_pretrained(_PACKAGE_WEIGHTS_DIR, weights="fp32", device=device)


def forecast_points(series_mm: np.ndarray, n_steps: int, model=None, batch: int = 16) -> np.ndarray:
    """[3, n_steps, N] quantiles (QUANTILES) of the steps after each point's series [N, T] (NaN
    missing); NaN for points with fewer than MIN_VALUES values."""
    model = model if model is not None else load_model()
    series = np.asarray(series_mm, np.float32)
    want = [model.quantiles.index(q) for q in QUANTILES]
    out = np.full((len(QUANTILES), n_steps, len(series)), np.nan, np.float32)
    usable = np.flatnonzero(np.isfinite(series).sum(1) >= MIN_VALUES)
    for start in range(0, len(usable), batch):
        rows = usable[start:start + batch]
        quantiles = model.forecast_batch(series[rows], horizon=n_steps)  # [n, H, 9]
        out[:, :, rows] = quantiles[:, :, want].transpose(2, 1, 0)
    return out
