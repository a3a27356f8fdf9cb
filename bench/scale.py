"""Wall time, peak memory and output size of a forecast against the number of points.

The inputs are the EGMS burst copied side by side in space: each copy is shifted east by the
burst's width and its points get new ids, so 20 copies of an 11,590-point burst make a
231,800-point file with the burst's own dates, values and density. Each size runs
`python -m engine forecast` as a child process; its peak memory is the child's maximum resident
set (wait4's rusage), checked against samples of /proc taken every half second.

    .venv/bin/python bench/scale.py --points 11590 47036 --model scratch
    .venv/bin/python bench/scale.py --points 235180 --model scratch --keep
    .venv/bin/python bench/scale.py --points 11590 47036 235180 1205000 --plot bench/results/scale.png
    .venv/bin/python bench/scale.py --points --l3-cells 1000000

A full L3 Ortho tile (--l3-cells) is generated: a square of 100 m cells in EGMS_L3_..._U_ format,
each cell one of the shared L3 tile's real series (drawn at random) plus a smooth velocity and
seasonal field over the square, on the shared tile's 6-day dates.

Prints a Markdown table. The inputs and results go to --work (a temporary folder by default),
removed at the end unless --keep.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from engine.results import SERIES, ForecastRun  # noqa: E402
BURST = REPO.parent / "shared" / "data" / "egms" / "EGMS_L2b_022_0845_IW2_VV_2020_2024_1.zip"
L3_TILE = REPO.parent / "shared" / "data" / "egms" / "EGMS_L3_E45N17_100km_U_2020_2024_1.zip"


def burst_lines(path: Path) -> tuple[str, list[str]]:
    """(header, data lines) of the burst's CSV, from its zip or as a plain file."""
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.lower().endswith(".csv"))
            text = io.TextIOWrapper(archive.open(name), encoding="utf-8-sig").read()
    else:
        text = path.read_text(encoding="utf-8-sig")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0], lines[1:]


def tiled_input(burst: Path, n_points: int, out: Path) -> Path:
    """A CSV of `n_points` points: copies of the burst side by side, east of each other."""
    header, lines = burst_lines(burst)
    names = header.split(",")
    pid, east = names.index("pid"), names.index("easting")
    eastings = [float(line.split(",", east + 1)[east]) for line in lines]
    width = max(eastings) - min(eastings) + 100.0  # a cell apart, so copies never share a cell
    copies = math.ceil(n_points / len(lines))
    written = 0
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write(header + "\n")
        for copy in range(copies):
            for line in lines:
                if written == n_points:
                    break
                fields = line.split(",")
                fields[pid] = f"{fields[pid]}_{copy}"
                fields[east] = f"{float(fields[east]) + copy * width:.2f}"
                f.write(",".join(fields) + "\n")
                written += 1
    return out


def l3_tile_input(source: Path, n_cells: int, out_dir: Path, seed: int = 0) -> Path:
    """A square L3 Ortho tile of about `n_cells` 100 m cells, written a row of cells at a time."""
    import operator

    import numpy as np

    header, lines = burst_lines(source)
    names = header.split(",")
    first_date = next(i for i, name in enumerate(names) if name.isdigit())
    dates = np.array([np.datetime64(f"{d[:4]}-{d[4:6]}-{d[6:]}") for d in names[first_date:]])
    real = np.array([[float(v) if v else np.nan for v in line.split(",")[first_date:]] for line in lines])
    real -= np.nanmean(real[:, :5], axis=1, keepdims=True)  # each series starts near zero
    side = math.isqrt(n_cells)
    rng = np.random.default_rng(seed)
    years = (dates - dates[0]).astype(float) / 365.25
    season = np.sin(2 * np.pi * years)

    def smooth_field(scale: float) -> np.ndarray:
        coarse = rng.normal(0, scale, (side // 100 + 2, side // 100 + 2))
        index = np.arange(side) / 100
        i0 = np.floor(index).astype(int)
        w = index - i0  # bilinear from a 10 km lattice: fields that vary over kilometres
        rows = coarse[i0] * (1 - w)[:, None] + coarse[i0 + 1] * w[:, None]
        return rows[:, i0] * (1 - w)[None] + rows[:, i0 + 1] * w[None]

    velocity, amplitude = smooth_field(6.0), np.abs(smooth_field(3.0))
    tenths = np.arange(-20000, 20001)
    words = [f"{t / 10:.1f}" for t in tenths]  # values as the EGMS files print them, looked up
    columns = ",".join(["pid", "easting", "northing", "height_ortho"] + names[first_date:])
    path = out_dir / "EGMS_L3_E40N20_100km_U_2020_2024_1.csv"
    x0, y0 = 4_000_050.0, 2_099_950.0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(columns + "\n")
        for i in range(side):
            picks = real[rng.integers(0, len(real), side)]
            values = picks + velocity[i][:, None] * years + amplitude[i][:, None] * season
            index = np.clip(np.rint(np.nan_to_num(values) * 10), -20000, 20000).astype(int) + 20000
            rows = []
            for j, cell in enumerate(index.tolist()):
                fetch = operator.itemgetter(*cell)
                rows.append(f"L3_{i}_{j},{x0 + 100 * j:.0f},{y0 - 100 * i:.0f},{i % 97:.1f},"
                            + ",".join(fetch(words)))
            f.write("\n".join(rows) + "\n")
    return path


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its children, from /proc (0 when it is gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_one(points_csv: Path, out: Path, options: list[str]) -> dict:
    command = [sys.executable, "-m", "engine", "forecast", "--points", str(points_csv), "--out", str(out),
               *options]
    log = out.parent / f"{out.name}.log"
    started = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
    samples, finished = [0], threading.Event()

    def sample():
        while not finished.is_set():
            samples.append(tree_rss(proc.pid))
            finished.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the largest of all runs
    wall = time.perf_counter() - started
    finished.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"forecast failed ({proc.returncode}): {log.read_text().strip().splitlines()[-1:]}")
    run = ForecastRun.open(out)
    summary = run.summary
    return {
        "wall_s": wall,
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "sampled_rss_bytes": max(samples),
        "out_bytes": folder_bytes(out),
        "series_bytes": run.file(SERIES).stat().st_size,
        "timings_s": summary.get("timings_s", {}),
        "training_s": summary.get("training", {}).get("seconds"),
        "n_points": summary["n_points"],
    }


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=Path, default=BURST, help="the EGMS burst to copy (.zip or .csv)")
    parser.add_argument("--points", type=int, nargs="*", default=[11_590, 47_036])
    parser.add_argument("--l3-cells", type=int, nargs="*", default=[],
                        help="also generate full L3 tiles of these many cells (1000000: 1000 x 1000)")
    parser.add_argument("--l3-source", type=Path, default=L3_TILE,
                        help="the real L3 tile whose series are drawn")
    parser.add_argument("--plot", type=Path, default=None,
                        help="PNG of wall time against points, with the straight line fitted beyond 200k")
    parser.add_argument("--work", type=Path, default=None, help="folder for inputs and results")
    parser.add_argument("--keep", action="store_true", help="keep the inputs and results")
    args, options = parser.parse_known_args(argv)
    options = options or ["--model", "scratch"]
    if "--device" not in options:
        options += ["--device", "cpu"]
    if not args.burst.is_file():
        raise SystemExit(f"{args.burst}: no such file; give the EGMS burst with --burst.")
    work = args.work or Path(tempfile.mkdtemp(prefix="groundcast-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in args.points:
            t0 = time.perf_counter()
            csv_path = tiled_input(args.burst, n, work / f"points_{n}.csv")
            built = time.perf_counter() - t0
            result = run_one(csv_path, work / f"out_{n}", options)
            result["input_bytes"], result["build_s"] = csv_path.stat().st_size, built
            result["input"] = "EGMS burst, copied side by side"
            rows.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
        for n in args.l3_cells:
            t0 = time.perf_counter()
            folder = work / f"l3_{n}"
            folder.mkdir(exist_ok=True)
            csv_path = l3_tile_input(args.l3_source, n, folder)
            built = time.perf_counter() - t0
            result = run_one(csv_path, work / f"out_l3_{n}", options)
            result["input_bytes"], result["build_s"] = csv_path.stat().st_size, built
            result["input"] = "generated L3 Ortho tile"
            rows.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"options: {' '.join(options)}; {os.cpu_count()} cores")
    print("| input | points | input CSV | wall | read+grid | train | write, start | peak RSS | output folder "
          f"| {SERIES} |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        t = r["timings_s"]
        print(f"| {r['input']} | {r['n_points']:,} | {r['input_bytes'] / 1e6:,.0f} MB "
              f"| {duration(r['wall_s'])} "
              f"| {t.get('prepare_s', float('nan')):.0f} s | {r['training_s'] or 0:.0f} s "
              f"| {r['wall_s'] - t.get('prepare_s', 0) - t.get('train_and_forecast_s', 0):.0f} s "
              f"| {r['peak_rss_bytes'] / 1e9:.2f} GB | {r['out_bytes'] / 1e6:,.0f} MB "
              f"| {r['series_bytes'] / 1e6:,.0f} MB |")
    if args.plot:
        plot_wall_time([r for r in rows if r["input"].startswith("EGMS burst")], args.plot)
    return 0


def plot_wall_time(rows: list, path: Path) -> None:
    """Wall time against points (log-log and linear), with the line through the runs past 200k."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = np.array([r["n_points"] for r in rows], float)
    wall = np.array([r["wall_s"] for r in rows], float)
    fig = Figure(figsize=(7, 4.2), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(n / 1e3, wall / 60, "o-", label="forecast, wall time")
    big = n >= 200_000
    if big.sum() >= 2:
        slope, fixed = np.polyfit(n[big], wall[big], 1)
        xs = np.linspace(0, n.max(), 50)
        ax.plot(xs / 1e3, (fixed + slope * xs) / 60, "--", color="0.5",
                label=f"{fixed:.0f} s + {slope * 1e5:.0f} s per 100k points")
    ax.set_xlabel("points (thousands)")
    ax.set_ylabel("wall time (min)")
    ax.set_title("GroundCast forecast on 2 CPU cores: the EGMS burst copied side by side", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
