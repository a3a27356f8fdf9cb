"""The base model: its corpus, pretraining (deterministic, resumable, distributed) and its use."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.corpus import CONFIGS, HELD_OUT_CONFIG, HELD_OUT_SEED, PRETRAIN_CONFIGS, make_region
from engine.errors import Cancelled, InputError
from engine.pretrain import BASE_CONFIG, PretrainOptions, build_corpus, draw_batch, pretrain
from engine.run import base_model_path

ROOT = Path(__file__).resolve().parent.parent
QUICK = dict(regions=3, steps=4, batch_tiles=4, regions_per_batch=2, warmup_steps=2, checkpoint_every=2,
             device="cpu")


def region_with(process: str):
    """The first region of a configuration that favours `process` where it moves the ground visibly."""
    config = max(CONFIGS, key=lambda name: CONFIGS[name][process])
    for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + 50):
        region = make_region(seed, config)
        share = region.processes.get(process)
        if share is not None and np.std(share[np.isfinite(region.truth_mm)]) > 1.0:
            return region
    raise AssertionError(f"no region with {process}")


@pytest.mark.parametrize("process", ["aquifer", "swelling", "creep", "earthquake", "thermal", "excavation",
                                     "tectonic", "rate_change"])
def test_each_process_shows_in_its_regions_truth(process):
    region = region_with(process)
    share = region.processes[process]
    seen = np.isfinite(region.truth_mm)
    assert np.std(share[seen]) > 1.0
    # the truth is the sum of the processes (each point's reference aside): its steps are theirs
    steps_truth = np.diff(region.truth_mm, axis=0)
    steps_sum = np.diff(sum(region.processes.values()), axis=0)
    both = np.isfinite(steps_truth)
    assert both.any() and np.allclose(steps_truth[both], steps_sum[both], atol=1e-3)


def test_regions_vary_and_the_held_out_configuration_never_enters_pretraining():
    regions = [make_region(seed) for seed in range(12)]
    assert {r.config for r in regions} <= set(PRETRAIN_CONFIGS) and HELD_OUT_CONFIG not in PRETRAIN_CONFIGS
    assert len({r.cube.displacement_mm.shape for r in regions}) > 6
    assert len({r.product for r in regions}) > 1 and len({r.cube.grid.cell_size_m for r in regions}) > 1
    names = {name for r in regions for name in r.priors.geology_classes}
    assert len(names) > 10  # class names differ between regions: only their words carry meaning
    again = make_region(5)
    assert np.array_equal(again.cube.displacement_mm, regions[5].cube.displacement_mm, equal_nan=True)


def test_corpus_observations_are_truth_plus_noise():
    region = make_region(3)
    error = region.cube.displacement_mm - region.truth_mm
    assert 0.3 < np.nanstd(error) < 15 and abs(np.nanmedian(error)) < 3
    # the truth is in the observations' reference: no cell carries a constant offset from it (the
    # noise of its first epoch), which no forecaster could know and every score would inherit
    many = error[:, np.isfinite(error).sum(0) > 100]  # [T, cells observed often]
    offset, noise = np.nanmean(many, axis=0), np.nanstd(many, axis=0)
    assert np.sqrt(np.mean(offset**2)) < 0.25 * np.sqrt(np.mean(noise**2))


def test_pretraining_is_deterministic_and_resumes_where_it_stopped(tmp_path):
    whole = pretrain(tmp_path / "whole", PretrainOptions(**QUICK), log=lambda *_: None)
    again = pretrain(tmp_path / "again", PretrainOptions(**QUICK), log=lambda *_: None)
    assert whole["weights_sha256_by_rank"] == again["weights_sha256_by_rank"]

    class StopAfterTwo:
        calls = 0

        def progress(self, fraction, message):
            if message.startswith("pretraining step"):
                self.calls += 1

        def should_cancel(self):
            return self.calls >= 2

    with pytest.raises(Cancelled):
        pretrain(tmp_path / "resumed", PretrainOptions(**QUICK), progress=StopAfterTwo(), log=lambda *_: None)
    assert (tmp_path / "resumed" / "pretrain_state.safetensors").exists()
    said = []
    resumed = pretrain(tmp_path / "resumed", PretrainOptions(**QUICK), log=said.append)
    assert any("resuming from step 2" in line for line in said)
    assert resumed["weights_sha256_by_rank"] == whole["weights_sha256_by_rank"]


def test_resuming_with_other_options_is_refused(tmp_path):
    pretrain(tmp_path, PretrainOptions(**QUICK), log=lambda *_: None)
    with pytest.raises(InputError, match="other options"):
        pretrain(tmp_path, PretrainOptions(**dict(QUICK, seed=7)), log=lambda *_: None)


def test_two_gloo_ranks_hold_identical_weights(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "engine", "pretrain", "--out", str(tmp_path), "--regions", "2", "--steps", "3",
               "--device", "cpu"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "pretrain.json").read_text())
    digests = summary["weights_sha256_by_rank"]
    assert summary["world_size"] == 2 and len(digests) == 2 and digests[0] == digests[1]


def test_synthetic_regions_score_the_median_against_their_truth():
    """The median's targets are the noise-free truth of each synthetic region (observations only
    where no truth is known); switched off, they are the observations themselves."""
    options = PretrainOptions(regions=2, batch_tiles=4, regions_per_batch=2)
    corpus = build_corpus(options, BASE_CONFIG)
    region = make_region(0)
    item = corpus[0]
    H, W = region.truth_mm.shape[1:]
    assert np.array_equal(item.truth_mm[:, :H, :W], region.truth_mm, equal_nan=True)
    _, goal, mask, truth, truth_mask = draw_batch(corpus, options, BASE_CONFIG, step=0, rank=0)
    both = mask & truth_mask
    assert both.sum() > 100
    # observations are truth plus noise: the two targets differ by about the noise, never more than it
    noise = np.std((goal - truth)[both])
    assert 0.02 < noise < 2.0  # in units of the area's scale
    plain = PretrainOptions(regions=2, batch_tiles=4, regions_per_batch=2, median_on_truth=False)
    _, goal, mask, truth, truth_mask = draw_batch(build_corpus(plain, BASE_CONFIG), plain, BASE_CONFIG, 0, 0)
    assert np.array_equal(goal, truth) and np.array_equal(mask, truth_mask)


def test_the_corpus_uses_no_held_out_seed():
    corpus = build_corpus(PretrainOptions(regions=4), __import__("engine.pretrain").pretrain.BASE_CONFIG)
    assert all(int(a.source.split()[-1]) < HELD_OUT_SEED for a in corpus)


def test_shipped_base_model_loads_with_safetensors_and_matches_its_card():
    from safetensors import safe_open

    path = base_model_path()
    card = (path.parent / "MODEL_CARD.md").read_text()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert re.search(rf"sha256[^0-9a-f]*{digest}", card), "MODEL_CARD.md names another sha256"
    assert path.stat().st_size <= 10_000_000
    with safe_open(str(path), framework="pt") as f:
        assert (f.metadata() or {}).get("format") == "groundcast.mmstt/1"
    assert "Contains modified Copernicus EGMS data" in card or "synthetic" in card


def test_zero_shot_beats_persistence_on_a_held_out_region_against_its_truth():
    """The shipped model, never trained on this region nor its configuration, forecasts it a year
    ahead from its own history better than holding the last level, scored against the truth."""
    from engine.baselines import origin_level
    from engine.checkpoint import load_checkpoint
    from engine.sample import forecast_area
    from engine.train import TrainedModel
    from engine.windows import area_scale_mm, make_area

    model, _ = load_checkpoint(base_model_path())
    errors = {"zero_shot": [], "persistence": []}
    for seed in (HELD_OUT_SEED + 1, HELD_OUT_SEED + 2, HELD_OUT_SEED + 3):
        region = make_region(seed, HELD_OUT_CONFIG)
        area = make_area(region.cube, region.priors, model.config)
        anchor = len(area.dates) - model.config.horizon_steps
        history = area.until(anchor)
        trained = TrainedModel(model, area_scale_mm(history), "cpu", anchor)
        increments, level = forecast_area(trained, history)
        truth = region.truth_mm[anchor:]
        zero_shot = level[None] + increments[1]
        persistence = origin_level(region.cube.displacement_mm[:anchor], axis=0)[None]
        seen = np.isfinite(truth) & np.isfinite(zero_shot) & np.isfinite(persistence)
        errors["zero_shot"].append(np.sqrt(np.mean((zero_shot - truth)[seen] ** 2)))
        held = np.broadcast_to(persistence, truth.shape)
        errors["persistence"].append(np.sqrt(np.mean((held - truth)[seen] ** 2)))
    assert np.mean(errors["zero_shot"]) < np.mean(errors["persistence"]), errors


def test_fine_tuning_that_does_not_beat_the_base_model_on_validation_keeps_it():
    """Early stopping starts from the base model's own validation loss: passes that only make it
    worse (here a learning rate far too high) leave the base model's weights as they were."""
    import torch

    from engine.checkpoint import load_checkpoint
    from engine.params import TrainOptions
    from engine.train import fit
    from engine.windows import make_area

    base, _ = load_checkpoint(base_model_path())
    region = make_region(HELD_OUT_SEED + 1, HELD_OUT_CONFIG)
    area = make_area(region.cube, region.priors, base.config)
    start = {k: v.clone() for k, v in base.state_dict().items()}
    wrecking = TrainOptions(epochs=2, steps_per_epoch=2, batch_tiles=4, learning_rate=5.0,
                            validation_tiles=8, device="cpu")
    trained = fit(area, base.config, wrecking, log=lambda *_: None, init_state=start)
    assert trained.log["best_epoch"] == 0
    assert trained.log["best_val_loss"] == trained.log["start_val_loss"]
    assert all(torch.equal(v, start[k]) for k, v in trained.model.state_dict().items())

    gentle = TrainOptions(epochs=1, steps_per_epoch=2, batch_tiles=4, learning_rate=1e-9,
                          validation_tiles=8, device="cpu")
    kept = fit(area, base.config, gentle, log=lambda *_: None, init_state=start)
    assert kept.log["start_val_loss"] == trained.log["start_val_loss"]  # the same start, the same score


def test_young_tiles_blank_the_early_history_of_some_cells_and_leave_the_targets():
    """With young tiles, some cells keep only their last weeks or months of history, in the inputs
    and the window baselines alike; the targets, and every draw of the batch, are those without."""
    plain = PretrainOptions(regions=2, batch_tiles=8, regions_per_batch=2)
    young = PretrainOptions(regions=2, batch_tiles=8, regions_per_batch=2, young_tiles=1.0)
    corpus = build_corpus(plain, BASE_CONFIG)
    old_inputs, old_goal, old_mask, *_ = draw_batch(corpus, plain, BASE_CONFIG, step=3, rank=0)
    new_inputs, new_goal, new_mask, *_ = draw_batch(corpus, young, BASE_CONFIG, step=3, rank=0)
    assert np.array_equal(old_goal, new_goal) and np.array_equal(old_mask, new_mask)
    assert np.array_equal(old_inputs.priors, new_inputs.priors)
    before, after = old_inputs.history_mask, new_inputs.history_mask  # [B, L, S, S]
    assert not (after & ~before).any()  # nothing is invented
    lost = before.sum(1) - after.sum(1)  # [B, S, S] epochs each cell lost
    has_data = before.any(1)
    # every tile has new cells and old ones; a new cell keeps its last epochs only
    for tile in range(len(lost)):
        assert (lost[tile][has_data[tile]] > 0).any() and (lost[tile][has_data[tile]] == 0).any()
    # what a new cell keeps is the end of its history: from its first kept epoch on, all it had
    first = np.argmax(after, axis=1)[:, None]
    suffix = np.arange(after.shape[1])[None, :, None, None] >= first
    assert np.array_equal(after, before & suffix & after.any(1)[:, None])
    assert not np.array_equal(old_inputs.baselines, new_inputs.baselines)


def test_the_command_line_takes_a_share_of_young_tiles(tmp_path, capsys):
    from engine.cli import main

    assert main(["pretrain", "--out", str(tmp_path / "no"), "--young-tiles", "1.5"]) == 2
    assert "--young-tiles 1.5: choose a share from 0 to 1." in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    assert main(["pretrain", "--out", str(tmp_path), "--regions", "1", "--steps", "1", "--device", "cpu",
                 "--young-tiles", "0.5"]) == 0
    assert json.loads((tmp_path / "pretrain.json").read_text())["options"]["young_tiles"] == 0.5
