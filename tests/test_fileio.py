"""Atomic writes: a failed run leaves the output as it was."""

from __future__ import annotations

import os

import pytest

from engine import fileio
from engine.fileio import atomic_dir, atomic_path


def test_atomic_path_writes_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_atomic_dir_keeps_other_files_and_replaces_its_own(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("user")
    (out / "a.txt").write_text("old")
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("new")
        (tmp / "b.txt").write_text("new")
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "mine.txt": "user",
        "a.txt": "new",
        "b.txt": "new",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_restores_the_folder_when_a_move_fails(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old a")
    (out / "b.txt").write_text("old b")
    real_replace = os.replace
    failed = []

    def failing_replace(src, dst):  # the new b.txt cannot be moved in, once
        if (
            not failed
            and str(dst) == str(out / "b.txt")
            and ".replaced" not in str(src)
            and "part" in str(src)
        ):
            failed.append(src)
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", failing_replace)
    with pytest.raises(OSError):
        with atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("new a")
            (tmp / "b.txt").write_text("new b")
            (tmp / "c.txt").write_text("new c")
    assert {p.name: p.read_text() for p in out.iterdir()} == {"a.txt": "old a", "b.txt": "old b"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
