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
import logging
import time

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
