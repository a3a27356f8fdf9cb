"""The engine end to end on the small demo region: files, determinism, no leakage, calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from engine.errors import Cancelled
from engine.calibrate import (DEPARTURES, Calibration, PointModel, calibrate_points, calibration_origins,
                              exceedance_probability, fit_calibration, fit_shares, interval_scale,
                              widen, widen_in_quadrature)
from engine.params import RunConfig
from engine.prepare import prepare
from engine.run import forecast_scene, run_backtest, run_forecast

METRIC_KEYS = {
    "schema_version",
    "horizons_days",
    "models",
    "mmstt_coverage90",
    "mmstt_crps_mm",
    "mmstt_coverage90_by_horizon",
    "variogram_range_m",
    "n_points",
    "n_epochs_train",
    "seconds_train",
    "seconds_forecast",
    "device",
}


def demo_config(demo_data_dir, out, **overrides) -> RunConfig:
    d = demo_data_dir
    options = dict(
        points=str(d / "EGMS_L2b_demo_2020_2024.csv"),
        out_dir=str(out),
        dem=str(d / "dem.tif"),
        geology=str(d / "geology.gpkg"),
        geology_field="unit",
        soil=str(d / "soil.gpkg"),
        soil_field="soil",
        horizon_days=90,
        epochs=1,
        device="cpu",
    )
    options.update(overrides)
    return RunConfig(**options)


@pytest.fixture(scope="module")
def forecast_dir(demo_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("forecast")
    run_forecast(demo_config(demo_data_dir, out), log=lambda m: None)
    return out


def test_forecast_writes_every_file_in_the_documented_layout(forecast_dir):
    summary = json.loads((forecast_dir / "summary.json").read_text())
    n_dates = len(summary["forecast_dates"])
    assert n_dates == 15  # 90 days in 6-day steps
    assert summary["forecast_dates"][0] > summary["observed_to"]
    for name in ("forecast", "forecast_q05", "forecast_q95", "interval90", "exceedance"):
        with rasterio.open(forecast_dir / f"{name}.tif") as src:
            assert src.count == n_dates
            assert list(src.descriptions) == summary["forecast_dates"]
            assert src.nodata == -9999
            assert src.crs.to_epsg() == 3035
            data = src.read(masked=True)
            assert data.count() > 0
            if name == "exceedance":
                assert 0 <= data.min() and data.max() <= 1
    with (
        rasterio.open(forecast_dir / "forecast_q05.tif") as lo,
        rasterio.open(forecast_dir / "forecast_q95.tif") as hi,
    ):
        a, b = lo.read(masked=True), hi.read(masked=True)
        assert (a <= b).all()
    assert summary["variogram_range_m"] > 0
    assert summary["attribution"] == "Contains modified Copernicus EGMS data"


def test_forecast_series_are_loadable_without_pickle(forecast_dir):
    from engine.results import ForecastRun

    run = ForecastRun.open(forecast_dir)  # series.npz's members load with allow_pickle=False
    series = {key: run.series_values(key) for key in ("q05_mm", "q50_mm", "q95_mm", "obs_mm")}
    n = len(run.pids)
    assert series["q50_mm"].shape == (n, 15)
    assert series["obs_mm"].shape[0] == n
    ok = np.isfinite(series["q50_mm"]).all(1)
    assert ok.mean() > 0.9
    assert (series["q05_mm"][ok] <= series["q50_mm"][ok]).all()
    assert (series["q50_mm"][ok] <= series["q95_mm"][ok]).all()


def test_same_seed_gives_the_same_forecast(demo_data_dir, forecast_dir, tmp_path):
    run_forecast(demo_config(demo_data_dir, tmp_path / "again"), log=lambda m: None)
    with (
        rasterio.open(forecast_dir / "forecast.tif") as a,
        rasterio.open(tmp_path / "again" / "forecast.tif") as b,
    ):
        assert np.array_equal(a.read(), b.read())


def test_held_out_epochs_never_reach_the_inputs(demo_data_dir, tmp_path):
    """Changing every value after the cut must not change the forecast made before it."""
    src = demo_data_dir / "EGMS_L2b_demo_2020_2024.csv"
    header, *rows = src.read_text().splitlines()
    columns = header.split(",")
    dates = [i for i, c in enumerate(columns) if c.isdigit()]
    cut = np.datetime64(f"{columns[dates[-20]][:4]}-{columns[dates[-20]][4:6]}-{columns[dates[-20]][6:]}")
    tampered = [header]
    for row in rows:
        fields = row.split(",")
        for i in dates[-19:]:
            if fields[i]:
                fields[i] = f"{float(fields[i]) + 500:.1f}"
        tampered.append(",".join(fields))
    other = tmp_path / "tampered.csv"
    other.write_text("\n".join(tampered) + "\n")

    def forecast(points):
        config = demo_config(
            demo_data_dir, tmp_path / "unused", points=str(points), dem=None, geology=None, soil=None
        )
        return forecast_scene(prepare(config, until=cut), config, 60, log=lambda m: None).points_mm

    assert np.array_equal(forecast(src), forecast(other), equal_nan=True)


def test_backtest_metrics_have_exactly_the_documented_keys(demo_data_dir, tmp_path):
    metrics = run_backtest(demo_config(demo_data_dir, tmp_path / "bt", holdout_days=365), log=lambda m: None)
    saved = json.loads((tmp_path / "bt" / "metrics.json").read_text())
    assert set(saved) == METRIC_KEYS == set(metrics)
    assert saved["horizons_days"] == [12, 90, 180, 365]
    assert set(saved["models"]) == {"mmstt", "persistence", "timefn"}
    for scores in saved["models"].values():
        assert set(scores) == {"rmse_mm", "mae_mm", "r2"}
        assert all(len(v) == 4 and all(np.isfinite(v)) for v in scores.values())
    assert 0 < saved["mmstt_coverage90"] <= 1
    assert (tmp_path / "bt" / "backtest.png").stat().st_size > 10_000


@pytest.mark.parametrize("stage", ["training", "writing results: time series", "writing results: points"])
def test_cancel_leaves_the_output_folder_untouched(demo_data_dir, tmp_path, stage):
    from results_fixtures import write_tiny_backtest

    out = tmp_path / "out"
    write_tiny_backtest(out)  # an earlier result: a cancelled run leaves it as it was
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    class CancelDuring:
        reached, fractions = False, []

        def progress(self, fraction, message):
            self.fractions.append(fraction)
            self.reached = stage in message

        def should_cancel(self):
            return self.reached

    progress = CancelDuring()
    with pytest.raises(Cancelled):
        run_forecast(demo_config(demo_data_dir, out), progress, log=lambda m: None)
    assert progress.reached
    assert progress.fractions == sorted(progress.fractions)  # the bar never goes back
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_interval_scale_restores_nominal_coverage():
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 2.0, (10, 4000))
    raw = np.stack([np.full_like(truth, -1.0), np.zeros_like(truth), np.full_like(truth, 1.0)])
    calibrated = widen(raw, interval_scale(raw, truth))
    fresh = rng.normal(0, 2.0, truth.shape)
    inside = (calibrated[0] <= fresh) & (fresh <= calibrated[2])
    assert abs(inside.mean() - 0.9) < 0.02


def test_fit_shares_recovers_the_share_of_a_departure():
    rng = np.random.default_rng(1)
    departures = rng.normal(0, 3, (2, 8, 500))
    truth = 0.7 * departures[0] + 0.2 * departures[1] + rng.normal(0, 0.5, (8, 500))
    raw = np.zeros((3, 8, 500))
    shares = fit_shares(raw, departures, truth)
    assert np.allclose(shares[0], 0.7, atol=0.05) and np.allclose(shares[1], 0.2, atol=0.05)


def test_fit_shares_respects_the_bounds_within_the_fit():
    # Two nearly equal departures: the unconstrained optimum is far outside [0, 1] (about +3 and
    # -2.5); clipping it would give shares (1, 0), twice the right size. The bounded optimum is
    # about (0.52, 0).
    rng = np.random.default_rng(2)
    base = rng.normal(0, 3, (8, 2000))
    noise = rng.normal(0, 0.3, (8, 2000))
    departures = np.stack([base + noise, base])
    truth = 0.5 * base + 3.0 * noise + rng.normal(0, 0.5, (8, 2000))
    shares = fit_shares(np.zeros((3, 8, 2000)), departures, truth)
    assert ((shares >= 0) & (shares <= 1)).all()
    assert np.allclose(shares[0], 0.52, atol=0.08) and (shares[1] < 0.05).all()  # the bounded optimum
    fitted = (shares[:, :, None] * departures).sum(0)
    clipped = departures[0]  # what clipping (3, -2.5) to (1, 0) gives
    assert np.sqrt(np.mean((truth - fitted) ** 2)) < np.sqrt(np.mean((truth - clipped) ** 2)) - 0.3


def test_fit_shares_on_qr_factors_finds_the_optimum_of_all_the_rows():
    # the reduced problem must give the shares a bounded fit of every pooled row gives
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(5)
    D, H, N = 7, 12, 900
    departures = rng.normal(0, 2, (D, H, N))
    departures[1] = departures[0] + rng.normal(0, 0.2, (H, N))  # strongly correlated, as in practice
    truth = 0.6 * departures[0] + 1.5 * departures[2] - 0.4 * departures[3] + rng.normal(0, 1, (H, N))
    truth[rng.random((H, N)) < 0.2] = np.nan
    departures[4, 5, :40] = np.nan
    raw = np.zeros((3, H, N))
    shares = fit_shares(raw, departures, truth)
    for h in (0, 5, 11):
        sl = slice(max(h - 3, 0), h + 4)
        y, X = truth[sl].ravel(), departures[:, sl].reshape(D, -1).T
        ok = np.isfinite(y) & np.isfinite(X).all(1)
        direct = lsq_linear(X[ok], y[ok], bounds=(0.0, 1.0), method="bvls").x
        np.testing.assert_allclose(shares[:, h], direct, atol=2e-3)
    assert (shares[2] > 0.99).all() and (shares[3] < 0.01).all()  # the bounds hold within the fit


@pytest.mark.parametrize("on_cells", [False, True])
def test_calibration_discards_a_network_with_no_skill(demo_data_dir, tmp_path, on_cells):
    # cell forecasts of pure noise (sd 30 mm): the fit must lean on the pulls toward persistence
    # and the own fits instead, for the maps as for the points
    scene = prepare(demo_config(demo_data_dir, tmp_path, dem=None, geology=None, soil=None))
    T, h, w = scene.cube.displacement_mm.shape
    cut, H = T - 15, 15
    rng = np.random.default_rng(0)
    noise = np.sort(rng.normal(0, 30, (3, H, h, w)).astype(np.float32), axis=0)
    shares = calibrate_points(scene, cut, noise, H, on_cells=on_cells).shares
    pulls = shares[DEPARTURES.index("persistence"):]  # toward persistence, own time function, own line
    assert np.allclose(pulls.sum(0), 1.0, atol=0.1)  # the network's increment is cancelled
    dates = scene.regular.dates[cut:]
    model = (PointModel.cells_at if on_cells else PointModel.at)(scene, cut, dates)
    fixed = model.quantiles(noise, shares)[1]
    raw = model.quantiles(noise)[1]
    truth = (
        scene.cube.displacement_mm[cut:, model.rows, model.cols]
        if on_cells
        else scene.regular.displacement_mm[:, cut:].T
    )
    ok = np.isfinite(truth) & np.isfinite(raw)
    assert np.sqrt(np.mean((fixed - truth)[ok] ** 2)) < 0.3 * np.sqrt(np.mean((raw - truth)[ok] ** 2))


def band_cases(rng, error_sd, scatter, H=12):
    """One calibration case: a cell band of +-Z90 x 1 mm around a zero median, for points whose
    errors have sd error_sd [N] and whose scatter is `scatter` [N]."""
    N = len(scatter)
    raw = np.stack([np.full((H, N), -1.6448536), np.zeros((H, N)), np.full((H, N), 1.6448536)])
    truth = rng.normal(0, 1, (H, N)) * error_sd[None]
    return raw, np.zeros((6, H, N)), truth, scatter


def test_the_band_widens_with_a_points_own_scatter_where_the_errors_follow_it():
    # half the points are quiet, half noisy (scatter 0.5 and 3 mm), and their errors add that noise
    # to the cell's 1 mm: one band for all over-covers the quiet and under-covers the noisy
    rng = np.random.default_rng(7)
    scatter = np.repeat([0.5, 3.0], 2000)
    error_sd = np.sqrt(1.0 + scatter ** 2)
    calibration = fit_calibration([band_cases(rng, error_sd, scatter)], 12)
    assert calibration.spread >= 0.5
    raw, _, _, _ = band_cases(rng, error_sd, scatter)
    lo, _, hi = widen(widen_in_quadrature(raw, 1.6448536 * calibration.spread * scatter), calibration.factor)
    fresh = rng.normal(0, 1, lo.shape) * error_sd[None]
    inside = (lo <= fresh) & (fresh <= hi)
    quiet, noisy = inside[:, :2000].mean(), inside[:, 2000:].mean()
    assert 0.85 <= quiet <= 0.97 and 0.83 <= noisy <= 0.95, (quiet, noisy)
    one_band = widen(raw, interval_scale(raw, fresh))  # the band without the spread: far apart
    inside_one = (one_band[0] <= fresh) & (fresh <= one_band[2])
    assert inside_one[:, :2000].mean() > 0.99 and inside_one[:, 2000:].mean() < 0.85


def test_a_scatter_that_says_nothing_of_the_errors_gets_no_spread():
    rng = np.random.default_rng(8)
    scatter = rng.uniform(0.5, 3.0, 4000)
    calibration = fit_calibration([band_cases(rng, np.full(4000, 2.0), scatter)], 12)
    assert calibration.spread <= 0.5


def test_a_points_scatter_is_about_its_recent_line():
    # a steady fast mover is no noisier than a still point with the same noise; a noisy one is
    rng = np.random.default_rng(3)
    dates = np.datetime64("2020-01-03") + 6 * np.arange(200)
    years = (dates - dates[0]).astype(float) / 365.25
    own = rng.normal(0, 1.0, (3, len(dates)))
    own[1] += -40.0 * years
    own[2] = rng.normal(0, 4.0, len(dates))
    index = np.arange(3)
    model = PointModel.of_series(own, own.copy(), dates, dates[-1] + 6 * np.arange(1, 11), index, index,
                                 np.ones(3, bool))
    assert model.scatter[0] == pytest.approx(1.0, rel=0.3) and model.scatter[1] == pytest.approx(1.0, rel=0.3)
    assert model.scatter[2] == pytest.approx(4.0, rel=0.3)


def test_calibration_origins_spread_through_the_validation_period():
    assert calibration_origins(100, 161, 4) == [100, 115, 130, 145]
    assert calibration_origins(100, 102, 4) == [100, 101]  # never past the history's last epoch
    assert calibration_origins(100, 161, 1) == [100]


def test_calibration_pools_origins_and_each_step_learns_only_from_origins_that_reach_it():
    # origin A: the truth follows departure 0 at every step; origin B reaches only 2 steps, where
    # the truth ignores it. Steps B reaches get a share between; steps beyond, A's alone.
    rng = np.random.default_rng(4)
    H, N = 20, 400
    def case(share, reach):
        x = rng.normal(0, 3, (6, H, N))
        truth = share * x[0] + rng.normal(0, 0.1, (H, N))
        truth[reach:] = np.nan
        return np.zeros((3, H, N)), x, truth, np.ones(N)
    calibration = fit_calibration([case(1.0, H), case(0.0, 2)], H)
    shares = calibration.shares
    assert shares.shape == (6, H) and calibration.factor.shape == (H,)
    assert abs(shares[0, 15] - 1.0) < 0.05  # only A reaches step 15
    assert 0.4 < shares[0, 0] < 0.85  # A and B pooled (steps 0-3 of A, 0-1 of B: about 2/3)
    alone = fit_calibration([case(1.0, H)], H).shares
    assert abs(alone[0, 0] - 1.0) < 0.05


def test_one_origin_or_a_list_of_one_calibrate_alike(demo_data_dir, tmp_path):
    scene = prepare(demo_config(demo_data_dir, tmp_path, dem=None, geology=None, soil=None))
    T, h, w = scene.cube.displacement_mm.shape
    rng = np.random.default_rng(5)
    cells = np.sort(rng.normal(0, 2, (3, 10, h, w)).astype(np.float32), axis=0)
    one = calibrate_points(scene, T - 10, cells, 10)
    listed = calibrate_points(scene, [T - 10], [cells], 10)
    assert np.allclose(one.shares, listed.shares) and np.allclose(one.factor, listed.factor)
    assert one.spread == listed.spread
    both = calibrate_points(scene, [T - 10, T - 5], [cells, cells], 10)
    assert not np.allclose(one.shares, both.shares)  # the second origin's cases count


def test_the_map_is_the_same_whatever_the_chunk_size(demo_data_dir, tmp_path, monkeypatch):
    import engine.calibrate as calibrate

    scene = prepare(demo_config(demo_data_dir, tmp_path, dem=None, geology=None, soil=None))
    T, h, w = scene.cube.displacement_mm.shape
    H = 5
    rng = np.random.default_rng(1)
    cells = np.sort(rng.normal(0, 5, (3, H, h, w)).astype(np.float32), axis=0)
    calibration = Calibration(rng.uniform(0, 1, (len(DEPARTURES), H)), np.full(H, 1.3), spread=1.0)
    dates = scene.regular.dates[-1] + np.arange(1, H + 1) * np.timedelta64(6, "D")
    whole = calibrate.calibrated_map(scene, T, dates, cells, calibration)
    monkeypatch.setattr(calibrate, "MAP_CHUNK_CELLS", 37)
    chunked = calibrate.calibrated_map(scene, T, dates, cells, calibration)
    assert np.isfinite(whole).sum() > 0.5 * np.isfinite(scene.cube.displacement_mm).any(0).sum() * 3 * H
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-4)


def test_exceedance_matches_the_quantiles():
    level = np.zeros(3)
    q = np.stack([np.array([-20.0, -10, 0]), np.array([-10.0, 0, 5]), np.array([0.0, 10, 10])])
    p = exceedance_probability(q, level, -10.0)
    assert p[0] == pytest.approx(0.5, abs=1e-6)  # threshold at the median
    assert p[1] == pytest.approx(0.05, abs=1e-3)  # threshold at q05
    assert p[2] < 0.01
    assert exceedance_probability(q, level, 10.0)[2] == pytest.approx(0.05, abs=1e-3)  # uplift at q95


def test_a_model_trained_on_one_area_fine_tunes_on_another(forecast_dir, tmp_path):
    """Inductive and few-shot: the checkpoint of one area starts training on a different, smaller one."""
    from engine.checkpoint import load_checkpoint
    from engine.demo import make_demo

    make_demo(tmp_path / "other", seed=7, size_km=3.0)
    checkpoint = forecast_dir / "model.safetensors"
    config = RunConfig(
        points=str(tmp_path / "other" / "EGMS_L2b_demo_2020_2024.csv"),
        out_dir=str(tmp_path / "out"),
        horizon_days=60,
        epochs=1,
        device="cpu",
        init_from=str(checkpoint),
    )
    summary = run_forecast(config, log=lambda m: None)
    assert summary["inputs"]["init_from"] == str(checkpoint)
    assert (
        summary["grid"]["width"] != json.loads((forecast_dir / "summary.json").read_text())["grid"]["width"]
    )
    tuned, _ = load_checkpoint(tmp_path / "out" / "model.safetensors")
    start, _ = load_checkpoint(checkpoint)
    changed = [k for k, v in tuned.state_dict().items() if not np.allclose(v, start.state_dict()[k])]
    assert changed, "fine-tuning left every weight as it was"


def test_an_outlying_last_epoch_does_not_drag_the_point_but_a_steady_trend_is_kept():
    """Three points subsiding at 6 mm/yr with 1 mm noise: the second's last epoch is 26 mm off
    (an unwrapping error), the third moves fast and steadily. Only the outlier is clipped."""
    rng = np.random.default_rng(0)
    dates = np.datetime64("2020-01-03") + 6 * np.arange(300)
    years = (dates - dates[0]).astype(float) / 365.25
    own = -6.0 * years[None] + rng.normal(0, 1.0, (3, len(dates)))
    own[1, -1] += 26.0
    own[2] = -40.0 * years + rng.normal(0, 1.0, len(dates))  # fast, steady: its last value is no outlier
    dates_fc = dates[-1] + 6 * np.arange(1, 31)
    index = np.arange(3)
    model = PointModel.of_series(own, own.copy(), dates, dates_fc, index, index, np.ones(3, bool))
    last_departure = model.departures[2, 0]  # the last value less the level
    assert abs(last_departure[0]) < 4.0
    # clipped to 4 sigmas (4 mm) above its recent line: unclipped it would stand 21 mm above the level
    unclipped = own[1, -1] - own[1, -5:].mean()
    assert unclipped > 20.0 and last_departure[1] < 4.0
    # the fast mover's last value sits on its line, two 6-day steps below the 5-epoch mean: kept
    expected = own[2, -1] - own[2, -5:].mean()
    assert last_departure[2] == pytest.approx(expected, abs=1e-4)
    assert not model.departures[3].any(), "a lone outlier or a steady trend is no excursion"


def test_a_run_of_epochs_beyond_the_band_is_an_excursion_that_fades():
    """The last three epochs of a point stand 15 mm above its line (a real excursion, not one bad
    acquisition): what the clip takes off the last one is offered as the excursion departure, fading."""
    rng = np.random.default_rng(1)
    dates = np.datetime64("2020-01-03") + 6 * np.arange(300)
    years = (dates - dates[0]).astype(float) / 365.25
    own = -6.0 * years[None] + rng.normal(0, 1.0, (2, len(dates)))
    own[0, -3:] += 15.0
    # the same jump in the last acquisition alone, 12 days after the one before: the 6-day epoch
    # between them is interpolated and stands halfway, beyond the band too
    own[1, -1] += 15.0
    own[1, -2] += 7.5
    dates_fc = dates[-1] + 6 * np.arange(1, 31)
    index = np.arange(2)
    model = PointModel.of_series(own, own.copy(), dates, dates_fc, index, index, np.ones(2, bool))
    excursion = model.departures[3]
    assert model.departures[2, 0, 0] < 5.0  # the last value itself is still clipped to the band
    assert excursion[0, 0] > 5.0, "a run of three epochs 15 mm off must be offered"
    assert np.all(np.diff(excursion[:, 0]) < 0) and excursion[-1, 0] < 0.01 * excursion[0, 0]
    assert not excursion[:, 1].any(), "one outlying acquisition stays an outlier"
    # the band holds both the run and the line while the excursion lasts, then narrows with it
    cells = np.stack([np.full((30, 2, 2), -1.0), np.zeros((30, 2, 2)), np.full((30, 2, 2), 1.0)])
    lo, _, hi = model.quantiles(cells)
    assert hi[0, 0] - lo[0, 0] > 2 * excursion[0, 0] > 10.0  # half-widths of at least the excursion
    assert hi[0, 1] - lo[0, 1] == pytest.approx(2.0)  # the lone outlier: the cell's band
    assert hi[-1, 0] - lo[-1, 0] == pytest.approx(2.0, abs=0.01)


def test_a_point_seen_for_a_few_months_follows_its_cell_not_its_own_line():
    """Two points of one cell subsiding at 6 mm/yr: the first seen for five years, the second only
    for its last four months, which happen to be a seasonal rise of 30 mm/yr. A year out, the
    young point's own line would stand 10 mm above the cell; it takes its cell's rate instead."""
    rng = np.random.default_rng(2)
    dates = np.datetime64("2020-01-03") + 6 * np.arange(300)
    years = (dates - dates[0]).astype(float) / 365.25
    own = -6.0 * years[None] + rng.normal(0, 0.5, (2, len(dates)))
    own[1, -20:] += 30.0 * (years[-20:] - years[-20])
    own[1, :-20] = np.nan
    cell_series = np.repeat((-6.0 * years)[None], 2, 0)
    dates_fc = dates[-1] + 6 * np.arange(1, 62)
    index = np.zeros(2, int)
    model = PointModel.of_series(own, cell_series, dates, dates_fc, index, index, np.ones(2, bool))
    assert model.young.tolist() == [False, True]
    cell_increment = -6.0 * (dates_fc - dates[-1]).astype(float) / 365.25
    cells = np.repeat(cell_increment[None, :, None, None], 3, 0)
    design = model.design(cells)
    own_rows = [DEPARTURES.index(name) for name in ("trend", "recent_rate", "own_timefn", "own_line")]
    assert not design[own_rows, :, 1].any()
    # its own line, which would have pulled it, runs well above its cell a year out
    assert model.line_own[-1, 1] - cell_increment[-1] > 10.0
    # with every own row at full share, the mature point follows its own line, the young one its cell
    shares = np.zeros((len(DEPARTURES), len(dates_fc)))
    shares[DEPARTURES.index("own_line")] = 1.0
    forecast = model.quantiles(cells, shares)[1, -1]
    assert forecast[1] - model.level[1] == pytest.approx(cell_increment[-1], abs=1.0)
    assert forecast[0] - model.level[0] == pytest.approx(-6.0, abs=1.5)
