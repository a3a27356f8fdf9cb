"""Four published spatio-temporal forecasters, re-implemented compactly and scaled down for the benchmark.

All take a batch dict and return [B, H, *space] point forecasts on the scale of `history`:

    history  [B, L, *space]  displacement relative to the origin level / area scale, NaN -> 0
    mask     [B, L, *space]  1.0 where observed
    slot     [B, L] long     6-day slot of the year, 0..60 (STAEformer's "time of day")
    month    [B, L] long     month 0..11 (STAEformer's "day of week")
    nodes    [B, N] long     global cell index of each node (STAEformer's adaptive embedding)
    lap      [B, N, N]       scaled graph Laplacian of the nodes (STGCN)

*space is (S, S) grid cells for ConvLSTM and (N,) cells with data for the other three.
Sizes are the originals' defaults shrunk to a few hundred cells and two CPU cores. STGCN and
STAEformer were built for 12-step inputs: they see the 60-step context as 10 tokens of 6 steps
(values and masks stacked as channels, MM-STT's own time patch), which keeps N x N work affordable.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SLOTS_PER_YEAR = 61        # 366 / 6, rounded up
TIME_PATCH = 6


def patch_time(batch, p: int = TIME_PATCH) -> torch.Tensor:
    """history and mask [B, L, *space] -> [B, L/p, 2p, *space]: p steps' values and masks per token."""
    x = torch.cat([batch["history"], batch["mask"]], 1)
    B, L2 = x.shape[:2]
    x = x.view(B, 2, L2 // (2 * p), p, *x.shape[2:]).transpose(1, 2)
    return x.reshape(B, L2 // (2 * p), 2 * p, *x.shape[4:])


class ConvLSTMCell(nn.Module):
    def __init__(self, c_in: int, c_hidden: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in + c_hidden, 4 * c_hidden, kernel, padding=kernel // 2)

    def forward(self, x, h, c):
        i, f, o, g = self.conv(torch.cat([x, h], 1)).chunk(4, 1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        return o.sigmoid() * c.tanh(), c


class ConvLSTM(nn.Module):
    """Shi et al. 2015: stacked ConvLSTM encoder over the context; a 1x1 conv reads every horizon
    step off the last hidden states (the original's forecaster stack, collapsed: it costs L more steps)."""

    def __init__(self, horizon: int, hidden: tuple = (16, 16), kernel: int = 3):
        super().__init__()
        sizes = (2,) + tuple(hidden)
        self.cells = nn.ModuleList(ConvLSTMCell(a, b, kernel) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Conv2d(sum(hidden), horizon, 1)

    def forward(self, batch):
        x = torch.stack([batch["history"], batch["mask"]], 2)              # [B, L, 2, S1, S2]
        B, L, _, S1, S2 = x.shape
        state = [(x.new_zeros(B, cell.conv.out_channels // 4, S1, S2),) * 2 for cell in self.cells]
        for t in range(L):
            inp = x[:, t]
            for j, cell in enumerate(self.cells):
                state[j] = cell(inp, *state[j])
                inp = state[j][0]
        return self.head(torch.cat([h for h, _ in state], 1))


class GatedTemporalConv(nn.Module):
    """STGCN's temporal layer: a causal-width conv along time with a GLU gate and a residual."""

    def __init__(self, c_in: int, c_out: int, kt: int):
        super().__init__()
        self.kt = kt
        self.conv = nn.Conv2d(c_in, 2 * c_out, (kt, 1))
        self.res = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x):                                                  # [B, C, T, N]
        p, q = self.conv(x).chunk(2, 1)
        return (p + self.res(x)[:, :, self.kt - 1:]) * q.sigmoid()


class ChebGraphConv(nn.Module):
    """Chebyshev polynomial graph convolution of order K on a scaled Laplacian."""

    def __init__(self, c_in: int, c_out: int, order: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(order, c_in, c_out))
        self.bias = nn.Parameter(torch.zeros(c_out))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x, lap):                                             # x [B, C, T, N], lap [B, N, N]
        def prop(y):                       # y L (L symmetric), one bmm rather than a broadcast copy of L
            return torch.bmm(y.flatten(1, 2), lap).view_as(y)

        terms = [x, prop(x)]
        while len(terms) < len(self.weight):
            terms.append(2 * prop(terms[-1]) - terms[-2])
        out = torch.einsum("kbctn,kcd->bdtn", torch.stack(terms[:len(self.weight)]), self.weight)
        return out + self.bias[:, None, None]


class STConvBlock(nn.Module):
    """Yu et al. 2018: gated temporal conv, graph conv, gated temporal conv (the 'sandwich'), norm."""

    def __init__(self, c_in: int, channels: tuple, kt: int, order: int, dropout: float):
        super().__init__()
        c_t, c_s, c_out = channels
        self.t1 = GatedTemporalConv(c_in, c_t, kt)
        self.graph = ChebGraphConv(c_t, c_s, order)
        self.t2 = GatedTemporalConv(c_s, c_out, kt)
        self.norm = nn.LayerNorm(c_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, lap):
        x = self.t2(torch.relu(self.graph(self.t1(x), lap)))
        return self.dropout(self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


class STGCN(nn.Module):
    """STGCN(ChebGraphConv) with two ST-Conv blocks; original channels (64, 16, 64) scaled to (32, 8, 32)."""

    def __init__(self, context: int, horizon: int, channels: tuple = (32, 8, 32), kt: int = 3, order: int = 3,
                 dropout: float = 0.1):
        super().__init__()
        self.blocks = nn.ModuleList([STConvBlock(2 * TIME_PATCH, channels, kt, order, dropout),
                                     STConvBlock(channels[-1], channels, kt, order, dropout)])
        left = context // TIME_PATCH - 4 * (kt - 1)                        # tokens left after two blocks
        c = channels[-1]
        self.out_t = GatedTemporalConv(c, c, left)                         # output layer: collapse time
        self.out_norm = nn.LayerNorm(c)
        self.out_fc = nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, horizon))

    def forward(self, batch):
        x = patch_time(batch).transpose(1, 2)                              # [B, 2p, L/p, N]
        for block in self.blocks:
            x = block(x, batch["lap"])
        x = self.out_norm(self.out_t(x)[:, :, 0].transpose(1, 2))          # [B, N, C]
        return self.out_fc(x).transpose(1, 2)                              # [B, H, N]


def scaled_laplacian(xy: torch.Tensor, k: int = 8) -> torch.Tensor:
    """[B, N, 2] metres -> [B, N, N] Chebyshev-scaled Laplacian 2L/lmax - I of a k-nearest-neighbour graph
    with Gaussian distance weights; lmax taken as 2 (normalised Laplacian), which leaves -D^-1/2 W D^-1/2."""
    d = torch.cdist(xy, xy)
    k = min(k, d.shape[-1] - 1)
    near = d.topk(k + 1, largest=False).indices[..., 1:]                   # skip self
    dk = d.gather(-1, near)
    sigma = dk.mean((-2, -1), keepdim=True).clamp(min=1.0)
    w = torch.zeros_like(d).scatter_(-1, near, torch.exp(-(dk / sigma) ** 2))
    w = torch.maximum(w, w.transpose(-1, -2))                              # undirected
    inv = w.sum(-1).clamp(min=1e-6).rsqrt()
    return -(inv[..., :, None] * w * inv[..., None, :])


class AttentionLayer(nn.Module):
    """STAEformer's self-attention layer: post-norm, ReLU feed-forward, dropout on both residual branches."""

    def __init__(self, d: int, heads: int, feed_forward: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, feed_forward), nn.ReLU(), nn.Linear(feed_forward, d))
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):                                                  # [R, S, d], attention along S
        R, S, d = x.shape
        q, k, v = self.qkv(x).view(R, S, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(R, S, d)
        x = self.ln1(x + self.drop(self.proj(y)))
        return self.ln2(x + self.drop(self.ff(x)))


class STAEformer(nn.Module):
    """Liu et al. 2023: input, calendar and adaptive (per step and node) embeddings concatenated, then
    temporal self-attention layers, then spatial ones, and a mixed projection of all steps to the horizon.

    Official sizes 24 + 24 + 24 + 80 = 152 wide, 3 + 3 layers, feed-forward 256 are scaled to
    8 + 8 + 8 + 16 = 40, 2 + 2 layers, 64. Transductive: the adaptive embedding belongs to the
    training area's cells, so the model forecasts only the area it was trained on.
    """

    def __init__(self, n_nodes: int, context: int, horizon: int, d_input: int = 8, d_calendar: int = 8,
                 d_adaptive: int = 16, heads: int = 4, feed_forward: int = 64, layers: int = 2,
                 dropout: float = 0.1):
        super().__init__()
        self.inp = nn.Linear(2 * TIME_PATCH, d_input)
        self.slot = nn.Embedding(SLOTS_PER_YEAR, d_calendar)
        self.month = nn.Embedding(12, d_calendar)
        context //= TIME_PATCH
        self.adaptive = nn.Parameter(torch.empty(context, n_nodes, d_adaptive))
        nn.init.xavier_uniform_(self.adaptive)
        d = d_input + 2 * d_calendar + d_adaptive

        self.temporal = nn.ModuleList(AttentionLayer(d, heads, feed_forward, dropout) for _ in range(layers))
        self.spatial = nn.ModuleList(AttentionLayer(d, heads, feed_forward, dropout) for _ in range(layers))
        self.out = nn.Linear(context * d, horizon)

    def forward(self, batch):
        x, nodes = patch_time(batch).transpose(2, 3), batch["nodes"]       # [B, L, N, 2p]
        B, L, N, _ = x.shape
        last = slice(TIME_PATCH - 1, None, TIME_PATCH)                     # a token's calendar: its last step
        h = torch.cat([self.inp(x),
                       self.slot(batch["slot"][:, last])[:, :, None].expand(-1, -1, N, -1),
                       self.month(batch["month"][:, last])[:, :, None].expand(-1, -1, N, -1),
                       self.adaptive[:, nodes].transpose(0, 1)], -1)       # [B, L, N, d]
        d = h.shape[-1]
        h = h.transpose(1, 2).reshape(B * N, L, d)
        for layer in self.temporal:
            h = layer(h)
        h = h.view(B, N, L, d).transpose(1, 2).reshape(B * L, N, d)
        # at evaluation the whole area is one graph: chunk the rows so N x N attention stays small
        rows = B * L if self.training else max(1, 4_000_000 // (N * N))
        for layer in self.spatial:
            h = torch.cat([layer(part) for part in h.split(rows)])
        h = h.view(B, L, N, d).permute(0, 2, 1, 3).reshape(B, N, L * d)
        return self.out(h).transpose(1, 2)                                 # [B, H, N]


class DLinear(nn.Module):
    """Zeng et al. 2023: moving-average trend and remainder, one linear map each from context to horizon,
    shared by all cells (the original's individual=False)."""

    def __init__(self, context: int, horizon: int, kernel: int = 25):
        super().__init__()
        self.kernel = kernel
        self.trend = nn.Linear(context, horizon)
        self.season = nn.Linear(context, horizon)

    def forward(self, batch):
        x = batch["history"].transpose(1, 2)                               # [B, N, L]
        B, N, L = x.shape
        front, back = (self.kernel - 1) // 2, self.kernel // 2            # edge-replicated, as the original
        padded = torch.cat([x[..., :1].expand(-1, -1, front), x, x[..., -1:].expand(-1, -1, back)], -1)
        trend = F.avg_pool1d(padded.reshape(B * N, 1, -1), self.kernel, stride=1).view(B, N, L)
        return (self.trend(trend) + self.season(x - trend)).transpose(1, 2)
