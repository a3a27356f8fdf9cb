"""MM-STT model: tensor contract, determinism, inductiveness, learning, deep variography."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from engine.model import (
    Batch,
    N_TIME_FEATURES, MMSTT, CovarianceBias, ModelConfig, grid_coords_m, patchify, pinball_loss,
    time_features, unpatchify,
)

torch.set_num_threads(1)

TINY = dict(tile_cells=8, patch_cells=4, context_steps=12, time_patch=4, horizon_steps=10, d_model=32,
            n_heads=4, n_layers=2, dropout=0.0, n_prior_continuous=3, n_geology_classes=5,
            n_soil_classes=4, n_baselines=2)


def make_batch(config: ModelConfig, B=3, S=None, L=None, H=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    S, L, H = S or config.tile_cells, L or config.context_steps, H or config.horizon_steps
    dates = np.datetime64("2019-03-01") + 6 * np.arange(L + H)
    mask = torch.rand(B, L, S, S, generator=g) > 0.2
    return Batch(
        history=torch.randn(B, L, S, S, generator=g) * mask,
        history_mask=mask,
        time_features=torch.from_numpy(time_features(dates))[None].repeat(B, 1, 1),
        priors=torch.randn(B, config.n_prior_continuous, S, S, generator=g),
        geology=torch.randint(0, config.n_geology_classes, (B, S, S), generator=g),
        soil=torch.randint(0, config.n_soil_classes, (B, S, S), generator=g),
        baselines=torch.randn(B, config.n_baselines, H, S, S, generator=g),
    )


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return MMSTT(ModelConfig(**{**TINY, **overrides}))


def test_time_features_known_dates():
    f = time_features(np.array(["2020-01-01", "2020-07-02", "2021-01-01"], dtype="datetime64[D]"))
    assert f.shape == (3, N_TIME_FEATURES) and f.dtype == np.float32
    np.testing.assert_allclose(f[0], [0, 1, 0, 1, 0], atol=1e-6)
    assert f[1, 1] < -0.99 and abs(f[1, 0]) < 0.02          # mid-year: day-of-year angle near pi
    np.testing.assert_allclose(f[1, 2:4], [0, -1], atol=1e-6)  # July: month angle exactly pi
    assert f[2, 4] == pytest.approx(0.1)


def test_patchify_round_trip_and_layout():
    x = torch.randn(2, 8, 3, 8, 8)
    tokens = patchify(x, 4, 4)
    assert tokens.shape == (2, 2 * 4, 3 * 4 * 4 * 4)
    # token 1 = first time chunk, patch in row 0 and column 1
    torch.testing.assert_close(tokens[:, 1], x[:, :4, :, :4, 4:8].transpose(1, 2).flatten(1))
    torch.testing.assert_close(unpatchify(tokens, 4, 4, 3, 8), x)


def test_forward_shapes_dtype_and_monotone_quantiles():
    model = tiny_model()
    config = model.config
    out = model(make_batch(config, B=3))
    assert out.shape == (3, 3, config.horizon_steps, 8, 8)    # horizon 10 is not a multiple of time_patch 4
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (out[:, 1] - out[:, 0]).min() > 0 and (out[:, 2] - out[:, 1]).min() > 0


def test_head_adds_a_learned_mix_of_baselines():
    model = tiny_model().eval()
    batch = make_batch(model.config)
    shifted = dataclasses.replace(batch, baselines=batch.baselines + 2.5)
    with torch.no_grad():
        # the mix starts at zero (persistence): the baselines do not move the forecast yet
        torch.testing.assert_close(model(shifted), model(batch))
        # weights summing to one: shifting every baseline shifts every quantile as much
        model.mix.bias.copy_(torch.tensor([0.7, 0.3]))
        diff = model(shifted) - model(batch)
    torch.testing.assert_close(diff, torch.full_like(diff, 2.5))


def test_same_seed_same_outputs_and_gradients():
    runs = []
    for _ in range(2):
        model = tiny_model(seed=7, dropout=0.1)
        batch = make_batch(model.config, seed=3)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        torch.manual_seed(11)
        out = model(batch)
        target = torch.randn(out.shape[0], *out.shape[2:], generator=torch.Generator().manual_seed(1))
        loss = pinball_loss(out, target, torch.ones_like(target, dtype=torch.bool), model.config.quantiles)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        opt.step()
        torch.manual_seed(12)
        runs.append((out.detach(), grads, model(batch).detach()))
    (out_a, grads_a, after_a), (out_b, grads_b, after_b) = runs
    assert torch.equal(out_a, out_b) and torch.equal(after_a, after_b)
    assert grads_a.keys() == grads_b.keys() and all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)
    assert "cov.log_range" in grads_a and sum(float(g.abs().sum()) for g in grads_a.values()) > 0


def test_inductive_no_parameter_depends_on_cells_or_tiles():
    shapes = {}
    for S in (8, 32):
        model = tiny_model(tile_cells=S)
        shapes[S] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes[8] == shapes[32]

    model = tiny_model().eval()                           # trained on 8x8 tiles, 12 steps, 10 ahead
    for B, S, L, H in [(1, 8, 12, 10), (5, 16, 12, 10), (2, 24, 20, 7)]:
        out = model(make_batch(model.config, B=B, S=S, L=L, H=H))
        assert out.shape == (B, 3, H, S, S) and torch.isfinite(out).all()
    # each tile's forecast is its own: running it alone or among others gives the same numbers
    batch = make_batch(model.config, B=4, S=16)
    with torch.no_grad():
        together = model(batch)[2]
        alone = model(batch[2:3])[0]
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_tiny_model_overfits_a_tiny_series():
    model = tiny_model(seed=1)
    config = model.config
    L, H, S = config.context_steps, config.horizon_steps, config.tile_cells
    t = torch.arange(L + H, dtype=torch.float32)
    rate = torch.linspace(-0.3, 0.1, S * S).view(S, S)
    series = rate * t[:, None, None] / 6 + 0.5 * torch.sin(2 * math.pi * t / 10)[:, None, None]
    series = torch.stack([series, -0.5 * series])             # two tiles
    batch = make_batch(config, B=2, seed=5)
    batch = dataclasses.replace(batch, history=series[:, :L],
                                history_mask=torch.ones(2, L, S, S, dtype=torch.bool),
                                baselines=torch.zeros(2, config.n_baselines, H, S, S))
    target, mask = series[:, L:], torch.ones(2, H, S, S, dtype=torch.bool)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        loss = pinball_loss(model(batch), target, mask, config.quantiles)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])


def test_covariance_bias_is_the_stationary_kernel_at_init():
    for kernel in ("exponential", "matern32"):
        cov = CovarianceBias(4, kernel, 500.0, d_model=8)
        pos = grid_coords_m(3, 100.0)
        x = torch.randn(2, 9, 8)
        bias = cov(pos, x)
        assert bias.shape == (2, 4, 9, 9)
        r = torch.cdist(pos, pos) / 500.0
        log_k = -r if kernel == "exponential" else torch.log1p(3 ** 0.5 * r) - 3 ** 0.5 * r
        beta = torch.nn.functional.softplus(cov.beta_raw)
        torch.testing.assert_close(bias, (beta[:, None, None] * log_k).expand(2, 4, 9, 9))
        assert cov.range_m == pytest.approx(500.0)
        # the non-stationary part is trainable: its gradient reaches the local-range MLP
        bias.square().sum().backward()
        assert cov.local[2].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kernel", ["exponential", "matern32"])
def test_gaussian_nll_matches_scipy_with_missing_values(kernel):
    torch.manual_seed(0)
    cov = CovarianceBias(2, kernel, 250.0).double()
    coords = grid_coords_m(3, 100.0).double()
    values = torch.randn(2, 9, dtype=torch.float64)
    mask = torch.rand(2, 9) > 0.3
    mask[:, 0] = True
    got = cov.gaussian_nll(values, coords, mask).item()

    nugget = torch.sigmoid(cov.nugget_logit).item()
    r = torch.cdist(coords, coords).numpy() / 250.0
    k = np.exp(-r) if kernel == "exponential" else (1 + 3 ** 0.5 * r) * np.exp(-(3 ** 0.5) * r)
    full = (1 - nugget) * k + (nugget + 1e-5) * np.eye(9)
    nll = 0.0
    for v, m in zip(values.numpy(), mask.numpy()):
        nll -= multivariate_normal(np.zeros(m.sum()), full[np.ix_(m, m)]).logpdf(v[m])
    assert got == pytest.approx(nll / mask.sum().item(), rel=1e-6)
    # all observed: the shared-factor path agrees with the masked one
    all_seen = torch.ones_like(mask)
    assert cov.gaussian_nll(values, coords).item() == pytest.approx(
        cov.gaussian_nll(values, coords, all_seen).item(), rel=1e-9)


def simulate_fields(range_m: float, n_fields: int, seed: int) -> torch.Tensor:
    """Zero-mean unit-variance Gaussian random fields, exponential covariance, on a 16 x 16, 100 m grid."""
    coords = grid_coords_m(16, 100.0).double()
    k = torch.exp(-torch.cdist(coords, coords) / range_m) + 1e-9 * torch.eye(256, dtype=torch.float64)
    noise = torch.randn(256, n_fields, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (torch.linalg.cholesky(k) @ noise).T.float()


@pytest.mark.parametrize("true_m,start_m", [(500, 150), (500, 2000), (1000, 150), (1000, 2000)])
def test_deep_variography_recovers_the_range(true_m, start_m):
    fields = simulate_fields(true_m, 256, seed=true_m)
    coords = grid_coords_m(16, 100.0)
    model = tiny_model(initial_range_m=start_m)
    params = [model.cov.log_range, model.cov.nugget_logit]
    opt = torch.optim.Adam(params, lr=0.1)
    for _ in range(200):
        loss = model.cov.gaussian_nll(fields, coords)
        opt.zero_grad()
        loss.backward()
        opt.step()
    recovered = model.variogram_range_m()
    print(f"true {true_m} m, start {start_m} m -> recovered {recovered:.0f} m")
    assert abs(recovered - true_m) < 0.25 * true_m


def test_param_groups_keep_kernel_scalars_out_of_weight_decay():
    model = tiny_model()
    decay, no_decay = model.param_groups(0.01)
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert any(p is model.cov.log_range for p in no_decay["params"])
    assert any(p is model.blocks[0].qkv.weight for p in decay["params"])


def test_pinball_loss_scores_the_median_against_its_own_target():
    torch.manual_seed(0)
    quantiles = (0.05, 0.5, 0.95)
    pred = torch.randn(2, 3, 4, 8, 8).sort(1).values.requires_grad_()
    observed, mask = torch.randn(2, 4, 8, 8), torch.rand(2, 4, 8, 8) > 0.2
    plain = pinball_loss(pred, observed, mask, quantiles)
    assert torch.isclose(plain, pinball_loss(pred, observed, mask, quantiles, observed, mask))
    truth = observed + 0.5 * torch.randn_like(observed)
    loss = pinball_loss(pred, observed, mask, quantiles, truth, torch.ones_like(mask))
    loss.backward()
    grad_truth = pred.grad.clone()
    pred.grad = None
    plain.backward()
    # the outer quantiles learn from the observations alone; the median from the truth
    assert torch.equal(grad_truth[:, [0, 2]], pred.grad[:, [0, 2]])
    assert not torch.allclose(grad_truth[:, 1], pred.grad[:, 1])
    assert torch.isclose(loss, (pinball_loss(pred, observed, mask, quantiles) * 3
                                - pinball_loss(pred[:, 1:2], observed, mask, (0.5,))
                                + pinball_loss(pred[:, 1:2], truth, torch.ones_like(mask), (0.5,))) / 3)
