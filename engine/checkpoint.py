"""Model checkpoints as safetensors: weights plus JSON metadata, never pickle.

A checkpoint is one .safetensors file. Its header metadata holds
    "format": "groundcast.mmstt/1"
    "config": ModelConfig as JSON
    "meta":   the caller's dict as JSON (normalisation, grid, class tables, training info)
Loading parses only that format, so a file from elsewhere cannot run code.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import InputError
from .fileio import atomic_path
from .model import MMSTT, ModelConfig

FORMAT = "groundcast.mmstt/1"


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


def load_checkpoint(path, device="cpu") -> tuple[MMSTT, dict]:
    """Read a checkpoint written by save_checkpoint -> (model in eval mode, meta).

    Raises InputError naming the file if it is anything else (pickle, truncated, foreign).
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            if header.get("format") != FORMAT:
                raise ValueError(f"no '{FORMAT}' header")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        model = MMSTT(ModelConfig(**json.loads(header["config"])))
        model.load_state_dict(tensors)
        meta = json.loads(header["meta"])
    except (SafetensorError, OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: not a GroundCast model checkpoint ({reason}).") from None
    return model.to(device).eval(), meta
