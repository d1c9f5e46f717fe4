"""Speed and memory, ours vs the bare libraries, in one run: `make bench` / `python -m bench`.

    python -m bench [--minutes 30] [--input FILE] [--model base] [--runs bare,oneshot,busy,one,two]
                    [--profile] [--config diarized.toml]

Builds a long real recording (the recordings in ../shared/data, concatenated,
as an mp4 with a black video track), then runs, one after the other on this
machine: bare faster-whisper, bare pyannote.audio (each in its own process,
written the way their READMEs show), `diarizectl transcribe`, the daemon with
one file, and the daemon with two files at once; `busy` runs the bare libraries
and the one-shot again with one CPU-bound process beside them (another
program holding a core, as the daemon's own second job does). Writes
bench/results/<timestamp>.json, a PNG of RSS and CPU per worker for the
two-at-once run, and prints a Markdown table with the ratios. `--config` runs
ours with a configuration of your own (say, old defaults against new).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil

from bench.scoring import DATA
from bench.synth import read_audio, write_container

RESULTS = Path(__file__).parent / "results"
SOURCES = sorted((DATA / "pyannote-ami-debug").glob("[dt]*.wav")) + [
    DATA / "ami-mixture-4spk/mixture.wav", DATA / "pyannote-sample/sample.wav",
    DATA / "picovoice-falcon-3spk/test.wav", *sorted((DATA / "ptbr-falabrasil").glob("*.wav"))]


def build_input(minutes: float, folder: Path, rotate: int = 0) -> Path:
    """`minutes` of real speech as an mp4 video; `rotate` changes the order (and the content hash)."""
    path = folder / f"meeting-{minutes:g}min-{rotate}.mp4"
    if path.exists():
        return path
    pieces = [read_audio(p) for p in SOURCES]
    pieces = pieces[rotate:] + pieces[:rotate]
    need, out, i = int(minutes * 60 * 16000), [], 0
    while sum(len(p) for p in out) < need:
        out.append(pieces[i % len(pieces)])
        i += 1
    folder.mkdir(parents=True, exist_ok=True)
    return write_container(path, np.concatenate(out)[:need])


class Sampler:
    """Samples RSS (whole process tree) and CPU of processes until stopped.

    Besides RSS it keeps the peak of RSS minus file-backed pages (anonymous
    memory): the memory-mapped audio and the shared libraries count in RSS but
    are page cache the kernel can drop, the heap is not.
    """

    def __init__(self, find, every: float = 0.5):
        self.find, self.every = find, every
        self.series: dict[int, list[tuple[float, float, float]]] = {}  # pid -> (t, rss MiB, cpu %)
        self.known: dict[int, psutil.Process] = {}  # cpu_percent() measures since the last call on the same object
        self.anon: dict[int, float] = {}  # pid -> peak anonymous MiB
        self.by_stage: dict[int, dict[str, float]] = {}  # pid -> the job's stage -> peak RSS MiB

    def sample(self, t0: float, stages: dict[int, str] | None = None) -> None:
        """One sample of every process found; `stages` (pid -> its job's stage) splits the peaks."""
        for proc in self.find():
            try:
                tree = [self.known.setdefault(p.pid, p) for p in [proc, *proc.children(recursive=True)]]
                memory = [p.memory_info() for p in tree]
                rss = sum(m.rss for m in memory) / 2**20
                anon = sum(m.rss - m.shared for m in memory) / 2**20
                cpu = sum(p.cpu_percent(None) for p in tree)
            except psutil.Error:
                continue
            self.series.setdefault(proc.pid, []).append((time.monotonic() - t0, rss, cpu))
            self.anon[proc.pid] = max(anon, self.anon.get(proc.pid, 0.0))
            if stages and proc.pid in stages:
                peaks = self.by_stage.setdefault(proc.pid, {})
                peaks[stages[proc.pid]] = max(rss, peaks.get(stages[proc.pid], 0.0))

    def peak_mib(self) -> dict[int, float]:
        return {pid: max(r for _, r, _ in s) for pid, s in self.series.items() if s}


def timed_process(cmd: list[str], env: dict | None = None) -> dict:
    """Run one command, sampling its tree; wall time, peak RSS, mean CPU use."""
    t0 = time.monotonic()
    cpu0 = psutil.cpu_times()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    sampler = Sampler(lambda: [ps])
    while proc.poll() is None:
        sampler.sample(t0)
        time.sleep(sampler.every)
    out, err = proc.communicate()
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed:\n{err[-3000:]}")
    busy = _busy(cpu0, psutil.cpu_times())
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(max(sampler.peak_mib().values(), default=0), 1),
            "peak_anon_mib": round(max(sampler.anon.values(), default=0), 1),
            "cpu_util": round(busy / wall / psutil.cpu_count(), 3), "stdout": out[-2000:]}


def _busy(a, b) -> float:
    fields = ("user", "nice", "system", "irq", "softirq")
    return sum(getattr(b, f) - getattr(a, f) for f in fields)


BARE_WHISPER = """
import sys, time
from faster_whisper import WhisperModel
t = time.monotonic()
model = WhisperModel(sys.argv[1], device="cpu", compute_type="int8", cpu_threads=int(sys.argv[3]))
segments, info = model.transcribe(sys.argv[2], beam_size=5, vad_filter=True, word_timestamps=True)
n = sum(1 for _ in segments)
print(f"segments={n} language={info.language} seconds={time.monotonic() - t:.1f}")
"""

BARE_PYANNOTE = """
import os, sys, time
os.environ["PYANNOTE_METRICS_ENABLED"] = "0"
import torch
from faster_whisper import decode_audio
from bench.accuracy import bare_diarization_pipeline
from diarized.models import resolve_diarization
torch.set_num_threads(int(sys.argv[2]))
t = time.monotonic()
pipeline = bare_diarization_pipeline(resolve_diarization())
audio = torch.from_numpy(decode_audio(sys.argv[1])).unsqueeze(0)
out = pipeline({"waveform": audio, "sample_rate": 16000})
print(f"speakers={len(out.speaker_diarization.labels())} seconds={time.monotonic() - t:.1f}")
"""


def run_bare(model_path: Path, media: Path, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    whisper = timed_process([sys.executable, "-c", BARE_WHISPER, str(model_path), str(media), str(threads)], env)
    pyannote = timed_process([sys.executable, "-c", BARE_PYANNOTE, str(media), str(threads)], env)
    return {"faster_whisper": whisper, "pyannote": pyannote}


SPINNER = "while True: pass"  # one core kept busy, as any CPU-bound program beside us would


@contextmanager
def busy_core():
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def run_busy(model_path: Path, media: Path, threads: int, model: str, cache: Path, work: Path,
             config: str) -> dict:
    """The bare libraries and the one-shot again, each with one core held by another process."""
    with busy_core():
        bare = run_bare(model_path, media, threads)
    with busy_core():
        oneshot = run_oneshot(media, model, cache, work / "busy", None, config)
    return {"bare": bare, "oneshot": oneshot}


def run_oneshot(media: Path, model: str, cache: Path, work: Path, profile_dir: Path | None,
                config: str = "") -> dict:
    env = {**os.environ, "DIARIZED_CONFIG": config, "DIARIZED_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    out = work / "oneshot"
    cmd = [sys.executable, "-m", "diarized.cli.ctl", "transcribe", str(media), "--out", str(out), "--model", model]
    if profile_dir is not None:  # <stage>.prof per stage; read with `python -m pstats FILE`
        cmd += ["--profile", str(profile_dir / "profile")]
    result = timed_process(cmd, env)
    doc = json.loads((out / "final_transcription.json").read_text())
    result["stages_s"] = doc["timings"]
    result["speakers"] = len(doc["speakers"])
    return result


def worker_processes(daemon_pid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.Process(daemon_pid).children():
        try:
            if "diarized.worker" in proc.cmdline():
                found.append(proc)
        except psutil.Error:  # a worker that just exited
            continue
    return found


def run_daemon(files: list[Path], model: str, cache: Path, root: Path, config: str = "") -> dict:
    """Drop `files` at once into a fresh daemon; time until all are published."""
    env = {**os.environ, "DIARIZED_CONFIG": config, "DIARIZED_CACHE_DIR": str(cache), "DIARIZED_MODEL": model,
           "DIARIZED_SETTLE_SECONDS": "1", "DIARIZED_RESCAN_SECONDS": "1", "DIARIZED_LOG_FORMAT": "json",
           "HF_HUB_OFFLINE": "1", "DIARIZED_MAX_WORKERS": "2"}
    shutil.rmtree(root, ignore_errors=True)
    daemon = subprocess.Popen([sys.executable, "-m", "diarized.cli.daemon", "run", "--state-dir", str(root)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from diarized.store import open_store

    try:
        while not (root / "state/diarized.db").exists():
            time.sleep(0.2)
        time.sleep(1)
        sampler = Sampler(lambda: worker_processes(daemon.pid))
        t0 = time.monotonic()
        for f in files:
            shutil.copyfile(f, root / "inbox" / f.name)
        store = open_store(root / "state/diarized.db", readonly=True)
        while True:
            jobs = store.jobs()
            if sum(j.state in ("succeeded", "failed") for j in jobs) == len(files):
                break
            sampler.sample(t0, {j.worker_pid: j.stage for j in jobs if j.worker_pid and j.stage})
            time.sleep(sampler.every)
        wall = time.monotonic() - t0
        jobs = store.jobs()
    finally:
        daemon.terminate()
        daemon.wait(60)
    audio = sum(j.duration or 0 for j in jobs)
    return {"wall_s": round(wall, 2), "audio_s": audio, "throughput": round(audio / wall, 3),
            "states": [j.state for j in jobs],
            "job_processing_s": [round(j.processing_seconds or 0, 1) for j in jobs],
            "worker_threads": [(store.worker_threads(j.id) or [0])[-1] for j in jobs],
            "peak_rss_mib_per_worker": [round(v, 1) for v in sampler.peak_mib().values()],
            "peak_anon_mib_per_worker": [round(v, 1) for v in sampler.anon.values()],
            "peak_rss_mib_by_stage": [{k: round(v) for k, v in p.items()} for p in sampler.by_stage.values()],
            "series": {str(pid): s for pid, s in sampler.series.items()}}


def plot(series: dict, budget_gib: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for n, (pid, points) in enumerate(series.items(), 1):
        t = [p[0] for p in points]
        ax1.plot(t, [p[1] / 1024 for p in points], label=f"worker {n} (pid {pid})")
        ax2.plot(t, [p[2] for p in points], label=f"worker {n}")
    ax1.axhline(budget_gib, color="red", linestyle="--", label=f"per-worker limit {budget_gib:.1f} GiB")
    ax1.set_ylabel("RSS (GiB)")
    ax1.legend(loc="upper left", fontsize=8)
    ax2.set_ylabel("CPU (%)")
    ax2.set_xlabel("seconds since the files were dropped")
    fig.suptitle("diarized: two files at once")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _slash(values: list[float]) -> str:
    return "/".join(f"{v:.0f}" for v in values)


def table(r: dict) -> str:
    dur = r["input"]["duration_s"]
    bare_sum = r["bare"]["faster_whisper"]["wall_s"] + r["bare"]["pyannote"]["wall_s"] if r.get("bare") else None
    rows = ["| run | wall s | RTF | threads | peak RSS MiB | of it anonymous | CPU use |",
            "|---|---|---|---|---|---|---|"]
    cores = r["machine"]["cpus"]
    if r.get("bare"):
        for name in ("faster_whisper", "pyannote"):
            b = r["bare"][name]
            rows.append(f"| bare {name} | {b['wall_s']:.0f} | {b['wall_s'] / dur:.3f} | {cores} | "
                        f"{b['peak_rss_mib']:.0f} | {b.get('peak_anon_mib', 0):.0f} | {b['cpu_util']:.0%} |")
        rows.append(f"| bare sum | {bare_sum:.0f} | {bare_sum / dur:.3f} | | | | |")
    o = r.get("oneshot")
    if o:
        rows.append(f"| diarizectl transcribe | {o['wall_s']:.0f} | {o['wall_s'] / dur:.3f} | {cores} | "
                    f"{o['peak_rss_mib']:.0f} | {o.get('peak_anon_mib', 0):.0f} | {o['cpu_util']:.0%} |")
    for key in ("daemon_one", "daemon_two"):
        if key in r:
            d = r[key]
            rows.append(f"| {key.replace('_', ' ')} | {d['wall_s']:.0f} | {d['wall_s'] / d['audio_s']:.3f} | "
                        f"{'/'.join(str(t) for t in d.get('worker_threads', []))} | "
                        f"{_slash(d['peak_rss_mib_per_worker'])} | "
                        f"{_slash(d.get('peak_anon_mib_per_worker', []))} | |")
    busy = r.get("busy")
    if busy:
        for name in ("faster_whisper", "pyannote"):
            b = busy["bare"][name]
            rows.append(f"| bare {name}, a core busy | {b['wall_s']:.0f} | {b['wall_s'] / dur:.3f} | {cores} | "
                        f"{b['peak_rss_mib']:.0f} | {b.get('peak_anon_mib', 0):.0f} | |")
        b = busy["oneshot"]
        rows.append(f"| diarizectl transcribe, a core busy | {b['wall_s']:.0f} | {b['wall_s'] / dur:.3f} | {cores} | "
                    f"{b['peak_rss_mib']:.0f} | {b.get('peak_anon_mib', 0):.0f} | |")
    rows.append("")
    if busy and o:
        rows.append(f"a core busy / quiet, one-shot: {busy['oneshot']['wall_s'] / o['wall_s']:.2f} (diarize stage "
                    f"{busy['oneshot']['stages_s']['diarize'] / o['stages_s']['diarize']:.2f})")
    if busy and r.get("bare"):
        quiet = sum(r["bare"][k]["wall_s"] for k in ("faster_whisper", "pyannote"))
        rows.append(f"a core busy / quiet, bare sum: {sum(busy['bare'][k]['wall_s'] for k in busy['bare']) / quiet:.2f}")
    if bare_sum and o:
        rows.append(f"ours / bare sum (wall): {o['wall_s'] / bare_sum:.2f}")
    if "daemon_two" in r and "daemon_one" in r:
        rows.append(f"two at once / one at a time (throughput): "
                    f"{r['daemon_two']['throughput'] / r['daemon_one']['throughput']:.2f}")
    for key in ("daemon_one", "daemon_two"):
        for n, peaks in enumerate(r.get(key, {}).get("peak_rss_mib_by_stage", []), 1):
            rows.append(f"{key.replace('_', ' ')}, worker {n}, peak RSS by stage (MiB): "
                        + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
    if o:
        rows.append("stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in o["stages_s"].items()))
    return "\n".join(rows)


RUNS = ("bare", "oneshot", "busy", "one", "two")
DEFAULT_RUNS = ("bare", "oneshot", "one", "two")


def _runs(text: str) -> tuple[str, ...]:
    chosen = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = set(chosen) - set(RUNS)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {','.join(RUNS)}, not {text!r}")
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--input", type=Path)
    ap.add_argument("--model", default="base")
    ap.add_argument("--runs", type=_runs, default=DEFAULT_RUNS,
                    help=f"comma-separated subset of {','.join(RUNS)} (default: {','.join(DEFAULT_RUNS)}; "
                         "busy repeats the slowest runs, so it is asked for)")
    ap.add_argument("--profile", action="store_true", help="cProfile each stage of the one-shot run (<results>/profile/<stage>.prof)")
    ap.add_argument("--out", type=Path, help="results JSON (default: bench/results/<timestamp>.json)")
    ap.add_argument("--config", type=Path, help="a diarized.toml for our runs (default: none, the shipped defaults)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder for results, plots and inputs")
    args = ap.parse_args()
    from diarized.models import resolve_whisper
    from diarized.pipeline.media import probe

    results = args.results
    results.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="diarized-bench-"))
    cache = Path(tempfile.gettempdir()) / "diarized-bench-models"
    inputs = Path(__file__).parent / "inputs" if results == RESULTS else results / "inputs"
    media = args.input or build_input(args.minutes, inputs)
    config = str(args.config.resolve()) if args.config else ""
    threads = psutil.cpu_count()
    result = {"machine": {"cpus": threads, "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
                          "python": platform.python_version(), "processor": platform.processor()},
              "model": args.model, "config": config, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "input": {"path": str(media), "duration_s": probe(media).duration}}
    if "bare" in args.runs:
        result["bare"] = run_bare(resolve_whisper(args.model, cache), media, threads)
    if "oneshot" in args.runs:
        result["oneshot"] = run_oneshot(media, args.model, cache, work, results if args.profile else None, config)
    if "busy" in args.runs:
        result["busy"] = run_busy(resolve_whisper(args.model, cache), media, threads, args.model, cache, work, config)
    if "one" in args.runs:
        result["daemon_one"] = run_daemon([media], args.model, cache, work / "d1", config)
    if "two" in args.runs:
        second = args.input or build_input(args.minutes, inputs, rotate=5)
        result["daemon_two"] = run_daemon([media, second], args.model, cache, work / "d2", config)
        png = results / f"{time.strftime('%Y%m%d-%H%M%S')}-two-at-once.png"
        from diarized.config import Settings

        plot(result["daemon_two"]["series"], Settings(max_workers=2).per_worker_memory_gb, png)
        result["plot"] = str(png)
    out = args.out or results / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"\nresults: {out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
