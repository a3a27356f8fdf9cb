"""Checkpoints are safetensors only: round trip, and refusal of pickles and damaged files."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.errors import InputError
from engine.model import MMSTT, Batch, ModelConfig, time_features

torch.set_num_threads(1)


def small_model() -> MMSTT:
    torch.manual_seed(0)
    return MMSTT(ModelConfig(tile_cells=8, context_steps=12, time_patch=4, horizon_steps=8, d_model=32,
                             n_layers=1, quantiles=(0.1, 0.5, 0.9), kernel="matern32", initial_range_m=700.0))


def batch_for(config: ModelConfig) -> Batch:
    g = torch.Generator().manual_seed(1)
    S, L, H, B = 8, config.context_steps, config.horizon_steps, 2
    dates = np.datetime64("2018-05-03") + 6 * np.arange(L + H)
    return Batch(history=torch.randn(B, L, S, S, generator=g),
                 history_mask=torch.ones(B, L, S, S, dtype=torch.bool),
                 time_features=torch.from_numpy(time_features(dates))[None].repeat(B, 1, 1),
                 priors=torch.randn(B, config.n_prior_continuous, S, S, generator=g),
                 geology=torch.randint(0, 16, (B, S, S), generator=g),
                 soil=torch.randint(0, 16, (B, S, S), generator=g),
                 baselines=torch.randn(B, config.n_baselines, H, S, S, generator=g))


META = {"normalisation": {"scale_mm": 4.2}, "grid": {"crs": "EPSG:3035", "cell_size_m": 100.0},
        "geology_classes": ["alluvium", "clay"], "training": {"epochs": 3, "history": [0.5, 0.25]}}


def test_round_trip_gives_the_same_forecasts_and_meta(tmp_path):
    model = small_model()
    with torch.no_grad():
        model.cov.log_range.fill_(6.5)                    # a trained value, not the initial one
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model, {**META, "scale": np.float32(2.5), "steps": np.arange(3)})
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]   # no temporary left behind

    loaded, meta = load_checkpoint(path)
    assert meta == {**META, "scale": 2.5, "steps": [0, 1, 2]}
    assert loaded.config == model.config and not loaded.training
    assert loaded.variogram_range_m() == pytest.approx(model.variogram_range_m())
    batch = batch_for(model.config)
    with torch.no_grad():
        assert torch.equal(loaded(batch), model.eval()(batch))


class WritesMarker:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))                 # unpickling would create the marker file


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickles_are_refused_without_being_run(tmp_path, writer):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "model.safetensors"
    payload = {"state_dict": small_model().state_dict(), "evil": WritesMarker(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(InputError, match="model.safetensors"):
        load_checkpoint(path)
    assert not marker.exists()
    if writer == "pickle":                              # control: the same bytes do run code when unpickled
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_truncated_and_foreign_files_are_refused(tmp_path):
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, small_model(), META)
    data = good.read_bytes()
    for name, content in [("truncated.safetensors", data[: len(data) // 2]),
                          ("header_only.safetensors", data[:100]), ("empty.safetensors", b"")]:
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(InputError, match=name):
            load_checkpoint(bad)

    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(InputError, match="foreign.safetensors"):
        load_checkpoint(foreign)
    with pytest.raises(InputError, match="missing.safetensors"):
        load_checkpoint(tmp_path / "missing.safetensors")
