"""Forecast scores on hand-computable cases and on known distributions."""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from engine.metrics import (coverage, crps_from_quantiles, interval_score, mae, nearest_epoch_index, pinball,
                            r2, rmse)

NAN = np.nan


def test_small_cases_by_hand():
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([2.0, 2.0, 1.0, 4.0])  # errors 1, 0, -2, 0
    assert rmse(truth, pred) == pytest.approx(math.sqrt(5 / 4))
    assert mae(truth, pred) == pytest.approx(3 / 4)
    assert r2(truth, pred) == pytest.approx(1 - 5 / 5)  # SST about the mean 2.5 is 5
    assert r2(truth, truth) == 1.0
    assert r2(truth, np.full(4, truth.mean())) == 0.0


def test_scores_use_only_finite_pairs():
    truth = np.array([1.0, NAN, 3.0, 5.0])
    pred = np.array([2.0, 7.0, NAN, 5.0])
    assert rmse(truth, pred) == pytest.approx(math.sqrt(0.5))
    assert mae(truth, pred) == pytest.approx(0.5)
    assert math.isnan(rmse([NAN], [1.0]))
    assert math.isnan(r2([2.0, 2.0], [1.0, 3.0]))  # constant truth: R² undefined


def test_rmse_is_at_least_mae():
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth, pred = rng.normal(size=(2, 30))
        assert rmse(truth, pred) >= mae(truth, pred)


def test_coverage_by_hand_and_of_exact_gaussian_quantiles():
    assert coverage([0.0, 1.0, 2.0, 5.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]) == 0.5
    assert coverage([0.0, NAN], [-1.0, -1.0], [1.0, 1.0]) == 1.0
    rng = np.random.default_rng(1)
    n = 20000
    truth = rng.normal(3.0, 2.0, n)
    dist = NormalDist(3.0, 2.0)
    got = coverage(truth, np.full(n, dist.inv_cdf(0.05)), np.full(n, dist.inv_cdf(0.95)))
    assert abs(got - 0.90) < 4 * math.sqrt(0.9 * 0.1 / n)


def test_pinball_by_hand():
    # truth above the quantile costs level × distance, below costs (1 - level) × distance
    assert pinball([3.0], [1.0], 0.9) == pytest.approx(0.9 * 2.0)
    assert pinball([1.0], [3.0], 0.9) == pytest.approx(0.1 * 2.0)
    assert pinball([1.0, 3.0], [3.0, 1.0], 0.5) == pytest.approx(1.0)


def test_crps_from_quantiles_matches_gaussian_crps_with_many_levels():
    levels = (np.arange(99) + 0.5) / 99
    dist = NormalDist(0.0, 1.0)
    quantiles = np.array([dist.inv_cdf(level) for level in levels])
    for y in (-1.5, 0.0, 0.7, 2.5):
        exact = y * (2 * dist.cdf(y) - 1) + 2 * dist.pdf(y) - 1 / math.sqrt(math.pi)
        approx = crps_from_quantiles(np.array([y]), levels, quantiles[:, None])
        assert approx == pytest.approx(exact, rel=0.02)


def test_crps_prefers_a_sharp_correct_forecast_and_penalises_a_wrong_one():
    rng = np.random.default_rng(2)
    truth = rng.normal(0.0, 1.0, 5000)
    levels = [0.05, 0.5, 0.95]
    z = NormalDist().inv_cdf(0.95)

    def gaussian(center, sd):
        return np.repeat([[center - z * sd], [center], [center + z * sd]], truth.size, axis=1)

    sharp = crps_from_quantiles(truth, levels, gaussian(0.0, 1.0))
    wide = crps_from_quantiles(truth, levels, gaussian(0.0, 4.0))
    biased = crps_from_quantiles(truth, levels, gaussian(2.0, 1.0))
    assert sharp < wide and sharp < biased


def test_crps_checks_shapes_and_levels():
    with pytest.raises(ValueError):
        crps_from_quantiles(np.zeros(3), [0.1, 0.9], np.zeros((3, 3)))
    with pytest.raises(ValueError):
        crps_from_quantiles(np.zeros(3), [0.0, 0.9], np.zeros((2, 3)))
    assert math.isnan(crps_from_quantiles(np.array([NAN]), [0.5], np.zeros((1, 1))))


def test_nearest_epoch_index():
    dates = np.array(["2020-01-01", "2020-01-07", "2020-01-13"], dtype="datetime64[D]")
    targets = np.array(["2019-12-01", "2020-01-02", "2020-01-04", "2020-01-06", "2020-01-13",
                        "2021-01-01"], dtype="datetime64[D]")
    # 2020-01-04 is 3 days from both neighbours: the earlier wins
    np.testing.assert_array_equal(nearest_epoch_index(dates, targets), [0, 0, 0, 1, 2, 2])
    np.testing.assert_array_equal(nearest_epoch_index(dates[:1], targets[:2]), [0, 0])


def test_interval_score_by_hand_and_it_prefers_the_right_width():
    # width 2, one truth 1 mm below: 2 + 20 x 1
    assert interval_score([0.0, -2.0], [-1.0, -1.0], [1.0, 1.0]) == pytest.approx((2 + 22) / 2)
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 1, 20000)
    z = NormalDist().inv_cdf(0.95)
    right = interval_score(truth, -z, z)
    assert right < interval_score(truth, -2 * z, 2 * z)  # covers, but twice as wide
    assert right < interval_score(truth, -z / 2, z / 2)  # narrow, and misses
    assert math.isnan(interval_score([np.nan], [0.0], [1.0]))
