"""MM-STT: a multi-modal spatio-temporal transformer for probabilistic ground-motion forecasts.

After Multi-modal Spatio-Temporal Transformer (arXiv 2509.25393) with the geostatistical
attention bias and "deep variography" of Spatially-informed transformers (arXiv 2512.17696).

A square tile of S x S grid cells is cut into (S/p)^2 spatial patches (the tile seen as an
image) and the context into L/tp temporal chunks. Every (chunk, patch) pair is one token; one
static prior token per patch and one horizon query token per (future chunk, patch) join them,
and a single joint spatio-temporal attention encoder runs over all of them. The attention
carries an additive bias from a learnable covariance kernel of the metric distance between the
tokens' patches. Nothing depends on the number of cells: positions are functions of metres, so
a model trained on one area runs on any other tile size that is a multiple of p.

Tensor contract of `MMSTT.forward(batch: Batch)` (float32 unless said; all values normalised by the
caller; B tiles, S = tile side in cells (any multiple of patch_cells), L = context steps (any
multiple of time_patch), H = horizon steps (any), F = N_TIME_FEATURES, C = n_prior_continuous,
K = n_baselines):

    history        [B, L, S, S]     displacement, NaN replaced by 0
    history_mask   [B, L, S, S]     bool, True where history is observed
    time_features  [B, L + H, F]    time_features(dates) of the L context and H forecast steps
    priors         [B, C, S, S]     continuous priors, NaN replaced by 0 (add a mask channel)
    geology, soil  [B, S, S]        long class index, 0 = unknown, < n_*_classes
    baselines      [B, K, H, S, S]  baseline forecasts on the same scale as history

returns [B, Q, H, S, S]: the quantiles of config.quantiles, non-decreasing along Q, on the
scale of history. Training: pinball_loss(out, target, target_mask, config.quantiles), plus
w * model.cov.gaussian_nll(field, grid_coords_m(S, cell_size_m), field_mask) on standardised
detrended fields [B, S*S] so the kernel range is identified; optimise model.param_groups(wd).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .definitions import CLASS_ROWS

N_TIME_FEATURES = 5
KERNELS = ("exponential", "matern32")


@dataclass
class ModelConfig:
    tile_cells: int = 16            # S, tile side in cells (training tiles)
    patch_cells: int = 4            # p, spatial patch side in cells
    context_steps: int = 60         # L, six-day steps of history
    time_patch: int = 6             # tp, steps per temporal token
    horizon_steps: int = 60         # H, steps forecast (training windows)
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 3
    dropout: float = 0.1
    quantiles: tuple = (0.05, 0.5, 0.95)
    n_prior_continuous: int = 5     # C, e.g. elevation, slope, sin/cos aspect, known-mask
    n_geology_classes: int = CLASS_ROWS  # embedding rows: the class-name vocabulary; row 0 = no map
    n_soil_classes: int = CLASS_ROWS
    n_baselines: int = 2            # K: the first K of engine.windows.BASELINE_FITS
    cell_size_m: float = 100.0      # the cells a batch is in when it does not say (Batch.cell_size_m)
    kernel: str = "exponential"     # or "matern32"
    initial_range_m: float = 1000.0

    def __post_init__(self):
        self.quantiles = tuple(float(q) for q in self.quantiles)  # JSON gives a list back
        q = self.quantiles
        if not (q and list(q) == sorted(set(q)) and 0 < q[0] and q[-1] < 1):
            raise ValueError(f"quantiles must be increasing in (0, 1), got {q}")
        if len(q) != 3 or q[1] != 0.5 or not math.isclose(q[0], 1 - q[2]):
            # calibration, exceedance and the maps read a band around the median: (lo, 0.5, 1 - lo)
            raise ValueError(f"quantiles must be (lo, 0.5, 1 - lo), got {q}")
        if self.tile_cells % self.patch_cells or self.context_steps % self.time_patch:
            raise ValueError("tile_cells and context_steps must be multiples of patch_cells and time_patch")
        if self.n_baselines < 1:
            raise ValueError("n_baselines must be at least 1 (e.g. persistence)")
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be a multiple of n_heads")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {self.kernel!r}")


@dataclass
class Batch:
    """MM-STT's inputs for B tiles, as in the tensor contract above: numpy arrays as
    engine.windows makes them, tensors after `.to(device)`."""

    history: Any  # [B, L, S, S]
    history_mask: Any  # [B, L, S, S] bool
    time_features: Any  # [B, L + H, F]
    priors: Any  # [B, C, S, S]
    geology: Any  # [B, S, S] int64
    soil: Any  # [B, S, S] int64
    baselines: Any  # [B, K, H, S, S]
    cell_size_m: float = 0.0  # the tiles' cell size; 0: the config's. Positions are metres of the data.

    def to(self, device) -> Batch:
        moved = {f.name: torch.as_tensor(getattr(self, f.name)).to(device) for f in fields(self)
                 if f.name != "cell_size_m"}
        return Batch(**moved, cell_size_m=self.cell_size_m)

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        """One batch of the tiles of several (numpy arrays, as engine.windows makes them)."""
        cells = {b.cell_size_m for b in batches}
        if len(cells) > 1:
            raise ValueError(f"one batch holds one cell size, got {sorted(cells)}")
        arrays = {f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(Batch)
                  if f.name != "cell_size_m"}
        return Batch(**arrays, cell_size_m=cells.pop())

    def __getitem__(self, tiles) -> Batch:
        """The batch of the tiles selected by a slice, an index array or a mask."""
        arrays = {f.name: getattr(self, f.name)[tiles] for f in fields(self) if f.name != "cell_size_m"}
        return Batch(**arrays, cell_size_m=self.cell_size_m)


def time_features(dates: np.ndarray) -> np.ndarray:
    """[T] datetime64[D] -> [T, 5] float32: sin/cos day of year, sin/cos month, (decimal year - 2020) / 10."""
    dates = np.asarray(dates, dtype="datetime64[D]")
    year = dates.astype("datetime64[Y]")
    day = (dates - year.astype("datetime64[D]")).astype(np.float64)
    year_len = ((year + 1).astype("datetime64[D]") - year.astype("datetime64[D]")).astype(np.float64)
    month = dates.astype("datetime64[M]").astype(np.int64) % 12
    a_day, a_month = 2 * np.pi * day / year_len, 2 * np.pi * month / 12
    decimal_year = 1970 + year.astype(np.int64) + day / year_len
    feats = [np.sin(a_day), np.cos(a_day), np.sin(a_month), np.cos(a_month), (decimal_year - 2020) / 10]
    return np.stack(feats, 1).astype(np.float32)


def grid_coords_m(n: int, spacing_m: float) -> torch.Tensor:
    """[n*n, 2] (x, y) metres of the centres of an n x n grid, row-major, centred on 0, y up."""
    c = (torch.arange(n, dtype=torch.float32) - (n - 1) / 2) * spacing_m
    row, col = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([col.flatten(), -row.flatten()], 1)


def fourier(x: torch.Tensor, n: int, min_period: float, max_period: float) -> torch.Tensor:
    """[...] -> [..., 2n]: sin and cos of x at n log-spaced periods."""
    periods = torch.logspace(math.log10(min_period), math.log10(max_period), n,
                             dtype=x.dtype, device=x.device)
    angle = 2 * math.pi * x[..., None] / periods
    return torch.cat([angle.sin(), angle.cos()], -1)


def patchify(x: torch.Tensor, tp: int, p: int) -> torch.Tensor:
    """[B, T, C, S, S] -> [B, T/tp * (S/p)^2, C*tp*p*p]; tokens time-major, patches row-major."""
    B, T, C, S, _ = x.shape
    x = x.reshape(B, T // tp, tp, C, S // p, p, S // p, p).permute(0, 1, 4, 6, 3, 2, 5, 7)
    return x.reshape(B, (T // tp) * (S // p) ** 2, C * tp * p * p)


def unpatchify(x: torch.Tensor, tp: int, p: int, C: int, S: int) -> torch.Tensor:
    """Inverse of patchify: [B, Tc * (S/p)^2, C*tp*p*p] -> [B, Tc*tp, C, S, S]."""
    B, n = x.shape[:2]
    Tc = n // (S // p) ** 2
    x = x.reshape(B, Tc, S // p, S // p, C, tp, p, p).permute(0, 1, 5, 4, 2, 6, 3, 7)
    return x.reshape(B, Tc * tp, C, S, S)


def median_index(quantiles) -> int:
    """Position of the median (the quantile nearest 0.5) in `quantiles`."""
    return min(range(len(quantiles)), key=lambda i: abs(quantiles[i] - 0.5))


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, quantiles,
                 median_target: torch.Tensor | None = None, median_mask: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Mean quantile loss of pred [B, Q, H, S, S] against target [B, H, S, S] where mask [B, H, S, S].

    With `median_target` (a noise-free truth, where known) the median is scored against it and the
    outer quantiles against the observations: the median learns the motion, not its noise, and
    the band still holds the observations."""
    q = torch.as_tensor(quantiles, dtype=pred.dtype, device=pred.device).view(1, -1, 1, 1, 1)
    err = target[:, None] - pred
    loss = torch.maximum(q * err, (q - 1) * err)
    per_quantile = (loss * mask[:, None]).sum((0, 2, 3, 4)) / mask.sum().clamp(min=1)
    if median_target is None:
        return per_quantile.mean()
    mid = median_index(quantiles)
    centre = 0.5 * (median_target - pred[:, mid]).abs()
    centre = (centre * median_mask).sum() / median_mask.sum().clamp(min=1)
    return torch.cat([per_quantile[:mid], centre[None], per_quantile[mid + 1:]]).mean()


class CovarianceBias(nn.Module):
    """Attention bias from a learnable geostatistical covariance kernel of token distance.

    bias_h(i, j) = beta_h * log k(d_ij / a_ij): the stationary prior beta_h * log k(d_ij / a)
    with global range a, plus a non-stationary residual from a local range per token,
    a_ij = a * exp((s_i + s_j) / 2), s = tanh(MLP(token)) in [-1, 1], zero at initialisation.
    k(r) = exp(-r) (exponential) or (1 + sqrt3 r) exp(-sqrt3 r) (Matern-3/2); a is the
    kernel's scale parameter in metres. With the exponential kernel the bias sees only
    beta / a, so the range is identified by `gaussian_nll`, not by the forecast loss.
    """

    def __init__(self, n_heads: int, kernel: str = "exponential", initial_range_m: float = 1000.0,
                 d_model: int | None = None):
        super().__init__()
        self.kernel = kernel
        self.log_range = nn.Parameter(torch.tensor(math.log(initial_range_m)))
        # ALiBi-like spread of strengths: some heads local, some nearly global
        beta = torch.logspace(math.log10(2.0), math.log10(0.25), n_heads)
        self.beta_raw = nn.Parameter(beta.expm1().log())  # softplus^-1
        self.nugget_logit = nn.Parameter(torch.tensor(-2.0))  # nugget share of the variance, 0.12
        self.local = None
        if d_model is not None:
            self.local = nn.Sequential(nn.Linear(d_model, 16), nn.GELU(), nn.Linear(16, 1))
            nn.init.zeros_(self.local[2].weight)
            nn.init.zeros_(self.local[2].bias)

    @property
    def range_m(self) -> float:
        return self.log_range.detach().exp().item()

    def log_kernel(self, r: torch.Tensor) -> torch.Tensor:
        if self.kernel == "exponential":
            return -r
        r = math.sqrt(3) * r
        return torch.log1p(r) - r

    def forward(self, pos_m: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens at pos_m [N, 2] metres (features x [B, N, d]) -> bias [B or 1, heads, N, N]."""
        r = (torch.cdist(pos_m, pos_m) / self.log_range.exp())[None]
        if self.local is not None and x is not None:
            s = torch.tanh(self.local(x)).squeeze(-1)
            r = r * torch.exp(-(s[:, :, None] + s[:, None, :]) / 2)
        beta = F.softplus(self.beta_raw)
        return beta[None, :, None, None] * self.log_kernel(r)[:, None]

    def gaussian_nll(self, values: torch.Tensor, coords_m: torch.Tensor,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean per-value Gaussian-process NLL of fields values [B, N] at coords_m [N, 2] metres.

        Values are standardised and zero-mean: covariance (1 - nugget) * k(d / a) + nugget * I has
        unit variance, so the range is not traded against a sill. mask [B, N] marks observed
        values; the others leave the likelihood (their rows become identity). N up to a few
        hundred: one Cholesky per call, or per field when masked.
        """
        d = torch.cdist(coords_m, coords_m)
        eye = torch.eye(len(d), dtype=values.dtype, device=values.device)
        nugget = torch.sigmoid(self.nugget_logit)
        cov = (1 - nugget) * self.log_kernel(d / self.log_range.exp()).exp() + (nugget + 1e-5) * eye
        if mask is None:  # one factor shared by all fields, fields as columns
            chol = torch.linalg.cholesky(cov)
            z = torch.linalg.solve_triangular(chol, values.T, upper=False)
            logdet = 2 * torch.diagonal(chol).log().sum() * len(values)
            n_obs = values.numel()
        else:
            m = mask.to(values.dtype)
            cov = cov * (m[:, :, None] * m[:, None, :]) + eye * (1 - m)[:, :, None]
            chol = torch.linalg.cholesky(cov)
            z = torch.linalg.solve_triangular(chol, (values * m)[:, :, None], upper=False)
            logdet = 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum()
            n_obs = m.sum().clamp(min=1)
        return 0.5 * (z.square().sum() + logdet) / n_obs + 0.5 * math.log(2 * math.pi)


class Block(nn.Module):
    """Pre-norm transformer block whose attention logits get an additive bias."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        B, N, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, N, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # dropout on residuals only: cheaper
        x = x + F.dropout(self.proj(y.transpose(1, 2).reshape(B, N, d)), self.dropout, self.training)
        return x + self.mlp(self.ln2(x))


class MMSTT(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        d, p, tp, Q, K = c.d_model, c.patch_cells, c.time_patch, len(c.quantiles), c.n_baselines
        self.mid = median_index(c.quantiles)
        self.hist_in = nn.Linear(2 * tp * p * p, d)              # values and mask of one token
        self.prior_in = nn.Linear(c.n_prior_continuous * p * p, d)
        self.geology = nn.Embedding(c.n_geology_classes, d)
        self.soil = nn.Embedding(c.n_soil_classes, d)
        self.time_in = nn.Linear(N_TIME_FEATURES, d)             # calendar of a chunk
        self.lag_in = nn.Linear(16, d)                           # chunk offset from the forecast origin
        self.pos_in = nn.Sequential(nn.Linear(32, d), nn.GELU(), nn.Linear(d, d))  # metric patch offset
        self.kind = nn.Parameter(0.02 * torch.randn(3, d))       # history / prior / query token
        self.cov = CovarianceBias(c.n_heads, c.kernel, c.initial_range_m, d)
        self.blocks = nn.ModuleList(Block(d, c.n_heads, c.dropout) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, Q * tp * p * p)
        self.mix = nn.Linear(d, K)                               # per-token weights of the baselines
        # start from persistence, not from the baselines: where a step or an onset of pumping
        # sits in the window their extrapolation runs away, and early stopping may come
        # before the network has learnt to distrust them
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def variogram_range_m(self) -> float:
        return self.cov.range_m

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer groups: decay matrices only; biases, norms and the kernel's scalars never,
        since decay would drag log-range toward 1 m and the strengths toward 0."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]

    def forward(self, batch: Batch) -> torch.Tensor:
        c = self.config
        p, tp, Q, K = c.patch_cells, c.time_patch, len(c.quantiles), c.n_baselines
        hist = batch.history
        B, L, S, _ = hist.shape
        H = batch.baselines.shape[2]
        if S % p or L % tp:
            raise ValueError(f"tile side {S} and context {L} must be multiples of {p} and {tp}")
        P, Lc, Hc = (S // p) ** 2, L // tp, -(-H // tp)
        pad = Hc * tp - H

        # positions: metres for space, chunks from the forecast origin for time
        cell_m = batch.cell_size_m or c.cell_size_m
        pos = grid_coords_m(S // p, p * cell_m).to(hist.device)                 # [P, 2]
        unit = p * cell_m
        space = self.pos_in(fourier(pos, 8, 2 * unit, 64 * unit).flatten(1))     # [P, d]
        lag = torch.arange(-Lc, Hc, dtype=hist.dtype, device=hist.device)
        chunk = self.lag_in(fourier(lag, 8, 2.0, 256.0))                         # [Lc+Hc, d]
        tf = F.pad(batch.time_features, (0, 0, 0, pad), value=float("nan"))
        chunk = chunk + self.time_in(tf.view(B, Lc + Hc, tp, -1).nanmean(2))     # [B, Lc+Hc, d]
        chunk = chunk[:, :, None] + space                                        # [B, Lc+Hc, P, d]

        values = torch.stack([hist, batch.history_mask.to(hist.dtype)], 2)
        x_hist = self.hist_in(patchify(values, tp, p)).view(B, Lc, P, -1) + chunk[:, :Lc] + self.kind[0]
        cats = self.geology(batch.geology) + self.soil(batch.soil)        # [B, S, S, d]
        cats = F.avg_pool2d(cats.permute(0, 3, 1, 2), p).flatten(2).transpose(1, 2)
        x_prior = self.prior_in(patchify(batch.priors[:, None], 1, p)) + cats + space + self.kind[1]
        x_query = chunk[:, Lc:] + self.kind[2]
        x = torch.cat([x_hist.flatten(1, 2), x_prior, x_query.flatten(1, 2)], 1)

        bias = self.cov(pos.repeat(Lc + 1 + Hc, 1), x)
        for block in self.blocks:
            x = block(x, bias)
        out = self.ln_f(x[:, -Hc * P:])                                          # [B, Hc*P, d]

        base = F.pad(batch.baselines.transpose(1, 2), (0, 0, 0, 0, 0, 0, 0, pad))  # [B, Hc*tp, K, S, S]
        base = patchify(base, tp, p).view(B, Hc * P, K, -1)
        base = (self.mix(out)[..., None] * base).sum(2)                         # [B, Hc*P, tp*p*p]
        raw = self.head(out).view(B, Hc * P, Q, -1)
        centre = raw[:, :, self.mid] + base
        up = F.softplus(raw[:, :, self.mid + 1:]).cumsum(2)
        down = F.softplus(raw[:, :, :self.mid]).flip(2).cumsum(2).flip(2)
        quant = torch.cat([centre[:, :, None] - down, centre[:, :, None], centre[:, :, None] + up], 2)
        return unpatchify(quant.flatten(2), tp, p, Q, S).transpose(1, 2)[:, :, :H]
