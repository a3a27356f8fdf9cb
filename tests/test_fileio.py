"""Atomic writes: a failed run leaves the output as it was."""

from __future__ import annotations

import os
import time

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


def test_atomic_dir_never_replaces_a_users_folder(tmp_path):
    from engine.errors import InputError

    out = tmp_path / "out"
    (out / "dem.tif").mkdir(parents=True)
    (out / "dem.tif" / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="already exists"):
        with atomic_dir(out) as tmp:
            (tmp / "dem.tif").write_text("new")
    assert (out / "dem.tif" / "mine.txt").read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_folder_lock_is_exclusive_and_leaves_nothing(tmp_path):
    from engine.errors import InputError

    out = tmp_path / "out"
    first = fileio.FolderLock(out).acquire()
    assert not fileio.FolderLock(out).try_acquire()
    with pytest.raises(InputError, match="another GroundCast run"):
        fileio.FolderLock(out).acquire()
    first.release()
    with fileio.FolderLock(out):
        assert fileio.lock_path(out).exists()
    assert list(tmp_path.iterdir()) == []


def test_switch_replaces_a_folder_in_one_step(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    staged = fileio.make_staging(out)
    (staged / "new.txt").write_text("new")
    fileio.switch_into_place(staged, out)
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_switch_without_an_exchange_and_its_recovery(tmp_path, monkeypatch):
    """Where folders cannot be swapped in one step, a crash between the two renames leaves the old
    result set aside, and the next run puts it back."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    monkeypatch.setattr(fileio, "exchange", lambda a, b: False)
    staged = fileio.make_staging(out)
    (staged / "new.txt").write_text("new")
    real_rename = os.rename

    def crash_after_setting_aside(src, dst):
        real_rename(src, dst)
        if str(dst).endswith(fileio.ASIDE_SUFFIX):
            raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(fileio.os, "rename", crash_after_setting_aside)
    with pytest.raises(KeyboardInterrupt):
        fileio.switch_into_place(staged, out)
    monkeypatch.setattr(fileio.os, "rename", real_rename)
    assert not out.exists()
    fileio.remove_stale(out, started=time.time() + 1)
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(fileio.ASIDE_SUFFIX)]


def test_exchange_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    if not fileio.exchange(a, b):
        pytest.skip("this system cannot swap two folders in one step")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_gdal_errors_become_exceptions(tmp_path):
    import logging

    with pytest.raises(OSError, match="No space left"):
        with fileio.gdal_errors_raise(tmp_path / "x.tif"):
            logging.getLogger("rasterio._env").info(
                "GDAL signalled an error: err_no=1, msg='_tiffWriteProc:No space left on device'")
    with fileio.gdal_errors_raise(tmp_path / "x.tif"):
        logging.getLogger("rasterio._env").info("GDAL signalled nothing wrong")


def test_reason_is_a_few_words():
    import errno

    assert fileio.reason(OSError(errno.ENOSPC, "No space left on device")) == "the disk is full"
    assert fileio.reason(PermissionError(errno.EACCES, "Permission denied")) == "permission denied"
    sqlite = RuntimeError("sqlite3_exec(CREATE ...)\n... database or disk is full")
    assert fileio.reason(sqlite) == "the disk is full"
