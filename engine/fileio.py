"""Atomic writes: a cancelled or failed run never leaves a half-written file."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final_path):
    """Yield a temporary path beside `final_path`; rename onto it only if the block succeeds."""
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    # the real suffix stays last: GDAL picks its driver (and warns) by extension
    fd, tmp = tempfile.mkstemp(prefix=f".{final_path.stem}.", suffix=".part" + final_path.suffix,
                               dir=final_path.parent)
    os.close(fd)
    os.unlink(tmp)  # writers such as GDAL want to create the file themselves
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, final_path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(final_dir):
    """Yield a temporary folder beside `final_dir`; its files move into `final_dir` only on success.

    Files already in `final_dir` with other names are left alone, so an output folder
    the user chose is never wiped.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", suffix=".part", dir=final_dir.parent))
    try:
        yield tmp
        final_dir.mkdir(parents=True, exist_ok=True)
        for item in sorted(tmp.iterdir()):
            target = final_dir / item.name
            if target.is_dir() and not item.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
