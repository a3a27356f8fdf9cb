"""Model checkpoints as safetensors: weights plus JSON metadata, never pickle.

A checkpoint is one .safetensors file. Its header metadata holds
    "format": "groundcast.mmstt/1"
    "config": ModelConfig as JSON
    "meta":   the caller's dict as JSON (normalisation, grid, class tables, training info)
Loading parses only that format, so a file from elsewhere cannot run code. Before any weight
is allocated, the config is checked (ModelConfig's ranges), the model's size is counted on
torch's meta device, and the stored shapes are compared with it; weights that are not finite
(a diverged training) are refused.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import InputError
from .fileio import atomic_path
from .model import MMSTT, ModelConfig
from .windows import BASELINE_FITS

FORMAT = "groundcast.mmstt/1"
MAX_MODEL_BYTES = 1_000_000_000  # float32 weights; GroundCast's own models take a few MB
# What a checkpoint's config may say, checked before ModelConfig divides by any of it: whole
# numbers from low to high, and numbers from low to high (low itself excluded where positive).
CONFIG_WHOLE = {"tile_cells": (1, 512), "patch_cells": (1, 64), "context_steps": (1, 2000),
                "time_patch": (1, 200), "horizon_steps": (1, 2000), "d_model": (1, 2048),
                "n_heads": (1, 64), "n_layers": (1, 48), "n_prior_continuous": (0, 64),
                "n_geology_classes": (1, 32768), "n_soil_classes": (1, 32768),
                "n_baselines": (1, len(BASELINE_FITS))}
CONFIG_NUMBERS = {"dropout": (0.0, 0.99), "cell_size_m": (0.0, 1e5), "initial_range_m": (0.0, 1e8)}
_ZERO_ALLOWED = frozenset({"dropout"})


def _plain(value):
    """json.dumps fallback for numpy values in meta."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"checkpoint meta cannot hold {type(value).__name__}")


def save_checkpoint(path, model: MMSTT, meta: dict) -> None:
    """Write model weights and meta (JSON-serialisable; numpy values become lists) to path atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "config": json.dumps(asdict(model.config)),
              "meta": json.dumps(meta, default=_plain)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def load_checkpoint(path, device="cpu", max_bytes: int = MAX_MODEL_BYTES) -> tuple[MMSTT, dict]:
    """Read a checkpoint written by save_checkpoint -> (model in eval mode, meta).

    Raises InputError naming the file if it is anything else (pickle, truncated, foreign), if its
    config is out of range, if the model would take more than `max_bytes`, or if its weights do
    not fit its config or are not finite; nothing large is allocated before those checks.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            if header.get("format") != FORMAT:
                raise ValueError(f"no '{FORMAT}' header")
            config = _config(path, header["config"])
            expected = _expected_shapes(path, config, max_bytes)
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            _check_shapes(path, expected, stored)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(header["meta"])
        _check_finite(path, tensors)
        model = MMSTT(config)
        model.load_state_dict(tensors)
    except InputError:
        raise
    except (SafetensorError, OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: not a GroundCast model checkpoint ({reason}).") from None
    return model.to(device).eval(), meta


def _config(path: Path, text: str) -> ModelConfig:
    values = json.loads(text)
    if not isinstance(values, dict):
        raise ValueError("the config is not a JSON object")
    problem = _config_problem(values)
    if problem:
        raise InputError(f"{path}: the model's settings are invalid ({problem}); use a model.safetensors "
                         "that GroundCast wrote.")
    try:
        return ModelConfig(**values)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: the model's settings are invalid ({reason}); use a model.safetensors "
                         "that GroundCast wrote.") from None


def _config_problem(values: dict) -> str | None:
    """What is wrong with a config's numbers, in words, or None."""
    for name, (low, high) in CONFIG_WHOLE.items():
        value = values.get(name, getattr(ModelConfig, name))
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"{name} is {value!r}; it must be a whole number from {low} to {high}"
    for name, (low, high) in CONFIG_NUMBERS.items():
        value = values.get(name, getattr(ModelConfig, name))
        closed = name in _ZERO_ALLOWED
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not (low <= value if closed else low < value) or not value <= high):
            lowest = "from" if closed else "above"
            return f"{name} is {value!r}; it must be a number {lowest} {low:g} to {high:g}"
    d_model = values.get("d_model", ModelConfig.d_model)
    n_heads = values.get("n_heads", ModelConfig.n_heads)
    if d_model % n_heads:
        return f"d_model {d_model} is not a multiple of n_heads {n_heads}"
    return None


def _expected_shapes(path: Path, config: ModelConfig, max_bytes: int) -> dict[str, tuple]:
    """The state dict's shapes, from a model built on the meta device (no memory is allocated)."""
    import torch

    with torch.device("meta"):
        skeleton = MMSTT(config)
    shapes = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    n_bytes = 4 * sum(math.prod(s) for s in shapes.values())
    if n_bytes > max_bytes:
        raise InputError(f"{path}: the model's settings (d_model {config.d_model}, {config.n_layers} layers) "
                         f"make {n_bytes / 1e9:.1f} GB of weights, more than the {max_bytes / 1e9:.1f} GB a "
                         "GroundCast model may take; use a model.safetensors that GroundCast wrote.")
    return shapes


def _check_shapes(path: Path, expected: dict[str, tuple], stored: dict[str, tuple]) -> None:
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    wrong = sorted(k for k in set(expected) & set(stored) if expected[k] != stored[k])
    if missing or extra or wrong:
        if wrong:
            detail = f"{wrong[0]} is {list(stored[wrong[0]])}, not {list(expected[wrong[0]])}"
        else:
            detail = f"{(missing or extra)[0]} is {'missing' if missing else 'unexpected'}"
        raise InputError(f"{path}: the weights do not fit the model's settings ({detail}); use a "
                         "model.safetensors that GroundCast wrote.")


def _check_finite(path: Path, tensors: dict) -> None:
    import torch

    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputError(f"{path}: the weights hold NaN or infinite values ({name}), as a diverged "
                             "training leaves them; train the model again.")
