"""A deep queue: the idle supervisor's CPU and `diarizectl status`'s time with N jobs queued.

    python -m bench.queue_scale [--jobs 100000] [--seconds 30] [--code DIR] [--out FILE]

Builds a state root with two long running jobs (fake workers, so both slots stay
busy and the supervisor has nothing to start) and N queued jobs behind them, all
through the store's own API. Then it runs the real daemon (tests/support/
fake_daemon.py: the real supervisor, fake workers) and measures, over --seconds:
the supervisor's CPU (user + system, % of one core, from /proc through psutil),
and the wall time of `diarizectl status` and `status --json` (median of 3
runs, each a fresh process). `--code` points at another checkout of diarized
(say, the commit before a change) to measure it the same way, side by side:
run this module with PYTHONPATH=<that checkout>/daemon. Writes a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from diarized.config import load_settings
from diarized.store import Priority, open_store

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]


def build(root: Path, jobs: int) -> float:
    """Two long fake jobs (high priority: they run first) and `jobs` queued behind; seconds it took."""
    from diarized.client import Client

    started = time.monotonic()
    settings = load_settings(None, {"state_dir": root}, env={})
    with Client(settings=settings) as client:
        for n in range(2):
            script = json.dumps({"runs": [{"exit": 0, "seconds": 3600}], "name": f"blocker {n}"}).encode()
            path = root.parent / f"blocker-{n}.wav"
            path.write_bytes(script)
            client.submit(path, Priority.HIGH)
    store = open_store(settings.db_path)
    for n in range(jobs):
        job = store.record_incoming(f"queued-{n:06d}.wav", f"{n:064x}", 160_000, Priority.NORMAL, 3,
                                    settings.inbox / f"queued-{n:06d}.wav", settings.jobs_dir)
        store.mark_queued(job.id)
    store.close()
    return time.monotonic() - started


def environment(root: Path, code: Path) -> dict:
    return {**os.environ, "DIARIZED_CONFIG": "", "DIARIZED_STATE_DIR": str(root), "DIARIZED_LOG_FORMAT": "json",
            "XDG_RUNTIME_DIR": str(root.parent / "run"), "PYTHONPATH": str(code / "daemon"),
            "DIARIZED_SETTLE_SECONDS": "1"}


def supervisor_cpu(proc: psutil.Process, seconds: float) -> float:
    """% of one core the process used over `seconds` of wall time."""
    before, t0 = proc.cpu_times(), time.monotonic()
    time.sleep(seconds)
    after, t1 = proc.cpu_times(), time.monotonic()
    used = (after.user - before.user) + (after.system - before.system)
    return 100.0 * used / (t1 - t0)


def command_seconds(env: dict, *args: str, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "diarized.cli.ctl", *args], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def measure(jobs: int, seconds: float, code: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="queue-scale-") as tmp:
        root = Path(tmp) / "var"
        built = build(root, jobs)
        env = environment(root, code)
        daemon = subprocess.Popen([sys.executable, str(code / "tests/support/fake_daemon.py"), "--state-dir",
                                   str(root)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            store = open_store(root / "state/diarized.db", readonly=True)
            deadline = time.monotonic() + 120
            while len(store.jobs(states=("running",), limit=5)) < 2:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise RuntimeError("the two blocking jobs never started")
                time.sleep(0.5)
            time.sleep(3)  # past the start-up work
            cpu = supervisor_cpu(psutil.Process(daemon.pid), seconds)
            status = command_seconds(env, "status")
            status_json = command_seconds(env, "status", "--json")
            rss = psutil.Process(daemon.pid).memory_info().rss / 2**20
        finally:
            daemon.terminate()
            daemon.wait(60)
    return {"queued": jobs, "build_seconds": round(built, 1), "supervisor_cpu_percent": round(cpu, 2),
            "supervisor_rss_mb": round(rss, 1), "status_seconds": round(status, 3),
            "status_json_seconds": round(status_json, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose daemon and CLI are measured")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = {"code": str(args.code), "commit": _commit(args.code), "cores": os.cpu_count(),
              **measure(args.jobs, args.seconds, args.code.resolve())}
    out = args.out or RESULTS / f"queue-scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _commit(code: Path) -> str:
    done = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "?"


if __name__ == "__main__":
    main()
