"""Ship a pretrained base model: copy it into resources/models/ and write its MODEL_CARD.md.

    .venv/bin/python scripts/model_card.py --run /path/to/pretrain/out --hardware "2 CPU cores" \
        [--bench bench/out/base/base_model.md]

The card says how the model was made (corpus, steps, hardware, wall time), its sha256 and its
held-out scores; tests check the sha256 against the shipped file.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.corpus import CONFIGS, HELD_OUT_CONFIG, HELD_OUT_SEED  # noqa: E402
from engine.definitions import ATTRIBUTION, CLASS_KEYWORDS  # noqa: E402
from engine.run import base_model_path  # noqa: E402


def card(summary: dict, digest: str, size: int, hardware: str, bench: str, bench_files=()) -> str:
    options, config = summary["options"], summary["config"]
    real = summary.get("real_files") or []
    losses = summary["log"]
    shape = (f"d_model {config['d_model']}, {config['n_layers']} layers, "
             f"{config['n_heads']} heads, tiles of "
             f"{config['tile_cells']} cells, context {config['context_steps']} and horizon "
             f"{config['horizon_steps']} steps of 6 days, {config.get('n_baselines', 2)} window baselines "
             f"(engine.windows.BASELINE_FITS)")
    schedule = (f"{summary['steps']} of {options['batch_tiles']} tiles "
                f"({options['regions_per_batch']} areas a batch), AdamW, learning rate "
                f"{options['learning_rate']} with warm-up and cosine decay, seed {options['seed']}")
    median = ("the median against the synthetic regions' noise-free truth (the observations on the real "
              "files), the 5 % and 95 % against the observations" if options.get("median_on_truth") else
              "every quantile against the observations")
    loss = (f"pinball (5/50/95 %; {median}) + {options['variography_weight']} × the covariance kernel's "
            f"Gaussian-process likelihood; mean over the first 50 steps {losses[0]['mean_loss']:.3f}, "
            f"over the last 50 {losses[-1]['mean_loss']:.3f}")
    command = (f"python -m engine pretrain --out OUT --regions {options['regions']} "
               f"--steps {summary['steps']} --seed {options['seed']} --device cpu"
               + ("" if options.get("median_on_truth") else " --median-on-observations")
               + (f" --young-tiles {options['young_tiles']:g}" if options.get("young_tiles") else "")
               + (" --real " + " ".join(Path(p).name for p in real) if real else ""))
    bench_args = (" --bench " + " ".join(str(f) for f in bench_files)) if bench_files else ""
    return f"""# GroundCast base model

`{base_model_path().name}`: the MM-STT network every forecast starts from. A forecast fine-tunes it
briefly on the user's area (`--model base`, the default), applies it as it is (`--model zero-shot`),
or ignores it (`--model scratch`).

| | |
|---|---|
| sha256 | `{digest}` |
| size | {size / 1e6:.2f} MB, safetensors (format `groundcast.mmstt/1`) |
| architecture | {shape} |
| steps | {schedule} |
| hardware | {hardware}, device `{summary['device']}`, {summary['world_size']} process(es) |
| wall time | {summary['seconds'] / 60:.1f} min |
| loss | {loss} |

## Corpus

- {options['regions']} synthetic regions from `engine/corpus.py`, seeds 0–{options['regions'] - 1}, drawn
  from the configurations {', '.join(k for k in CONFIGS if k != HELD_OUT_CONFIG)}: random size and outline,
  point density and clustering, L2b line of sight or L3 vertical / east-west, cells of 50–200 m;
  aquifer compaction (Terzaghi-like, pumping that starts, stops, rebounds), soil swelling, wet-season
  slope creep, co-seismic steps with post-seismic relaxation, thermal dilation, excavation and tunnelling
  bowls, tectonic trends and accelerations, patches whose rate changes once; white noise of 1–5 mm per
  point, correlated atmosphere of 0.5–3 mm over 1–10 km, missing points and epochs, 12-day sampling
  early on, gaps of weeks. How strongly the motion follows the prior maps changes from region to region.
- Real EGMS files as self-supervised windows, each only up to {365} days before its end, so the
  backtests below score a year the model never saw: {', '.join(Path(p).name for p in real) or 'none'}.
  {ATTRIBUTION}.
- Held out: every seed from {HELD_OUT_SEED} on, and the whole `{HELD_OUT_CONFIG}` configuration.

Geology and soil classes enter through a fixed vocabulary of {len(CLASS_KEYWORDS)} lithology and texture
words read from the class names (`engine.definitions.class_row`): a class called "Holocene clay
deposits" in one area and "CLAY" in another share one embedding row.

## Reproduce

```
{command}
python scripts/model_card.py --run OUT --hardware "{hardware}"{bench_args}
```

The run is deterministic for a seed on the CPU and resumes from its last state
(`pretrain_state.safetensors`) when started again with the same options.

## Held-out scores

{bench or '(run `bench/base_model.py` and pass its table with --bench)'}
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the pretraining's --out folder")
    parser.add_argument("--hardware", required=True, help="e.g. '2 CPU cores (x86-64), 24 GB'")
    parser.add_argument("--bench", nargs="+", default=[], metavar="MD",
                        help="markdown files of held-out scores and their notes, included in this order "
                             "(the tables of bench/base_model.py, then bench/results/base_model_notes.md): "
                             "every word of the card comes from a file, so regenerating it loses nothing")
    parser.add_argument("--no-copy", action="store_true", help="only rewrite the card")
    args = parser.parse_args(argv)
    run = Path(args.run)
    summary = json.loads((run / "pretrain.json").read_text())
    target = base_model_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    if not args.no_copy:
        shutil.copyfile(run / "base.safetensors", target)
    data = target.read_bytes()
    bench = "\n\n".join(Path(f).read_text().strip() for f in args.bench)
    text = card(summary, hashlib.sha256(data).hexdigest(), len(data), args.hardware, bench, args.bench)
    (target.parent / "MODEL_CARD.md").write_text(text)
    print(f"{target} and {target.parent / 'MODEL_CARD.md'} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
