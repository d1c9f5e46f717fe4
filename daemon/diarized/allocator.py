"""Keep freed memory in the process heap instead of handing it back to the kernel.

The models allocate and free activations of 50–150 MB per batch (CAM++'s first
convolutions on ten-second windows, segmentation, the Whisper encoder). glibc
serves blocks that large with mmap and returns them with munmap, so every batch
pays for fresh zeroed pages: on this project's machine a third of the diarization
stage was kernel time. Raising the mmap and trim thresholds lets the heap reuse
those blocks (diarization 15.8 s -> 9.5 s on three minutes of audio) for ~250 MB
more peak RSS, which the memory budget in supervisor.py accounts for.

The price of a heap that never shrinks is fragmentation: small long-lived arrays
land in the holes the big blocks leave, and on a two-hour file the segmentation
pass grew by 800 MB. HeapTrimmer hands whole free pages back every few seconds
(malloc_trim), which keeps the speed-up and most of the default's footprint.

keep_freed_memory() is process-wide, so only entry points (the worker, the
one-shot CLI) call it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("diarized.allocator")

M_TRIM_THRESHOLD = -1  # from <malloc.h>
M_MMAP_THRESHOLD = -3
THRESHOLD = 2**31 - 1  # mallopt takes an int: largest block still served from the heap


def _libc_function(name: str):
    """A glibc function, or None (no libc found, or musl and others without it)."""
    path = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(path), name) if path else None
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Tune glibc malloc for large, repeated model allocations; False where not glibc."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    ok = mallopt(M_MMAP_THRESHOLD, THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, THRESHOLD) == 1
    if not ok:
        log.warning("mallopt refused the thresholds; large allocations stay on mmap")
    return ok


def exit_without_collecting() -> None:
    """Keep the garbage collector off every object alive now; call as the process ends.

    While CPython tears down its modules at exit it runs the collector over every
    object torch, lightning and pyannote made at import: 1.5-2 s per process that
    diarized (each worker's job, each one-shot run), 0.3 s after this. Objects still
    go by reference counting; cycles are left to the kernel, which takes the whole
    heap back anyway. Outputs and the job store must be closed before.
    """
    gc.freeze()


class HeapTrimmer:
    """Return free heap pages to the kernel at most every `every` seconds."""

    def __init__(self, every: float = 10.0):
        self.every = every
        self._trim = _libc_function("malloc_trim")
        self._last = time.monotonic()

    def __call__(self) -> None:
        if self._trim is None or time.monotonic() - self._last < self.every:
            return
        self._trim(0)
        self._last = time.monotonic()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_seconds() -> float | None:
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat); None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


def own_busy_seconds() -> float:
    """CPU seconds this process (every thread) has used."""
    times = os.times()
    return times.user + times.system


class CoreShare:
    """How many compute threads this process may run now: its share, less the cores others keep busy.

    Two threads that wait for each other on a core another process holds make a stage 2 to
    3 times slower, while one thread is not slowed at all (README, Performance). So between
    batches a stage asks `threads()`: the cores busy over the last interval, less this
    process's own use, are taken; the rest (at least one thread, at most `most`) is ours.
    The daemon's own second job counts as another process too, so a lone job that got
    every core gives one back once a second job starts.
    """

    def __init__(self, most: int, every: float = 2.0, cores: int | None = None):
        self.most, self.every = max(1, most), every
        self.cores = cores or usable_cores()
        self.current = min(self.most, self.cores)
        self._mark = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float | None, float]:
        return time.monotonic(), machine_busy_seconds(), own_busy_seconds()

    def threads(self) -> int:
        """Threads to run until the next call (re-measured at most every `every` seconds)."""
        now = self._sample()
        if now[0] - self._mark[0] < self.every:
            return self.current
        return self._measure(now)

    def settle(self, seconds: float = 0.5) -> int:
        """Measure over a short interval now (before loading a model whose threads are fixed at load)."""
        self._mark = self._sample()
        time.sleep(seconds)
        return self._measure(self._sample())

    def _measure(self, now: tuple[float, float | None, float]) -> int:
        then, self._mark = self._mark, now
        elapsed = now[0] - then[0]
        if now[1] is None or then[1] is None or elapsed <= 0:
            return self.current
        others = max(0.0, (now[1] - then[1]) - (now[2] - then[2])) / elapsed  # cores others kept busy
        self.current = max(1, min(self.most, int(self.cores - others + 0.25)))  # a quarter core is noise
        return self.current


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, as a container or systemd sets it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
