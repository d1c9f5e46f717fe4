"""A guard on the diarization stage's speed: this machine now against a stored figure from this machine.

    python -m bench.regression [--minutes 10] [--runs 3] [--store]

Runs diarized's diarization stage (the shared pass, shipped settings, every core)
on the first --minutes of the benchmark meeting (bench/__main__.py builds it from
../shared/data), --runs times, and prints the median next to the figure stored in
bench/baseline.json for this machine (its processor, cores and memory), as a ratio:
above 1.15 says the stage got slower. It never fails a build (machines here are
shared and noisy; a timed assert would flake): it prints, and exits 0. --store
records the median as this machine's figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import psutil

BASELINE = Path(__file__).parent / "baseline.json"
SLOWER = 1.15  # a ratio above this is worth a look


def machine() -> str:
    """This machine as a key: processor model, cores and memory (figures from another machine mean nothing)."""
    return f"{processor()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB"


def processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def stage_seconds(minutes: float, runs: int) -> list[float]:
    import numpy as np

    from bench.__main__ import build_input
    from diarized.config import Settings
    from diarized.models import resolve_diarization
    from diarized.pipeline import diarize, media
    from diarized.pipeline.runner import diarize_options

    options = diarize_options(Settings())
    pipeline = diarize.build_pipeline(resolve_diarization(), options)
    with tempfile.TemporaryDirectory() as tmp:
        source = build_input(minutes, Path(tmp))
        audio = np.asarray(media.open_audio(media.decode(source, Path(tmp) / "a.f32").raw_path))
        times = []
        for _ in range(runs):
            started = time.monotonic()
            diarize.diarize(pipeline, audio, options)
            times.append(time.monotonic() - started)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--store", action="store_true", help="record this median as this machine's figure")
    args = ap.parse_args()
    times = stage_seconds(args.minutes, args.runs)
    median = statistics.median(times)
    stored = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    key = f"{machine()} | {args.minutes:g} min"
    print(f"diarization stage, {args.minutes:g} min of audio: " + ", ".join(f"{t:.1f}" for t in times)
          + f" s (median {median:.1f} s) on {machine()}")
    if key in stored:
        ratio = median / stored[key]["seconds"]
        verdict = "slower: worth a look" if ratio > SLOWER else "as before"
        print(f"stored figure {stored[key]['seconds']:.1f} s ({stored[key]['when']}): ratio {ratio:.2f}, {verdict}")
    else:
        print("no stored figure for this machine; --store records one")
    if args.store:
        stored[key] = {"seconds": round(median, 2), "when": time.strftime("%Y-%m-%d")}
        BASELINE.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
        print(f"stored in {BASELINE}")


if __name__ == "__main__":
    main()
