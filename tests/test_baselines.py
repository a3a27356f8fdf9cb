"""Persistence and the time-function least-squares baseline."""
from __future__ import annotations

import numpy as np
import pytest

from engine.baselines import TimeFunction, persistence, persistence_forecast, timefn_fit
from engine.errors import Cancelled

NAN = np.nan


def test_persistence_last_valid_value_skips_gaps_and_nan():
    obs = np.array([[1.0, 2.0, 3.0, 4.0],
                    [1.0, 2.0, NAN, 9.0],
                    [5.0, 6.0, 7.0, 8.0],
                    [NAN, NAN, NAN, NAN]], dtype=np.float32)
    valid = np.ones_like(obs, dtype=bool)
    valid[2, 3] = False  # masked even though the value is finite
    level = persistence(obs, valid)
    np.testing.assert_array_equal(level[:3], [4.0, 9.0, 7.0])
    assert np.isnan(level[3])


def test_persistence_mean_of_last_valid_values():
    obs = np.array([[1.0, 2.0, 3.0, 4.0],
                    [1.0, 2.0, NAN, 9.0],
                    [NAN, NAN, NAN, 6.0]], dtype=np.float32)
    level = persistence(obs, np.isfinite(obs), n_last=2)
    np.testing.assert_allclose(level, [3.5, 5.5, 6.0])  # a row with fewer valid values uses those


def test_persistence_forecast_repeats_level():
    forecast = persistence_forecast(np.array([1.5, NAN]), 3)
    assert forecast.shape == (2, 3)
    np.testing.assert_array_equal(forecast[0], [1.5, 1.5, 1.5])
    assert np.isnan(forecast[1]).all()


def test_persistence_rejects_bad_arguments():
    with pytest.raises(ValueError):
        persistence(np.zeros((2, 3)), np.ones((2, 3), bool), n_last=0)
    with pytest.raises(ValueError):
        persistence(np.zeros((2, 3)), np.ones((3, 2), bool))


def irregular_dates(rng, years=5.0):
    """6-day acquisitions with random missed passes, so the sampling is irregular."""
    dates = np.datetime64("2018-01-03") + np.arange(0, int(years * 365.25), 6).astype("timedelta64[D]")
    return dates[rng.random(dates.size) > 0.3]


def years_since(dates, reference):
    return (dates - reference).astype(np.float64) / 365.25


def test_timefn_recovers_coefficients_within_standard_errors():
    rng = np.random.default_rng(1)
    dates = irregular_dates(rng)
    t = years_since(dates, dates[0])
    n, sigma = 40, 2.0
    offset = rng.uniform(-5, 5, n)
    velocity = rng.uniform(-20, 5, n)
    acceleration = rng.uniform(-3, 3, n)
    annual_amp, annual_phase = rng.uniform(1, 6, n), rng.uniform(-np.pi, np.pi, n)
    semi_amp, semi_phase = rng.uniform(0.5, 3, n), rng.uniform(-np.pi, np.pi, n)
    clean = (offset[:, None] + velocity[:, None] * t + 0.5 * acceleration[:, None] * t ** 2
             + annual_amp[:, None] * np.sin(2 * np.pi * t + annual_phase[:, None])
             + semi_amp[:, None] * np.sin(4 * np.pi * t + semi_phase[:, None]))
    obs = (clean + rng.normal(0, sigma, clean.shape)).astype(np.float32)
    valid = rng.random(obs.shape) > 0.2
    obs[~valid] = NAN

    fit = timefn_fit(dates, obs, valid, acceleration=True)

    # A sin(wt + p) = A cos(p) sin(wt) + A sin(p) cos(wt)
    truth = np.stack([offset, velocity, acceleration,
                      annual_amp * np.cos(annual_phase), annual_amp * np.sin(annual_phase),
                      semi_amp * np.cos(semi_phase), semi_amp * np.sin(semi_phase)], axis=1)
    design = np.stack([np.ones_like(t), t, 0.5 * t ** 2, np.sin(2 * np.pi * t), np.cos(2 * np.pi * t),
                       np.sin(4 * np.pi * t), np.cos(4 * np.pi * t)], axis=1)
    standard_error = np.stack([sigma * np.sqrt(np.diag(np.linalg.inv(design[v].T @ design[v])))
                               for v in valid])
    z = (fit.coefficients - truth) / standard_error
    assert fit.function.names == ["offset", "velocity", "acceleration", "annual_sin", "annual_cos",
                                  "semiannual_sin", "semiannual_cos"]
    assert (fit.n_terms == 7).all()
    assert np.abs(z).max() < 4.5
    assert 0.8 < z.std() < 1.2  # errors are as large as the noise implies, no larger
    np.testing.assert_allclose(fit.residual_std_mm, sigma, rtol=0.2)
    assert np.median(np.abs(fit.residual_std_mm / sigma - 1)) < 0.06
    np.testing.assert_array_equal(fit.n_valid, valid.sum(axis=1))

    amplitude = np.hypot(fit.coefficient("annual_sin"), fit.coefficient("annual_cos"))
    assert np.all(np.abs(amplitude - annual_amp) < 4.5 * standard_error[:, 3:5].max(axis=1))
    phase_error = np.angle(np.exp(1j * (np.arctan2(fit.coefficient("annual_cos"),
                                                   fit.coefficient("annual_sin")) - annual_phase)))
    assert np.all(np.abs(phase_error) < 4.5 * standard_error[:, 3:5].max(axis=1) / annual_amp)


def test_timefn_predict_extrapolates_the_fitted_function():
    dates = np.datetime64("2019-01-01") + np.arange(0, 1500, 6).astype("timedelta64[D]")
    t = years_since(dates, dates[0])
    obs = (3.0 - 8.0 * t + 2.0 * np.cos(2 * np.pi * t))[None, :]
    fit = timefn_fit(dates, obs, np.ones_like(obs, bool), semiannual=False)
    future = dates[-1] + np.arange(6, 370, 6).astype("timedelta64[D]")
    tf = years_since(future, dates[0])
    expected = 3.0 - 8.0 * tf + 2.0 * np.cos(2 * np.pi * tf)
    prediction = fit.predict(future)
    assert prediction.shape == (1, future.size) and prediction.dtype == np.float32
    np.testing.assert_allclose(prediction[0], expected, atol=1e-3)


def test_timefn_recovers_a_step():
    dates = np.datetime64("2019-01-01") + np.arange(0, 1200, 6).astype("timedelta64[D]")
    t = years_since(dates, dates[0])
    step = np.datetime64("2020-06-15")
    obs = (-5.0 * t + np.where(dates >= step, -12.0, 0.0))[None, :]
    fit = timefn_fit(dates, obs, np.ones_like(obs, bool), annual=False, semiannual=False, steps=[step])
    assert fit.function.names == ["offset", "velocity", "step_2020-06-15"]
    # atol, not exact: the small ridge biases coefficients by ~1e-6 mm
    np.testing.assert_allclose(fit.coefficient("step_2020-06-15"), [-12.0], atol=1e-4)
    np.testing.assert_allclose(fit.coefficient("velocity"), [-5.0], atol=1e-4)


def test_timefn_falls_back_on_rows_with_few_valid_epochs():
    dates = np.datetime64("2018-01-01") + np.arange(0, 1500, 6).astype("timedelta64[D]")
    t = years_since(dates, dates[0])
    line = 2.0 - 10.0 * t
    obs = np.tile(line, (5, 1))
    valid = np.zeros(obs.shape, bool)
    valid[0] = True
    valid[1, [10, 20, 30, 40]] = True   # 4 epochs over 180 days: enough for a velocity only
    valid[2, [50, 51]] = True           # 2 epochs 6 days apart: persistence
    valid[3, 70] = True                 # a single epoch: persistence
    # row 4: nothing valid
    fit = timefn_fit(dates, obs, valid, acceleration=True)
    np.testing.assert_array_equal(fit.n_terms, [7, 2, 1, 1, 0])
    np.testing.assert_array_equal(fit.n_valid, [dates.size, 4, 2, 1, 0])

    future = dates[-1] + np.array([6, 60, 365]).astype("timedelta64[D]")
    prediction = fit.predict(future)
    expected_line = 2.0 - 10.0 * years_since(future, dates[0])
    np.testing.assert_allclose(prediction[0], expected_line, atol=1e-3)
    np.testing.assert_allclose(prediction[1], expected_line, atol=1e-3)
    np.testing.assert_allclose(prediction[2], line[51], atol=1e-5)
    np.testing.assert_allclose(prediction[3], line[70], atol=1e-5)
    assert np.isnan(prediction[4]).all()
    assert fit.coefficients[1, 2:].tolist() == [0.0] * 5  # terms a row did not fit are zero


def test_timefn_short_span_drops_seasonal_terms():
    dates = np.datetime64("2021-01-01") + np.arange(0, 200, 6).astype("timedelta64[D]")
    obs = np.linspace(0.0, -5.0, dates.size)[None, :]
    fit = timefn_fit(dates, obs, np.ones_like(obs, bool))
    assert fit.n_terms.tolist() == [2]  # 34 epochs but under a year: no annual term
    full = timefn_fit(dates, obs, np.ones_like(obs, bool), annual=False, semiannual=False)
    assert full.n_terms.tolist() == [2]


def test_timefn_ill_conditioned_design_stays_finite():
    dates = np.datetime64("2019-01-01") + np.arange(0, 800, 6).astype("timedelta64[D]")
    t = years_since(dates, dates[0])
    obs = (1.0 - 4.0 * t)[None, :]
    # A step before the first epoch duplicates the offset column exactly.
    fit = timefn_fit(dates, obs, np.ones_like(obs, bool), annual=False, semiannual=False,
                     steps=["2010-01-01"])
    assert np.isfinite(fit.coefficients).all()
    np.testing.assert_allclose(fit.predict(dates)[0], obs[0], atol=1e-4)


def test_timefn_chunking_gives_the_same_fit():
    rng = np.random.default_rng(3)
    dates = irregular_dates(rng, years=3)
    obs = rng.normal(0, 3, (50, dates.size)).cumsum(axis=1)
    valid = rng.random(obs.shape) > 0.5
    valid[:5, 3:] = False  # some persistence rows inside the chunks
    one = timefn_fit(dates, obs, valid)
    many = timefn_fit(dates, obs, valid, chunk_rows=7)
    np.testing.assert_array_equal(one.n_terms, many.n_terms)
    np.testing.assert_allclose(one.coefficients, many.coefficients, rtol=1e-10, atol=1e-10)


class CancelAfter:
    def __init__(self, calls):
        self.calls = calls
        self.fractions = []

    def progress(self, fraction, message):
        self.fractions.append(fraction)

    def should_cancel(self):
        self.calls -= 1
        return self.calls < 0


def test_timefn_reports_progress_and_cancels():
    dates = np.datetime64("2019-01-01") + np.arange(0, 400, 6).astype("timedelta64[D]")
    obs = np.zeros((10, dates.size))
    valid = np.ones_like(obs, bool)
    progress = CancelAfter(calls=100)
    timefn_fit(dates, obs, valid, chunk_rows=4, progress=progress)
    assert progress.fractions == [0.4, 0.8, 1.0]
    with pytest.raises(Cancelled):
        timefn_fit(dates, obs, valid, chunk_rows=4, progress=CancelAfter(calls=1))


def test_time_function_design_columns():
    dates = np.array(["2020-01-01", "2020-07-01", "2021-01-01"], dtype="datetime64[D]")
    design = TimeFunction(annual=False, semiannual=False, steps=(np.datetime64("2020-07-01"),)).design(
        dates, dates[0])
    np.testing.assert_allclose(design[:, 1], [0.0, 182 / 365.25, 366 / 365.25])
    np.testing.assert_array_equal(design[:, 2], [0.0, 1.0, 1.0])  # on the step date counts as after


def test_window_baselines_fit_their_own_spans():
    """K0 sees the last two years, K1 the last year's line, K2 five years: on a steady trend with
    seasons and noise the five-year fit lands nearest the truth, and each ignores what lies before
    its span."""
    from engine.windows import BASELINE_FITS, window_baselines

    rng = np.random.default_rng(4)
    n_cells, lb, horizon = 64, 305, 61
    t = (np.arange(lb + horizon) - lb) * 6 / 365.25
    truth = -6.0 * t + 4.0 * np.sin(2 * np.pi * t) + 1.5 * np.cos(4 * np.pi * t)
    hist = truth[None, :lb] + rng.normal(0, 3.0, (n_cells, lb))
    level = np.median(hist[:, -61:] - truth[None, lb - 61:lb], axis=1) + truth[lb - 1]
    cells = hist[:, :, None, None].astype(np.float32)
    level = level[:, None, None].astype(np.float32)
    out = window_baselines(cells, level, horizon, n_baselines=3)
    assert out.shape == (n_cells, 3, horizon, 1, 1)
    forecast = out[:, :, :, 0, 0] + level.reshape(-1, 1, 1)
    error = np.sqrt(np.mean((forecast - truth[None, None, lb:]) ** 2, axis=(0, 2)))
    assert error[2] < 0.8 * error[0] and error[2] < error[1]
    # what lies before a fit's span does not move it
    spoiled = hist.copy()
    spoiled[:, : lb - BASELINE_FITS[0][0]] += 50.0
    again = window_baselines(spoiled[:, :, None, None].astype(np.float32), level, horizon, n_baselines=3)
    assert np.allclose(again[:, :2], out[:, :2], atol=1e-3)
    assert not np.allclose(again[:, 2], out[:, 2], atol=1.0)
    with pytest.raises(ValueError):
        window_baselines(cells, level, horizon, n_baselines=len(BASELINE_FITS) + 1)
