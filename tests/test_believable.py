"""bench/believable.py tells a lone outlying acquisition from a run of two, and a forecast that
starts at it from one that starts at the level."""
from __future__ import annotations

import numpy as np

from bench.believable import outlier_starts, reversals


def test_outlier_starts_counts_lone_outliers_and_runs_apart():
    rng = np.random.default_rng(0)
    obs = rng.normal(0, 1.0, (4, 60))
    obs[0, -1] += 20.0  # a lone outlier
    obs[1, -1] += 20.0  # the same, and its forecast starts at it
    obs[2, -2:] += 20.0  # a run of two acquisitions
    obs[3, 40] = np.nan  # steady, with a gap
    level = np.nanmean(obs[:, -5:], axis=1)
    first_step = level.copy()
    first_step[1] = obs[1, -1] - 1.0
    first_step[2] = obs[2, -1]
    outlier, run_, led = outlier_starts(obs, first_step)
    assert outlier.tolist() == [True, True, True, False]
    assert run_.tolist() == [False, False, True, False]
    assert led.tolist() == [False, True, True, False]


def test_reversals_tell_the_season_and_the_band_apart():
    # four points subsiding at 6 mm/yr (standard error 0.5), forecast half a year ahead from level 0
    velocity, stderr, level = np.full(4, -6.0), np.full(4, 0.5), np.zeros(4)
    change = np.array([-3.0, 2.0, 2.0, 4.0])  # continues; rises; rises as its season does; rises, band narrow
    seasonal = np.array([-3.0, -1.0, 1.5, -2.0])
    q05 = np.array([-9.0, -6.0, -6.0, 2.0])
    q95 = np.array([3.0, 8.0, 8.0, 6.0])
    significant, reversed_, seasonal_reversal, excluded = reversals(
        velocity, stderr, level, change, seasonal, q05, q95, 0.5)
    assert significant.all()
    assert reversed_.tolist() == [False, True, True, True]
    assert seasonal_reversal.tolist() == [False, False, True, False]
    # only the last band leaves out -3 mm, the trend carried on
    assert excluded.tolist() == [False, False, False, True]
    # a trend within its noise is never counted
    assert not reversals(velocity, np.full(4, 5.0), level, change, seasonal, q05, q95, 0.5)[1].any()
