"""How many nodes a daily volume needs: a discrete-event simulation of N nodes x 2 workers.

    python -m bench.capacity [--days 14] [--seed 1] [--rtf-one 0.109] [--rtf-two 0.086] [--out FILE]

Recordings arrive as a Poisson process (all day, or only in a 10-hour working
day), with lengths drawn from a mix of meetings, interviews and long hearings
(10 minutes to 3 hours). All nodes take from one queue, oldest first. A
worker's speed depends on how many jobs its node runs, as `make bench`
measured it: a lone job runs at real-time factor --rtf-one (0.109, "daemon,
one file"), two at once at an aggregate --rtf-two (0.086: each at 0.172).
Speeds change the moment a job starts or ends on the node (processor
sharing), so the simulation is exact for that model. For each volume it
reports queue wait p50/p95 (arrival to start) and utilisation for 1..N
nodes, the fewest nodes with p95 under an hour, and writes a JSON file and a
plot of p95 wait against nodes.

It also counts what crosses the shared state folder (storage()): each original
three times (written by the upload, read by the inbox node's hash, read by the
worker's decode), the decoded audio written once and read by transcription and
diarization, the models each job loads when models_dir is on the share, and
the outputs; as bytes a day and MB/s, averaged over the arrival window.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
VOLUMES = (100, 500, 2000)  # audio hours a day
PATTERNS = {"all day": (0.0, 24.0), "working day": (8.0, 18.0)}
# (share, shortest, longest) in minutes: stand-ups and interviews, meetings, hearings and panels
LENGTHS = ((0.3, 10, 30), (0.5, 30, 90), (0.2, 90, 180))
TARGET_P95_SECONDS = 3600.0
WORKERS = 2
ORIGINAL_CROSSINGS = 3  # upload write, the inbox node's hash read, the worker's decode read
DECODED_MB_PER_HOUR = 230.4  # 16 kHz mono float32, memory-mapped by every stage
DECODED_CROSSINGS = 3  # written by decode, read by transcription and by diarization
MODELS_MB_PER_JOB = 190.0  # Whisper base (int8) + segmentation + CAM++, when models_dir is on the share
OUTPUTS_MB_PER_HOUR = 2.0  # JSON with words, SRT, VTT, TXT, RTTM, CSV


def storage(volume: float, pattern: tuple[float, float], recordings: int, days: int,
            original_gb_per_hour: float, models_on_share: bool) -> dict:
    """Bytes that cross the shared folder in a day, and the rate over the hours recordings arrive in."""
    per_day = {"originals": volume * original_gb_per_hour * 1000 * ORIGINAL_CROSSINGS,
               "decoded_audio": volume * DECODED_MB_PER_HOUR * DECODED_CROSSINGS,
               "models": recordings / days * MODELS_MB_PER_JOB if models_on_share else 0.0,
               "outputs": volume * OUTPUTS_MB_PER_HOUR}
    total = sum(per_day.values())
    window = (pattern[1] - pattern[0]) * 3600
    return {"mb_per_day": {k: round(v) for k, v in per_day.items()}, "gb_per_day": round(total / 1000, 1),
            "mb_per_s": round(total / window, 1)}


def mean_length_seconds() -> float:
    return sum(share * (lo + hi) / 2 * 60 for share, lo, hi in LENGTHS)


def draw_length(rng: random.Random) -> float:
    pick, total = rng.random(), 0.0
    for share, lo, hi in LENGTHS:
        total += share
        if pick <= total:
            return rng.uniform(lo, hi) * 60
    return LENGTHS[-1][2] * 60


def arrivals(rng: random.Random, hours_per_day: float, days: int, pattern: tuple[float, float]) -> list[tuple]:
    """(time, audio seconds) of each recording, Poisson within the pattern's hours of each day."""
    start, end = pattern
    per_day = hours_per_day * 3600 / mean_length_seconds()
    rate = per_day / ((end - start) * 3600)  # recordings per second while the day is open
    out = []
    for day in range(days):
        t = day * 86400 + start * 3600
        while True:
            t += rng.expovariate(rate)
            if t >= day * 86400 + end * 3600:
                break
            out.append((t, draw_length(rng)))
    return out


@dataclass
class Node:
    running: list[list[float]] = field(default_factory=list)  # [remaining audio seconds, arrival]
    busy_seconds: float = 0.0  # worker-seconds busy


def speed(node: Node, rtf_one: float, rtf_two: float) -> float:
    """Audio seconds per wall second for each job running on the node."""
    return 1 / rtf_one if len(node.running) == 1 else 1 / (2 * rtf_two)


def simulate(jobs: list[tuple], nodes: int, rtf_one: float, rtf_two: float) -> list[float]:
    """Queue waits (seconds) of every job, in arrival order of their start."""
    fleet = [Node() for _ in range(nodes)]
    queue: list[tuple[float, float]] = []
    waits, now, i = [], 0.0, 0

    def start_waiting() -> None:
        for node in fleet:
            while queue and len(node.running) < WORKERS:
                arrived, length = queue.pop(0)
                waits.append(now - arrived)
                node.running.append([length, arrived])

    while i < len(jobs) or queue or any(n.running for n in fleet):
        finish, who = math.inf, None
        for node in fleet:
            for job in node.running:
                at = now + job[0] / speed(node, rtf_one, rtf_two)
                if at < finish:
                    finish, who = at, (node, job)
        arrive = jobs[i][0] if i < len(jobs) else math.inf
        step = min(finish, arrive) - now
        for node in fleet:
            if node.running:
                rate = speed(node, rtf_one, rtf_two)
                node.busy_seconds += step * len(node.running)
                for job in node.running:
                    job[0] -= step * rate
        now += step
        if finish <= arrive:
            who[0].running.remove(who[1])
        else:
            queue.append((jobs[i][0], jobs[i][1]))
            i += 1
        start_waiting()
    return waits


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def run(volume: float, pattern: tuple[float, float], days: int, seed: int, rtf_one: float, rtf_two: float,
        most: int = 64) -> dict:
    """Nodes from 1 up, until p95 is under the target and the next node changes little."""
    jobs = arrivals(random.Random(seed), volume, days, pattern)
    warm = 86400.0  # the first day fills the queue from empty: left out of the figures
    rows, needed = [], None
    floor = max(1, math.floor(volume / 24 / (1 / rtf_two) * 0.9))  # below capacity the queue only grows
    for nodes in range(floor, most + 1):
        waits = simulate(jobs, nodes, rtf_one, rtf_two)
        kept = [w for (t, _), w in zip(sorted(jobs), waits) if t >= warm] or waits
        audio = sum(length for _, length in jobs)
        rows.append({"nodes": nodes, "p50_wait_s": round(percentile(kept, 0.5), 1),
                     "p95_wait_s": round(percentile(kept, 0.95), 1),
                     "utilisation": round(audio * rtf_two * 2 / (nodes * WORKERS * days * 86400), 3)})
        if needed is None and rows[-1]["p95_wait_s"] < TARGET_P95_SECONDS:
            needed = nodes
        if needed is not None and nodes >= needed + 2:
            break
    return {"volume_hours_per_day": volume, "recordings": len(jobs), "nodes_needed": needed, "rows": rows}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), sharey=True)
    for ax, (pattern, volumes) in zip(axes, results.items()):
        for item in volumes:
            xs = [r["nodes"] for r in item["rows"]]
            ax.plot(xs, [max(1.0, r["p95_wait_s"]) / 60 for r in item["rows"]], marker="o",
                    label=f"{item['volume_hours_per_day']:g} h/day")
        ax.axhline(TARGET_P95_SECONDS / 60, color="grey", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("nodes (2 workers each)")
        ax.set_title(f"arrivals: {pattern}")
        ax.legend()
    axes[0].set_ylabel("queue wait p95, minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def waits(item: dict) -> list[str]:
    row = next((r for r in item["rows"] if r["nodes"] == item["nodes_needed"]), item["rows"][-1])
    return [str(item["nodes_needed"]), f"{row['p50_wait_s'] / 60:.1f} min", f"{row['p95_wait_s'] / 60:.1f} min",
            f"{row['utilisation']:.0%}"]


def traffic(item: dict) -> list[str]:
    found = item["storage"]
    return [f"{found['gb_per_day']:,}", f"{found['mb_per_day']['originals'] / 1000:,.0f} GB", str(found["mb_per_s"])]


def print_table(results: dict, columns: tuple[str, ...], cells) -> None:
    """A Markdown table: a row per arrival pattern and volume, `cells(item)` after those two."""
    print("| " + " | ".join(("arrivals", "audio h/day", *columns)) + " |")
    print("|" + "---|" * (2 + len(columns)))
    for name, items in results.items():
        for item in items:
            print("| " + " | ".join((name, f"{item['volume_hours_per_day']:g}", *cells(item))) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rtf-one", type=float, default=0.109, help="a lone job (make bench: daemon, one file)")
    parser.add_argument("--rtf-two", type=float, default=0.086, help="two at once, aggregate (make bench)")
    parser.add_argument("--volumes", default=",".join(map(str, VOLUMES)))
    parser.add_argument("--original-gb-per-hour", type=float, default=1.0, help="1.0: video; 0.06: compressed audio")
    parser.add_argument("--models-on-share", action="store_true", help="models_dir on the shared folder too")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    volumes = [float(v) for v in args.volumes.split(",")]
    results = {name: [run(v, hours, args.days, args.seed, args.rtf_one, args.rtf_two) for v in volumes]
               for name, hours in PATTERNS.items()}
    for name, items in results.items():
        for item in items:
            item["storage"] = storage(item["volume_hours_per_day"], PATTERNS[name], item["recordings"], args.days,
                                      args.original_gb_per_hour, args.models_on_share)
    out = args.out or RESULTS / time.strftime("capacity-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(results, out.with_suffix(".png"))
    report = {"days": args.days, "seed": args.seed, "rtf_one": args.rtf_one, "rtf_two": args.rtf_two,
              "mean_recording_minutes": round(mean_length_seconds() / 60, 1),
              "node_audio_hours_per_hour": round(1 / args.rtf_two, 1), "results": results,
              "plot": str(out.with_suffix(".png"))}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"one node: {1 / args.rtf_two:.1f} audio hours an hour with two workers; recordings average "
          f"{report['mean_recording_minutes']} min\n")
    print_table(results, ("nodes for p95 wait < 1 h", "p50 wait", "p95 wait", "utilisation"), waits)
    print(f"\nshared folder ({args.original_gb_per_hour:g} GB an hour of original, models "
          f"{'on the share' if args.models_on_share else 'node-local'}):\n")
    print_table(results, ("GB a day across the share", "of it originals", "MB/s over the arrival hours"), traffic)
    print(f"\nwritten {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
