"""The model card is written from files only: regenerating it keeps every table and note."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("model_card", ROOT / "scripts" / "model_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_card_includes_every_bench_file_and_names_them_in_its_command(tmp_path):
    script = load_script()
    summary = {
        "options": {"regions": 8, "batch_tiles": 16, "regions_per_batch": 4, "learning_rate": 0.002,
                    "seed": 3, "variography_weight": 0.05},
        "config": {"d_model": 64, "n_layers": 3, "n_heads": 4, "tile_cells": 16, "context_steps": 60,
                   "horizon_steps": 61},
        "log": [{"mean_loss": 0.5}, {"mean_loss": 0.25}],
        "steps": 40, "device": "cpu", "world_size": 1, "seconds": 120.0, "real_files": [],
    }
    tables, notes = tmp_path / "tables.md", tmp_path / "notes.md"
    tables.write_text("| row | 12 d |\n|---|---|\n| zero_shot | 0.74 |\n")
    notes.write_text("A note measured by hand that must survive a regeneration.\n")
    bench = "\n\n".join(p.read_text().strip() for p in (tables, notes))
    text = script.card(summary, "ab" * 32, 800_000, "2 CPU cores", bench, [tables, notes])
    assert "| zero_shot | 0.74 |" in text and "must survive a regeneration" in text
    assert text.index("zero_shot") < text.index("must survive")
    assert f"--bench {tables} {notes}" in text
    assert "--seed 3" in text and "0.500" in text and "0.250" in text
