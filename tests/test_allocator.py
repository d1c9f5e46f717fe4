"""Large blocks come from the reusable heap after keep_freed_memory(), not from fresh mmaps."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

PROBE = """
import ctypes, sys
from diarized.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
block = libc.malloc(100 << 20)
mmapped = libc.mallinfo2().hblkhd
libc.free(block)
print(mmapped, libc.mallinfo2().arena)
"""


@pytest.mark.parametrize("mode", ["default", "tuned"])
def test_a_100_mb_block_is_served_from_the_heap_only_when_tuned(mode):
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    mmapped, heap_after_free = map(int, out.stdout.split())
    if mode == "default":  # glibc's default: a block this large is its own mmap, unmapped on free
        assert mmapped >= 100 << 20
    else:  # kept in the heap after free, ready for the next batch
        assert mmapped < 100 << 20 <= heap_after_free


TRIM_PROBE = """
import ctypes
from diarized.allocator import HeapTrimmer, keep_freed_memory

def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
assert keep_freed_memory()
hole = libc.malloc(200 << 20)
ctypes.memset(hole, 1, 200 << 20)  # touched: resident
pin = libc.malloc(1 << 20)  # above it, so the freed block is a hole, not the heap's top
libc.free(hole)
before = rss_mib()
HeapTrimmer(every=0)()
print(before, rss_mib())
"""


def test_the_trimmer_hands_a_freed_hole_back_to_the_kernel():
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, check=True)
    before, after = map(float, out.stdout.split())
    assert before - after > 150, (before, after)


def test_a_core_held_by_another_process_is_given_up_and_taken_back():
    """Two threads waiting for each other on a core another process holds made diarization 2-3x
    slower, one thread not at all (README, Performance): a stage asks how many cores are free."""
    from diarized.allocator import CoreShare

    from tests.harness import wait_until

    share = CoreShare(2, every=0.5, cores=2)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert share.settle(1.0) == 1
        assert share.threads() == 1  # not measured again within `every`
    finally:
        spinner.kill()
        spinner.wait()
    wait_until(lambda: share.settle(0.5) == 2, 15, "both cores to be ours again")


EXIT_PROBE = """
import gc, sys
from diarized.allocator import exit_without_collecting

out = open(sys.argv[1], "w")  # buffered, never flushed nor closed by hand
out.write("written")
exit_without_collecting()
print(gc.get_freeze_count() > 1000)
"""


def test_a_process_leaving_without_collecting_still_closes_what_it_holds(tmp_path):
    """The collector skips the frozen objects at exit; reference counting still flushes a file left open."""
    target = tmp_path / "out.txt"
    proc = subprocess.run([sys.executable, "-c", EXIT_PROBE, str(target)], capture_output=True, text=True,
                          check=True, timeout=60)
    assert proc.stdout.strip() == "True"
    assert target.read_text() == "written"
