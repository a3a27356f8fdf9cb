"""Command line: python -m engine demo-data | forecast | forecast-tiles | backtest | pretrain."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import traceback

from .errors import Cancelled, InputError
from .params import Parameter, RunConfig, parameter, parameters_for
from .progress import format_duration, with_time_left


class TerminalProgress:
    """A one-line progress bar on stderr; when stderr is not a terminal, one line per stage."""

    def __init__(self, stream=None):
        stream = sys.stderr if stream is None else stream  # today's stderr, not the one at import
        self.stream, self.tty = stream, stream.isatty()
        self.last_message, self.started = None, time.perf_counter()

    def progress(self, fraction: float, message: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        elapsed = format_duration(time.perf_counter() - self.started)
        if self.tty:
            bar = "#" * int(30 * fraction)
            self.stream.write(f"\r[{bar:<30}] {100 * fraction:5.1f}% {elapsed:>10}  {message[:80]:<80}")
            if fraction >= 1.0:
                self.stream.write("\n")
            self.stream.flush()
        elif message.split(",")[0] != self.last_message:
            self.stream.write(f"{100 * fraction:5.1f}% {elapsed:>10}  {message}\n")
            self.last_message = message.split(",")[0]

    def should_cancel(self) -> bool:
        return False


TYPES = {"int": int, "float": float}


def _number(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _range(p: Parameter) -> str:
    return f"{_number(p.minimum)} to {_number(p.maximum)}{' ' + p.unit if p.unit else ''}"


def _help(p: Parameter) -> str:
    unit = f" {p.unit}" if p.unit else ""
    notes = []
    if p.minimum is not None and p.maximum is not None:
        notes.append(_range(p))
    if p.kind == "field" and p.parent:
        notes.append(f"needs {parameter(p.parent).cli_flag}")
    if p.default is not None and p.kind != "bool":
        number = isinstance(p.default, (int, float))
        notes.append(f"default {_number(p.default)}{unit}" if number else f"default {p.default}")
    return p.help + (f" ({'; '.join(notes)})" if notes else "")


def add_run_options(p: argparse.ArgumentParser, command: str, skip=()) -> None:
    """The options of `command`, built from PARAMETERS: flag, type, choices, default, range."""
    for spec in parameters_for(command, "cli"):
        if spec.name in skip:
            continue
        kwargs = {"dest": spec.name, "help": _help(spec), "default": spec.default}
        if spec.kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = TYPES.get(spec.kind, str)
            if spec.name == "model":  # --model also takes a checkpoint file to fine-tune (--init-from)
                kwargs["metavar"] = "{" + ",".join(spec.choices) + ",PATH}"
            elif spec.choices:
                kwargs["choices"] = spec.choices
            else:
                kwargs["metavar"] = (spec.unit or spec.cli_flag[2:]).upper().replace("-", "_")
            kwargs["required"] = not spec.optional and spec.default is None
        p.add_argument(spec.cli_flag, **kwargs)


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
    add_run_options(sub.add_parser("forecast", help="train on the area's history and forecast"), "forecast")
    add_run_options(sub.add_parser("backtest", help="hold out the last days and score against the baselines"),
                    "backtest")
    tiles = sub.add_parser("forecast-tiles", help="forecast many points files on a Dask cluster, one result "
                                                  "folder per file and a VRT mosaic over them")
    tiles.add_argument("--points", nargs="+", required=True, metavar="FILE",
                       help="EGMS files (or point layers), one tile each")
    tiles.add_argument("--workers", type=int, default=None,
                       help="worker processes of the local cluster (default: one per core)")
    tiles.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="a running Dask scheduler, tcp://host:8786, instead of a local cluster")
    add_run_options(tiles, "forecast", skip=("points",))
    pretrain = sub.add_parser("pretrain", help="pretrain the base model on the synthetic corpus (resumable)")
    pretrain.add_argument("--out", required=True, help="folder for the state and base.safetensors")
    pretrain.add_argument("--regions", type=int, default=192, help="synthetic regions in the corpus")
    pretrain.add_argument("--steps", type=int, default=4000, help="optimisation steps")
    pretrain.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    pretrain.add_argument("--seed", type=int, default=0)
    pretrain.add_argument("--real", nargs="*", default=[], metavar="FILE",
                          help="EGMS files whose history (up to a year before their end) joins the corpus")
    pretrain.add_argument("--median-on-observations", action="store_true",
                          help="score the median against the noisy observations, not the synthetic truth")
    pretrain.add_argument("--young-tiles", type=float, default=0.0, metavar="SHARE",
                          help="share of tiles (0-1) where some cells keep only their last weeks or months "
                               "of history")
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return root


def run_config(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of a parsed forecast or backtest command line, checked against PARAMETERS.

    A value out of range is an InputError that names the flag, as the terminal's user typed it.
    """
    values = {}
    if args.model not in parameter("model").choices:  # a file: fine-tune it, as --init-from does
        args.init_from, args.model = args.init_from or args.model, "base"
    for spec in parameters_for(args.command, "cli"):
        value = getattr(args, spec.name)
        try:
            spec.check(value)
        except InputError:
            if spec.minimum is None or spec.maximum is None:
                raise
            raise InputError(f"{spec.cli_flag} {_number(value)}: choose {_range(spec)}.") from None
        values[spec.name] = value
    config = RunConfig.from_values(values)
    config.check(args.command)
    return config


def _log(message) -> None:
    print(message, file=sys.stderr)


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM cancels like Ctrl-C: the staged result is removed


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    progress = TerminalProgress()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "demo-data":
            from .demo import make_demo

            written = make_demo(args.out, seed=args.seed, size_km=args.size_km, progress=progress)
            print(json.dumps({k: str(v) for k, v in written.items()}, indent=1))
        elif args.command == "pretrain":
            from .pretrain import PretrainOptions, pretrain

            if args.regions < 1 or args.steps < 1:
                raise InputError("--regions and --steps must be at least 1.")
            if not 0 <= args.young_tiles <= 1:
                raise InputError(f"--young-tiles {args.young_tiles:g}: choose a share from 0 to 1.")
            options = PretrainOptions(regions=args.regions, steps=args.steps, device=args.device,
                                      seed=args.seed, real=list(args.real),
                                      median_on_truth=not args.median_on_observations,
                                      young_tiles=args.young_tiles)
            summary = pretrain(args.out, options, progress=progress, log=_log)
            print(f"base model written to {args.out} ({summary['steps']} steps, {summary['seconds']:.0f} s)")
        elif args.command == "forecast-tiles":
            from .tiles import run_tiles

            files = list(args.points)
            args.command, args.points = "forecast", files[0]  # the options are checked as a forecast's
            manifest = run_tiles(run_config(args), files, workers=args.workers, scheduler=args.scheduler,
                                 progress=with_time_left(progress), log=_log)
            mosaics = [name for name in manifest["files"] if name.endswith(".vrt")]
            print(f"{len(manifest['tiles'])} tiles forecast into {args.out_dir}"
                  + (f"; mosaics {', '.join(mosaics)}" if mosaics else ""))
        elif args.command == "forecast":
            from .run import run_forecast

            summary = run_forecast(run_config(args), with_time_left(progress), log=_log)
            print(
                f"forecast written to {args.out_dir} (learned correlation range "
                f"{summary['variogram_range_m']:.0f} m, device {summary['device']})"
            )
        else:
            from .run import run_backtest

            metrics = run_backtest(run_config(args), with_time_left(progress), log=_log)
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
