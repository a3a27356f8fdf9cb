"""bench/short_history.py: its ceilings read the maps and the neighbours they are said to read."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from bench.short_history import blanked_cells, inverse_distance, oracles


def test_inverse_distance_leans_on_the_nearest_cells_and_never_on_itself():
    yx = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    values = np.array([[0.0], [10.0], [100.0]])
    near = inverse_distance(yx, values, np.array([[0.0, 2.0]]), k=2)
    assert 0.0 < near[0, 0] < 10.0  # between its two nearest, nearer the nearer one
    assert near[0, 0] > 5.0
    itself = inverse_distance(yx, values, yx[:1], k=1)
    assert itself[0, 0] == 10.0  # its own value is left out


def test_the_ceilings_read_the_maps_where_the_motion_follows_the_geology():
    """Rates set by a scattered geology class: the maps' ceiling finds them at cells nobody saw
    for long, the neighbours' cannot; both layouts blank what they say."""
    rng = np.random.default_rng(0)
    H = W = 20
    geology = rng.integers(1, 4, (H, W)).astype(np.int16)
    years = np.arange(80) * 6 / 365.25
    rate = np.array([0.0, -12.0, 0.0, 8.0])[geology]  # mm/yr by class
    truth = years[:, None, None] * rate[None]
    priors = SimpleNamespace(elevation_m=rng.normal(0, 1, (H, W)), slope_deg=rng.normal(0, 1, (H, W)),
                             geology=geology, soil=np.zeros((H, W), np.int16))
    region = SimpleNamespace(truth_mm=truth, priors=priors)
    rows, cols = np.nonzero(np.ones((H, W), bool))
    at = blanked_cells((H, W), "scattered", rng)[rows, cols]
    assert 0.3 < at.mean() < 0.7
    district = blanked_cells((H, W), "district", rng)
    assert district[:, : W // 2].all() and not district[:, W // 2 :].any()
    anchor, steps = 40, 30
    level = np.repeat(truth[anchor - 1, rows[at], cols[at]][None], steps, 0)
    ceilings = oracles(region, anchor, rows, cols, at, level)
    wanted = truth[anchor : anchor + steps, rows[at], cols[at]]
    error = {name: np.sqrt(np.mean((forecast - wanted) ** 2)) for name, forecast in ceilings.items()}
    assert error["oracle_priors"] < 0.05 and error["oracle_both"] < 0.05
    assert error["oracle_neighbours"] > 1.0


def test_errors_by_distance_pool_the_regions_cells_into_their_bands():
    from bench.short_history import pooled_by_distance

    def entry(distance, error):
        errors = [[error] * len(distance)] * 2
        return {"distance_m": distance, "persistence": errors, "network_own": errors,
                "network_borrowed": [[e / 2 for e in errors[0]]] * 2}

    table = pooled_by_distance([entry([100.0, 200.0], 3.0), entry([2000.0], 4.0)])
    assert list(table) == ["0–250 m", "1000–3000 m"]  # empty bands are left out
    assert table["0–250 m"]["cells"] == 2 and table["1000–3000 m"]["cells"] == 1
    assert table["0–250 m"]["persistence"] == [3.0, 3.0]
    assert table["1000–3000 m"]["network_borrowed"] == [2.0, 2.0]
