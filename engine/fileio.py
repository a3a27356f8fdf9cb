"""Writing all at once: a cancelled, failed or killed run never leaves a half-written file, and a
folder is switched in one rename, so it holds either the old result or the new one.

The policy (which folders may be replaced, the manifest, the file names) is engine.results';
this module only knows how to stage, lock, switch and clean up.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from .errors import InputError

PART_SUFFIX = ".part"  # a folder being written: `.<name>.<random>.part` beside the destination
ASIDE_SUFFIX = ".replaced"  # the previous result, set aside for the moment of the switch
PART_MARKER = ".groundcast-part"  # inside every staging folder: it is GroundCast's to remove
LOCK_SUFFIX = ".groundcast.lock"


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

    For folders that gather files of several kinds (the demo data, the prior maps): files already
    in `final_dir` with other names are left alone. Files about to be replaced are set aside first
    and put back if any move fails, so the folder ends either as it was or with every new file.
    A folder is never replaced by a file, nor a file by a folder. Result folders are written by
    engine.results instead, which switches the whole folder in one rename.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_staging(final_dir)  # marked: a killed run's leftovers are removed by the next result run
    backup = tmp / ".replaced"
    try:
        yield tmp
        final_dir.mkdir(parents=True, exist_ok=True)
        backup.mkdir()
        items = sorted(p for p in tmp.iterdir() if p not in (backup, tmp / PART_MARKER))
        for item in items:
            target = final_dir / item.name
            if (target.is_dir() or item.is_dir()) and (target.exists() or target.is_symlink()):
                raise InputError(f"{target} already exists and is not a file this program writes; move it "
                                 "or choose another folder.")
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


# -- GDAL errors -------------------------------------------------------------------------------
class _GdalErrors(logging.Handler):
    """Collects the errors GDAL reports through rasterio's logger instead of raising them."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record):
        text = record.getMessage()
        if record.thread == self.thread and "GDAL signalled an error" in text:
            self.messages.append(text.split("msg=", 1)[-1].strip("'\""))


@contextlib.contextmanager
def gdal_errors_raise(path):
    """Raise OSError when GDAL reports an error while the block writes `path`.

    GDAL reports failures at close time (a full disk while flushing a GeoTIFF) only to its error
    handler, so a write that lost data otherwise looks successful.
    """
    import rasterio

    logger = logging.getLogger("rasterio._env")
    handler, level = _GdalErrors(), logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        with rasterio.Env():
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    if handler.messages:
        raise OSError(errno.EIO, handler.messages[0], str(path))


def reason(exc: BaseException) -> str:
    """The cause of a failed write in a few words: 'the disk is full', 'permission denied', ..."""
    text = str(getattr(exc, "strerror", None) or exc)
    lowered = text.lower()
    if "no space left" in lowered or "disk is full" in lowered or getattr(exc, "errno", None) == errno.ENOSPC:
        return "the disk is full"
    if getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM) or "permission denied" in lowered:
        return "permission denied"
    if getattr(exc, "errno", None) == errno.EROFS or "read-only file system" in lowered:
        return "the file system is read-only"
    first = text.strip().splitlines()[-1] if text.strip() else type(exc).__name__
    return first[:160].rstrip(".")


# -- the lock ----------------------------------------------------------------------------------
def lock_path(folder) -> Path:
    folder = Path(folder)
    return folder.parent / f".{folder.name}{LOCK_SUFFIX}"


class FolderLock:
    """An exclusive lock on writing `folder`: a locked file beside it, released when the process ends.

    A second run into the same folder is refused at once instead of waiting or silently replacing
    the first run's result. The lock file is removed while still locked, and a lock taken on a file
    that was removed meanwhile is taken again, so two runs can never both hold it.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = lock_path(self.folder)
        self.fd = None

    def try_acquire(self) -> bool:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _lock_fd(fd):
                os.close(fd)
                return False
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                os.write(fd, f"{os.getpid()}\n".encode())
                return True
            os.close(fd)  # removed by the run that just finished: lock the new file

    def acquire(self) -> FolderLock:
        if not self.try_acquire():
            raise InputError(f"{self.folder}: another GroundCast run is writing to this folder; "
                             "wait for it to finish or choose another output folder.")
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self.fd)  # closing drops the lock
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _lock_fd(fd) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


# -- staging and the switch --------------------------------------------------------------------
def make_staging(final_dir) -> Path:
    """A hidden `.<name>.<random>.part` folder beside `final_dir`, on its file system, marked as ours."""
    final_dir = Path(final_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", suffix=PART_SUFFIX, dir=final_dir.parent))
    marker = {"target": final_dir.name, "pid": os.getpid(), "started": time.time()}
    (tmp / PART_MARKER).write_text(json.dumps(marker), encoding="utf-8")
    return tmp


def _marker(folder: Path) -> dict | None:
    try:
        marker = json.loads((folder / PART_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("target"), str) else None


def remove_stale(final_dir, started: float) -> list[Path]:
    """Remove the staging folders of killed runs beside `final_dir`; put back a result set aside.

    A folder counts only if it carries GroundCast's marker, was started before `started`, and no
    live run holds its destination's lock (a killed process holds no lock). Returns what was removed.
    """
    final_dir = Path(final_dir)
    parent, removed = final_dir.parent, []
    if not parent.is_dir():
        return removed
    for entry in sorted(parent.iterdir()):
        if not (entry.name.startswith(".") and entry.is_dir() and not entry.is_symlink()):
            continue
        if not entry.name.endswith((PART_SUFFIX, ASIDE_SUFFIX)):
            continue
        marker = _marker(entry)
        if marker is None or float(marker.get("started", started)) >= started:
            continue
        target = parent / marker["target"]
        if not entry.name.startswith(f".{target.name}."):
            continue
        ours = target.name == final_dir.name  # the caller holds this one's lock
        other = None if ours else FolderLock(target)
        if other is not None and not other.try_acquire():
            continue  # a live run is writing there
        try:
            if entry.name.endswith(ASIDE_SUFFIX) and not target.exists():
                # killed between the two renames of the fallback switch: the old result goes back
                (entry / PART_MARKER).unlink()
                os.rename(entry, target)
            else:
                shutil.rmtree(entry)
                removed.append(entry)
        finally:
            if other is not None:
                other.release()
    return removed


def _renameat2():
    """libc's renameat2 when this system has it (Linux, glibc 2.28 or later), else None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no default library
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


AT_FDCWD, RENAME_EXCHANGE = -100, 2


def exchange(a, b) -> bool:
    """Swap two paths in one step (Linux). False where the system or file system cannot."""
    function = _renameat2()
    if function is None:
        return False
    if function(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextlib.contextmanager
def signals_deferred():
    """Hold Ctrl-C and SIGTERM until the block ends, so the switch is never cut in half."""
    held = {signal.SIGINT, getattr(signal, "SIGTERM", signal.SIGINT)}
    can = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    if can:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        if can:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _write_marker(folder: Path, target: str) -> None:
    marker = {"target": target, "pid": os.getpid(), "started": time.time()}
    (folder / PART_MARKER).write_text(json.dumps(marker), encoding="utf-8")


def switch_into_place(staged, final_dir, pause=None) -> None:
    """Make the finished `staged` folder `final_dir` in one rename; the previous folder is removed.

    `final_dir` must be missing, an empty folder, or a folder the caller may replace whole.
    Where the system cannot swap two folders in one step, the old folder is renamed aside first
    (a `.replaced` folder the next run puts back if a crash came between the two renames).
    The previous folder carries the staging marker while it is on its way out, so whatever a
    crash leaves behind is found and removed by the next run. `pause` is called right before
    the switch (tests kill the process there).
    """
    staged, final_dir = Path(staged), Path(final_dir)
    if pause is not None:
        pause()
    old = None
    with signals_deferred():
        if not final_dir.exists():
            os.rename(staged, final_dir)
        elif not any(final_dir.iterdir()):
            try:
                os.rename(staged, final_dir)  # POSIX replaces an empty folder
            except OSError:
                final_dir.rmdir()
                os.rename(staged, final_dir)
        else:
            _write_marker(final_dir, final_dir.name)
            if exchange(staged, final_dir):
                old = staged  # the swap left the previous result under the staging name
            else:
                old = staged.with_name(staged.name[: -len(PART_SUFFIX)] + ASIDE_SUFFIX)
                os.rename(final_dir, old)
                try:
                    os.rename(staged, final_dir)
                except OSError:
                    os.rename(old, final_dir)
                    (final_dir / PART_MARKER).unlink(missing_ok=True)
                    raise
        (final_dir / PART_MARKER).unlink(missing_ok=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
