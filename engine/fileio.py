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

    Files already in `final_dir` with other names are left alone, so an output folder the
    user chose is never wiped. Files about to be replaced are set aside first and put back
    if any move fails, so the folder ends either as it was or with every new file.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", suffix=".part", dir=final_dir.parent))
    backup = tmp / ".replaced"
    try:
        yield tmp
        final_dir.mkdir(parents=True, exist_ok=True)
        backup.mkdir()
        items = sorted(p for p in tmp.iterdir() if p != backup)
        moved, set_aside = [], []
        try:
            for item in items:
                target = final_dir / item.name
                if target.exists() or target.is_symlink():
                    os.replace(target, backup / item.name)
                    set_aside.append(item.name)
                os.replace(item, target)
                moved.append(item.name)
        except OSError:
            for name in moved:
                path = final_dir / name
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            for name in set_aside:
                os.replace(backup / name, final_dir / name)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
