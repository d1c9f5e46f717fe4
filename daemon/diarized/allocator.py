"""Keep freed memory in the process heap instead of handing it back to the kernel.

The models allocate and free activations of 50–150 MB per batch (CAM++'s first
convolutions on ten-second windows, segmentation, the Whisper encoder). glibc
serves blocks that large with mmap and returns them with munmap, so every batch
pays for fresh zeroed pages: on this project's machine a third of the diarization
stage was kernel time. Raising the mmap and trim thresholds lets the heap reuse
those blocks (diarization 15.8 s -> 9.5 s on three minutes of audio) for ~250 MB
more peak RSS, which the memory budget in supervisor.py accounts for.

Process-wide, so only entry points (the worker, the one-shot CLI) call it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("diarized.allocator")

M_TRIM_THRESHOLD = -1  # from <malloc.h>
M_MMAP_THRESHOLD = -3
THRESHOLD = 2**31 - 1  # mallopt takes an int: largest block still served from the heap


def keep_freed_memory() -> bool:
    """Tune glibc malloc for large, repeated model allocations; False where not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    ok = mallopt(M_MMAP_THRESHOLD, THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, THRESHOLD) == 1
    if not ok:
        log.warning("mallopt refused the thresholds; large allocations stay on mmap")
    return ok
