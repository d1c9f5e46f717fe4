"""A bounded loopback load test of `diarized api`: requests per second and latency, per route.

    python -m bench.api_load [--jobs 1000] [--requests 2000] [--concurrency 8] [--out FILE]

Seeds a store with --jobs jobs through the store's own transitions, starts a
real `diarized api` process on a free loopback port, and sends --requests
requests per route from --concurrency threads (keep-alive clients): GET
/healthz (the framework's floor: no auth, one tiny query), GET /jobs/{id} and
GET /jobs?limit=50. Writes bench/results/api-<time>.json and prints a table
with each route's rate as a share of /healthz's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from diarized.api.auth import new_token
from diarized.store import Priority, open_store

RESULTS = Path(__file__).parent / "results"


def seed(db: Path, jobs: int) -> list[str]:
    store = open_store(db)
    ids = []
    for n in range(jobs):
        job = store.record_incoming(f"meeting-{n:04d}.mp4", f"{n:064x}", 10_000_000, Priority.NORMAL, 3,
                                    db.parent / "x", db.parent / "jobs")
        job = store.mark_queued(job.id, 3600.0)
        if n % 3:
            store.claim(job.id)
            store.mark_succeeded(job.id, str(db.parent / f"out/{n}"), None)
        ids.append(job.id)
    store.close()
    return ids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hammer(url: str, paths: list[str], token: str, requests: int, concurrency: int) -> dict:
    latencies: list[float] = []
    errors = []
    lock = threading.Lock()
    share = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]

    def run(count: int) -> None:
        mine = []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            for _ in range(count):
                start = time.perf_counter()
                answer = client.get(random.choice(paths))
                mine.append(time.perf_counter() - start)
                if answer.status_code != 200:
                    errors.append(answer.status_code)
        with lock:
            latencies.extend(mine)
    threads = [threading.Thread(target=run, args=(n,)) for n in share]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {"requests": len(latencies), "errors": len(errors), "wall_s": round(wall, 3),
            "rps": round(len(latencies) / wall, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
            "p95_ms": round(1000 * latencies[int(len(latencies) * 0.95)], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    token, entry = new_token("bench", "read")
    with tempfile.TemporaryDirectory(prefix="diarized-api-bench-") as tmp:
        root = Path(tmp) / "var"
        ids = seed(root / "state/diarized.db", args.jobs)
        port = free_port()
        env = {**os.environ, "DIARIZED_CONFIG": "", "DIARIZED_API_TOKENS": entry, "DIARIZED_LOG_FORMAT": "json"}
        log = (Path(tmp) / "api.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "diarized.cli.daemon", "api", "--state-dir", str(root),
                                 "--listen", f"127.0.0.1:{port}"], env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the API did not start:\n" + (Path(tmp) / "api.log").read_text())
                time.sleep(0.2)
            routes = {"GET /healthz": ["/healthz"], "GET /jobs/{id}": [f"/jobs/{i}" for i in ids],
                      "GET /jobs?limit=50": ["/jobs?limit=50"]}
            hammer(url, routes["GET /jobs/{id}"], token, 100, args.concurrency)  # warm-up
            results = {name: hammer(url, paths, token, args.requests, args.concurrency)
                       for name, paths in routes.items()}
        finally:
            proc.terminate()
            proc.wait(30)
    floor = results["GET /healthz"]["rps"]
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "jobs_in_store": args.jobs, "concurrency": args.concurrency, "routes": results,
              "share_of_healthz": {k: round(v["rps"] / floor, 3) for k, v in results.items()}}
    out = args.out or RESULTS / time.strftime("api-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("| route | requests/s | p50 ms | p95 ms | errors | share of /healthz |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | {r['errors']} | "
              f"{report['share_of_healthz'][name]:.2f} |")
    print(f"written {out}")


if __name__ == "__main__":
    main()
