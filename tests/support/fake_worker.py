"""A stand-in worker for scheduling tests: real process, real store, no models.

Called exactly like diarized.worker (JOB_ID --settings FILE --threads N). What
it does comes from the job's own file, a JSON script, so each test drops files
that say how their worker behaves:

    {"runs": [{"exit": 1}, {"exit": 0}]}   one entry per worker start (the last repeats)
    entry keys: exit (a WorkerExit), seconds (work time, with progress), hang (no progress,
    no heartbeat), allocate_mb (then sleep), ignore_term (SIGTERM does nothing),
    duration (audio seconds to report), error (message for record_error), text (what was "said")

A file that is not such a script succeeds after a short while.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

from diarized.config import load_settings
from diarized.outbox import outputs_of
from diarized.store import open_store, storage_trouble
from diarized.worker import Reporter, WorkerExit, die_with_parent, keep_lease, lease_is_over, parse_args


def script_for(source: Path, run: int) -> dict:
    try:
        runs = json.loads(source.read_text())["runs"]
    except (OSError, ValueError, KeyError, UnicodeDecodeError):
        return {"exit": 0, "seconds": 0.3}
    return runs[min(run, len(runs) - 1)]


def work(store, job, seconds: float, stop: threading.Event) -> bool:
    """Report progress for `seconds` as the real worker does (worker.Reporter: at most once a second
    within a stage, queued while the store is away), so the store sees the real worker's traffic."""
    reporter = Reporter(store, job.id, job.lease_generation, ("transcribe",))
    steps = max(1, int(seconds / 0.1))
    try:
        for step in range(steps):
            if stop.is_set():
                return False
            time.sleep(seconds / steps)
            reporter.progress("transcribe", (step + 1) / steps, (step + 1) / steps)
        return True
    finally:
        reporter.close(5.0)


def document(name: str, script: dict) -> dict:
    """The final_transcription.json a fake run writes (tests compare against it)."""
    text = script.get("text", "Hello there.")
    return {"file_path": name, "total_duration": script.get("duration", 1.0), "language": "en",
            "language_probability": 0.99, "speakers": ["SPEAKER_00"],
            "segments": [{"speaker_id": "SPEAKER_00", "start_time": 0.0, "end_time": 0.8, "text": text,
                          "words": [{"word": "Hello", "start": 0.0, "end": 0.4},
                                    {"word": "there.", "start": 0.4, "end": 0.8}]}]}


def write_outputs(out: Path, job, script: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "final_transcription.json").write_text(json.dumps(document(job.source_name, script)))
    (out / "transcription.txt").write_text(f"{job.source_name}\n")


def main() -> None:
    args = parse_args()
    die_with_parent(args.supervisor_pid)
    settings = load_settings(None, json.loads(args.settings.read_text()), env={})
    store = open_store(settings.store_location)
    job = store.get(args.job_id)
    if lease_is_over(job, args.lease):
        sys.exit(WorkerExit.INTERRUPTED)
    script = script_for(Path(job.source_path), len(store.worker_threads(job.id)) - 1)
    stop = threading.Event()  # SIGTERM, or the lease is over: stop as at a checkpoint
    if not script.get("ignore_term"):
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    else:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not script.get("hang"):
        threading.Thread(target=keep_lease, args=(store, job, settings.lease_seconds, threading.Event(), stop),
                         daemon=True).start()
    store.set_duration(job.id, script.get("duration", 1.0))
    if script.get("allocate_mb"):
        ballast = b"\x01" * (script["allocate_mb"] << 20)  # touched: resident, not just reserved
        time.sleep(60)
        del ballast
    if script.get("hang"):
        time.sleep(3600)
    if not work(store, job, script.get("seconds", 0.3), stop):
        sys.exit(WorkerExit.INTERRUPTED)
    code = WorkerExit(script.get("exit", 0))
    if code == WorkerExit.OK:
        try:
            write_outputs(outputs_of(settings, job.id, job.lease_generation), job, script)
        except OSError as exc:
            if not storage_trouble(exc):
                raise
            sys.exit(WorkerExit.NO_SPACE)
    elif code in (WorkerExit.FAILED, WorkerExit.BAD_INPUT):
        store.record_error(job.id, "FakeError", script.get("error", f"{job.source_name}: scripted failure"),
                           "the test said so")
    sys.exit(int(code))


if __name__ == "__main__":
    main()
