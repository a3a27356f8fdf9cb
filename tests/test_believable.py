"""bench/believable.py tells a lone outlying acquisition from a run of two, and a forecast that
starts at it from one that starts at the level."""
from __future__ import annotations

import numpy as np

from bench.believable import outlier_starts


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
