"""A run's large arrays: in memory when small, memory-mapped from a temporary folder when large.

Inside `with Scratch(folder):` the readers, the gridding and the forecast allocate their big
arrays (the point series, the cube, the forecast maps) through `big_array`: an array larger than
`on_disk_above` bytes becomes a `.npy` file opened with numpy's open_memmap, so the work goes
through it chunk by chunk and memory holds only the pages in use. Loops that sweep such arrays
take their chunk size from `chunk_values`, which bounds their working memory. Outside a Scratch
everything stays in memory, as before. The folder is removed when the block ends; a killed
run's folder carries the staging marker and the next run beside it removes it.
"""
from __future__ import annotations

import collections
import contextlib
import contextvars
import itertools
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

# one array larger than this goes to disk; GROUNDCAST_ON_DISK_ABOVE_BYTES sets another bound
ON_DISK_ABOVE_BYTES = int(os.environ.get("GROUNDCAST_ON_DISK_ABOVE_BYTES", 256_000_000))
WORK_VALUES = 4_000_000  # values a chunked loop holds at once (tens of MB with its temporaries)

_active: contextvars.ContextVar[Scratch | None] = contextvars.ContextVar("groundcast_scratch", default=None)


class Scratch:
    """`with Scratch(near):` — big arrays of the block live in a hidden folder beside `near`."""

    def __init__(self, near, on_disk_above: int = ON_DISK_ABOVE_BYTES, work_values: int = WORK_VALUES):
        self.near = Path(near)
        self.on_disk_above, self.work_values = int(on_disk_above), int(work_values)
        self.folder: Path | None = None
        self._names = itertools.count()
        self._token = None

    def __enter__(self) -> Scratch:
        from .fileio import FolderLock, make_staging

        self.near.parent.mkdir(parents=True, exist_ok=True)
        target = self.near.parent / f"{self.near.name}-scratch"
        self._lock = FolderLock(target).acquire()  # another run's cleanup leaves a live scratch alone
        self.folder = make_staging(target)
        self._token = _active.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _active.reset(self._token)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)  # mapped files stay readable until released
        self._lock.release()

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.folder).free

    def array(self, shape, dtype, fill=None) -> np.ndarray:
        path = self.folder / f"array{next(self._names)}.npy"
        out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
        if fill is not None and out.size:
            rows = max(1, self.work_values // max(1, out[0].size))  # filled a slab at a time
            for start in range(0, out.shape[0], rows):
                out[start:start + rows] = fill
        return out


def active() -> Scratch | None:
    return _active.get()


def big_array(shape, dtype, fill=None) -> np.ndarray:
    """np.full(shape, fill, dtype) (np.empty without fill), on disk inside a Scratch when large."""
    scratch = _active.get()
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if scratch is not None and nbytes > scratch.on_disk_above:
        return scratch.array(shape, dtype, fill)
    return np.empty(shape, dtype) if fill is None else np.full(shape, fill, dtype)


def chunk_values(default: int = WORK_VALUES) -> int:
    """How many values a chunked loop may hold at once: the Scratch's bound, else `default`."""
    scratch = _active.get()
    return min(default, scratch.work_values) if scratch is not None else default


def is_on_disk(array) -> bool:
    return isinstance(array, np.memmap) or isinstance(getattr(array, "base", None), np.memmap)


@contextlib.contextmanager
def no_scratch():
    """Everything in memory inside the block (a worker thread's own small arrays)."""
    token = _active.set(None)
    try:
        yield
    finally:
        _active.reset(token)


def n_threads() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def thread_map(function, items, threads: int | None = None, ahead: int | None = None):
    """function(item) for each item, in order, computed by a pool of threads at most `ahead` items
    ahead of the consumer: numpy and GDAL release the GIL, so chunks of a map run on every core
    while memory holds only the chunks in flight. With one thread it runs inline."""
    threads = n_threads() if threads is None else max(1, int(threads))
    items = iter(items)
    if threads == 1:
        yield from map(function, items)
        return
    ahead = threads + 1 if ahead is None else max(1, int(ahead))
    pending = collections.deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="groundcast") as pool:
        try:
            for item in itertools.islice(items, ahead):
                pending.append(pool.submit(function, item))
            while pending:
                result = pending.popleft().result()
                for item in itertools.islice(items, 1):
                    pending.append(pool.submit(function, item))
                yield result
        finally:
            for future in pending:
                future.cancel()
