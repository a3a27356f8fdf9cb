"""bench/band.py cuts the points into thirds by noise and scores each third's band on its own."""
from __future__ import annotations

import numpy as np

from bench.band import noise_thirds, scores


def test_noise_thirds_cut_evenly_and_follow_the_noise():
    noise = np.random.default_rng(0).permutation(np.arange(30.0))
    thirds = noise_thirds(noise)
    assert np.bincount(thirds).tolist() == [10, 10, 10]
    low, mid, high = (noise[thirds == k] for k in range(3))
    assert low.max() < mid.min() and mid.max() < high.min()


def test_each_third_is_scored_on_its_own_points():
    # the band covers the first half of the points and misses the second half by 1 mm
    truth = np.zeros((3, 6))
    truth[:, 3:] = 3.0
    q = np.stack([np.full((3, 6), -2.0), np.zeros((3, 6)), np.full((3, 6), 2.0)])
    keep_quiet = np.arange(6) < 3
    quiet = scores(truth, q, (0.05, 0.5, 0.95), np.array([0, 2]), keep_quiet)
    noisy = scores(truth, q, (0.05, 0.5, 0.95), np.array([0, 2]), ~keep_quiet)
    assert quiet["coverage"] == [1.0, 1.0] and noisy["coverage"] == [0.0, 0.0]
    assert quiet["width_mm"] == [4.0, 4.0]
    assert quiet["interval_score_mm"] == 4.0 and noisy["interval_score_mm"] == 4.0 + 20.0
    assert noisy["crps_mm"] > quiet["crps_mm"]
