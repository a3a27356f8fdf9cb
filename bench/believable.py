"""Forecasts a geologist would believe: trend reversals and outlier-led starts, counted and drawn.

    .venv/bin/python bench/believable.py --run OUT_OF_A_FORECAST --days 180 --out bench/out/believable

For every point of a forecast folder: its velocity over the whole history and that velocity's
standard error (straight-line fit). A trend is significant when |velocity| > 3 standard errors.
Counted: significant trends whose forecast change over `--days` has the opposite sign, and
forecasts that start from an outlying last epoch (the forecast's first step nearer the last value
than the recent level when the last value is > 4 robust sigmas off that level), apart for a lone
outlier and for a run (the last two acquisitions beyond the band around the level of the five
before them, on one side). Drawn: the 20
fastest-moving points and 20 random ones, with history, forecast and band.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from engine.baselines import last_finite_mask, origin_level  # noqa: E402
from engine.calibrate import last_finite, robust_sigma  # noqa: E402
from engine.definitions import ATTRIBUTION  # noqa: E402
from engine.results import ForecastRun  # noqa: E402

YEAR = 365.25


def line_fit(days: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of values [N, T] (NaN missing): velocity (mm/yr) and its standard error."""
    ok = np.isfinite(values)
    t = np.where(ok, days[None] / YEAR, 0.0)
    n = ok.sum(1)
    tm = t.sum(1) / np.maximum(n, 1)
    ym = np.where(ok, values, 0).sum(1) / np.maximum(n, 1)
    dt = np.where(ok, t - tm[:, None], 0)
    sxx = (dt**2).sum(1)
    velocity = (dt * np.where(ok, values - ym[:, None], 0)).sum(1) / np.maximum(sxx, 1e-12)
    resid = np.where(ok, values - ym[:, None] - velocity[:, None] * (t - tm[:, None]), 0)
    sigma2 = (resid**2).sum(1) / np.maximum(n - 2, 1)
    return velocity, np.sqrt(sigma2 / np.maximum(sxx, 1e-12))


def outlier_starts(obs: np.ndarray, first_step: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of obs [N, T] (NaN missing) and its forecast's first step [N]: whether the last value
    is an outlier (> 4 robust sigmas off the recent level), whether it ends a run of two acquisitions,
    and whether the forecast starts nearer it than the level."""
    level = origin_level(obs, axis=1)
    (previous, last), = last_finite(obs, 2)[0].T[None]
    band = 4 * robust_sigma(obs[:, -30:])  # 4 MADs of the last 30 values, at least 2 mm
    outlier = np.abs(last - level) > band
    # the acquisition before also stands beyond the band around the level of the five before the
    # two, on the same side: an excursion of two acquisitions, not one bad epoch
    before = origin_level(np.where(last_finite_mask(obs, 2), np.nan, obs), axis=1)
    run_ = outlier & (np.abs(previous - before) > band) & (np.abs(last - before) > band)
    run_ &= np.sign(previous - before) == np.sign(last - before)
    led = outlier & (np.abs(first_step - last) < np.abs(first_step - level))
    return outlier, run_, led


def reversals(velocity, stderr, level, change, seasonal, q05, q95, years: float):
    """Per point ([N] each): whether its trend is significant (|velocity| > 3 standard errors); whether
    the forecast's change over `years` turns against it (> 0.5 mm the other way); whether its own
    trend-and-season fit's change (`seasonal`) turns too; whether the 5-95 % band [q05, q95] leaves out
    the trend carried on from the level (the forecast then says the trend stops or turns)."""
    significant = np.abs(velocity) > 3 * stderr
    reversed_ = significant & (np.sign(change) == -np.sign(velocity)) & (np.abs(change) > 0.5)
    # where the point's own fit reverses too, the season the data show outweighs the trend over
    # these days (a December origin, a June end)
    seasonal_reversal = reversed_ & (np.sign(seasonal) == -np.sign(velocity)) & (np.abs(seasonal) > 0.5)
    continued = level + velocity * years
    excluded = reversed_ & ((continued < q05) | (continued > q95))
    return significant, reversed_, seasonal_reversal, excluded


def judge(run: ForecastRun, days: int) -> dict:
    dates_obs, dates_fc = run.series_dates
    obs = run.series_values("obs_mm")
    q50 = run.series_values("q50_mm")
    velocity, stderr = line_fit((dates_obs - dates_obs[0]).astype(float), obs)
    level = origin_level(obs, axis=1)
    step = int(np.argmin(np.abs((dates_fc - dates_obs[-1]).astype(int) - days)))
    change = q50[:, step] - level
    seasonal = run.series_values("timefn_mm")[:, step] - level
    q05, q95 = (run.series_values(key)[:, step] for key in ("q05_mm", "q95_mm"))
    years = (dates_fc[step] - dates_obs[-1]).astype(float) / YEAR
    significant, reversed_, seasonal_reversal, excluded = reversals(
        velocity, stderr, level, change, seasonal, q05, q95, years)
    against = reversed_ & ~seasonal_reversal
    outlier, run_, led = outlier_starts(obs, q50[:, 0])
    return {"points": int(len(obs)), "significant_trends": int(significant.sum()),
            "reversed_at_days": int(reversed_.sum()), "days": days,
            "reversed_as_the_points_own_season_does": int(seasonal_reversal.sum()),
            "reversed_against_trend_and_season": int(against.sum()),
            "reversed_against_trend_and_season_by_over_1_mm": int((against & (np.abs(change) > 1)).sum()),
            "reversed_against_trend_and_season_by_over_2_mm": int((against & (np.abs(change) > 2)).sum()),
            "reversed_with_the_band_leaving_out_the_trend_carried_on": int(excluded.sum()),
            "reversed_with_speed_over_3_mm_yr": int((reversed_ & (np.abs(velocity) > 3)).sum()),
            "outlying_last_epochs": int(outlier.sum()), "forecasts_starting_at_the_outlier": int(led.sum()),
            "outlying_alone": int((outlier & ~run_).sum()),
            "forecasts_starting_at_a_lone_outlier": int((led & ~run_).sum()),
            "outlying_in_a_run_of_two_acquisitions": int(run_.sum()),
            "forecasts_starting_at_a_run": int((led & run_).sum()),
            "velocity": velocity, "excluded": excluded, "change": change}


def draw(run: ForecastRun, velocity: np.ndarray, picks, title: str, path: Path) -> None:
    """The series of the points at `picks` (at most 40), with history, forecast and band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from engine.outputs import plot_series

    picks = list(picks)[:40]
    n_rows = max(1, -(-len(picks) // 5))
    fig, axes = plt.subplots(n_rows, 5, figsize=(20, 2.75 * n_rows), sharex=True, squeeze=False)
    for ax in axes.ravel()[len(picks):]:
        ax.set_visible(False)
    for ax, index in zip(axes.ravel(), picks):
        plot_series(ax, run.series(int(index)), legend=False)
        ax.set_title(f"{run.pids[index]} ({velocity[index]:+.1f} mm/yr)", fontsize=8)
    fig.suptitle(title)
    fig.text(0.99, 0.002, ATTRIBUTION, ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def fastest_and_random(velocity: np.ndarray, seed: int = 0) -> list:
    """The 20 fastest-moving points, then 20 others at random."""
    fastest = np.argsort(-np.abs(np.nan_to_num(velocity)))[:20]
    rest = np.setdiff1d(np.arange(len(velocity)), fastest)
    others = np.random.default_rng(seed).choice(rest, size=min(20, len(rest)), replace=False)
    return list(fastest) + list(others)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a forecast's output folder")
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--out", default="bench/out/believable")
    args = parser.parse_args(argv)
    run = ForecastRun.open(args.run, kind="forecast")
    result = judge(run, args.days)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    velocity, excluded, change = (result.pop(key) for key in ("velocity", "excluded", "change"))
    draw(run, velocity, fastest_and_random(velocity),
         "20 fastest-moving points (top four rows) and 20 random points", out / "series.png")
    turned = np.flatnonzero(excluded)
    if len(turned):
        draw(run, velocity, turned[np.argsort(-np.abs(change[turned]))],
             f"Significant trends whose {args.days}-day band leaves out the trend carried on, "
             "largest change first",
             out / "reversals.png")
    (out / "believable.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
