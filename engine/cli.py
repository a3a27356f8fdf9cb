"""Command line: python -m engine demo-data | forecast | backtest."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

from .errors import Cancelled, InputError


class TerminalProgress:
    """A one-line progress bar on stderr; silent when stderr is not a terminal except for stage changes."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.tty = stream, stream.isatty()
        self.last_message, self.started = None, time.perf_counter()

    def progress(self, fraction: float, message: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        elapsed = time.perf_counter() - self.started
        if self.tty:
            bar = "#" * int(30 * fraction)
            self.stream.write(f"\r[{bar:<30}] {100 * fraction:5.1f}% {elapsed:6.1f}s  {message[:60]:<60}")
            if fraction >= 1.0:
                self.stream.write("\n")
            self.stream.flush()
        elif message.split(",")[0] != self.last_message:
            self.stream.write(f"{100 * fraction:5.1f}% {elapsed:6.1f}s  {message}\n")
            self.last_message = message.split(",")[0]

    def should_cancel(self) -> bool:
        return False


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--points", required=True, help="EGMS .zip/.csv, or any point layer with date fields")
    p.add_argument("--dem", help="elevation raster (any CRS and resolution)")
    p.add_argument("--geology", help="geology polygons")
    p.add_argument("--geology-field", help="class field of the geology polygons")
    p.add_argument("--soil", help="soil polygons")
    p.add_argument("--soil-field", help="class field of the soil polygons")
    p.add_argument("--aoi", help="area of interest: polygon file, or WKT text (EPSG:xxxx;POLYGON(...))")
    p.add_argument("--cell-size", type=float, default=100.0, help="grid cell size in metres (default 100)")
    p.add_argument("--horizon-days", type=int, default=365, help="days to forecast (default 365)")
    p.add_argument(
        "--threshold-mm",
        type=float,
        default=-10.0,
        help="exceedance threshold in mm since the last observation (default -10: subsidence)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the built-in budget)")
    p.add_argument("--no-priors", action="store_true", help="ignore the prior layers (ablation)")
    p.add_argument(
        "--init-from",
        help="model.safetensors of an earlier forecast: fine-tune it on this area "
        "(few-shot) instead of training from scratch",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--out", required=True, help="output folder")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m engine", description="GroundCast ground-motion forecasting"
    )
    root.add_argument("--debug", action="store_true", help="show the traceback on errors")
    sub = root.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo-data", help="write the synthetic demo region")
    demo.add_argument("--out", required=True)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--size-km", type=float, default=8.0)
    _run_options(sub.add_parser("forecast", help="train on the area's history and forecast"))
    backtest = sub.add_parser("backtest", help="hold out the last days and score against the baselines")
    _run_options(backtest)
    backtest.add_argument("--holdout-days", type=int, default=365)
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return root


def _config(args):
    from .pipeline import RunConfig

    return RunConfig(
        points=args.points,
        out_dir=args.out,
        dem=args.dem,
        geology=args.geology,
        geology_field=args.geology_field,
        soil=args.soil,
        soil_field=args.soil_field,
        aoi=args.aoi,
        cell_size_m=args.cell_size,
        horizon_days=args.horizon_days,
        threshold_mm=args.threshold_mm,
        seed=args.seed,
        device=args.device,
        epochs=args.epochs,
        holdout_days=getattr(args, "holdout_days", 365),
        use_priors=not args.no_priors,
        init_from=args.init_from,
    )


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    progress = TerminalProgress()
    try:
        if args.command == "demo-data":
            from .demo import make_demo

            written = make_demo(args.out, seed=args.seed, size_km=args.size_km, progress=progress)
            print(json.dumps({k: str(v) for k, v in written.items()}, indent=1))
        elif args.command == "forecast":
            from .pipeline import run_forecast

            summary = run_forecast(_config(args), progress, log=lambda m: print(m, file=sys.stderr))
            print(
                f"forecast written to {args.out} (learned correlation range "
                f"{summary['variogram_range_m']:.0f} m, device {summary['device']})"
            )
        else:
            from .pipeline import run_backtest

            metrics = run_backtest(_config(args), progress, log=lambda m: print(m, file=sys.stderr))
            print(skill_table(metrics))
        return 0
    except (InputError, Cancelled) as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written.", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line unless --debug
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(
            f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            "(run with --debug for details)",
            file=sys.stderr,
        )
        return 1


def skill_table(metrics: dict) -> str:
    """RMSE per horizon for every model, as the terminal and README show it."""
    horizons = metrics["horizons_days"]
    lines = ["model        " + "".join(f"{h:>9d} d" for h in horizons) + "   (RMSE mm at the points)"]
    for name, scores in metrics["models"].items():
        lines.append(f"{name:<13}" + "".join(f"{v:>11.2f}" for v in scores["rmse_mm"]))
    lines.append(
        f"MM-STT 90% coverage {metrics['mmstt_coverage90']:.3f}, CRPS {metrics['mmstt_crps_mm']:.2f} mm, "
        f"learned range {metrics['variogram_range_m']:.0f} m, {metrics['n_points']} points, "
        f"train {metrics['seconds_train']:.1f} s on {metrics['device']}"
    )
    return "\n".join(lines)
