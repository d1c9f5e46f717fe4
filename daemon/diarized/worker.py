"""One job in its own process: `python -m diarized.worker JOB_ID --settings FILE`.

The worker runs the pipeline, reports stage, progress and ETA to the store,
and exits with a code that tells the supervisor what to do next. It never
touches another job, and it publishes nothing: the supervisor does that.
"""

from __future__ import annotations

import argparse
import ctypes
import enum
import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path

HEARTBEAT_SECONDS = 5.0
PROGRESS_EVERY = 1.0


class WorkerExit(enum.IntEnum):
    """What a worker's exit code tells the supervisor to do next."""

    OK = 0  # outputs are in the job's out/: publish
    FAILED = 1  # an error worth another attempt
    BAD_INPUT = 2  # retrying will not help (bad media, missing model): failed/ at once
    INTERRUPTED = 3  # asked to stop; checkpoints are on disk: requeue without spending an attempt
    NO_SPACE = 4  # the disk or the store could not be written: requeue for free, pause until space returns


def die_with_parent(supervisor_pid: int | None) -> None:
    """If the supervisor is killed -9, take this worker down too (no orphans).

    PR_SET_PDEATHSIG only covers a parent that dies after it is set; a supervisor
    killed between this process's exec and this call has already left it with a
    new parent. Checking the parent afterwards closes that window: the worker of
    a dead supervisor exits before it touches its job.
    """
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if supervisor_pid is not None and os.getppid() != supervisor_pid:
        os._exit(WorkerExit.INTERRUPTED)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The worker's command line; the supervisor builds it in supervisor.worker_command."""
    parser = argparse.ArgumentParser(prog="diarized.worker")
    parser.add_argument("job_id")
    parser.add_argument("--settings", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--supervisor-pid", type=int, default=None)
    return parser.parse_args(argv)


class Reporter:
    """Turns runner callbacks into throttled store updates with an ETA."""

    def __init__(self, store, job_id: str):
        self.store, self.job_id = store, job_id
        self.started = time.monotonic()
        self.first_fraction: float | None = None
        self.last_write = 0.0
        self.last_stage = ""

    def progress(self, stage: str, stage_fraction: float, job_fraction: float) -> None:
        now = time.monotonic()
        if self.first_fraction is None:
            self.first_fraction = job_fraction  # a resumed job starts part-way
        if stage == self.last_stage and now - self.last_write < PROGRESS_EVERY:
            return
        self.last_write, self.last_stage = now, stage
        done = job_fraction - self.first_fraction
        eta = (now - self.started) * (1 - job_fraction) / done if done > 0.02 else None
        self._try(self.store.progress, self.job_id, stage, round(job_fraction, 4), eta)

    def event(self, kind: str, detail: str) -> None:
        self._try(self.store.event, self.job_id, kind, detail)

    @staticmethod
    def _try(write, *args) -> None:
        """Progress and events are reports: a store that cannot be written now must not end the job."""
        from diarized.store import StoreUnavailable

        try:
            write(*args)
        except StoreUnavailable:
            pass


def _heartbeat(store, job_id: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            store.heartbeat(job_id)
        except Exception:  # noqa: BLE001 - a busy database must not kill the job
            pass


def run(job_id: str, settings_file: Path, threads: int | None = None) -> WorkerExit:
    from diarized.config import load_settings

    settings = load_settings(None, json.loads(settings_file.read_text()), env={})
    if threads:  # the supervisor's share of the cores for this job
        settings = replace(settings, cpu_threads=threads)
    if not settings.allow_downloads:
        os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported: it reads this once

    from diarized.allocator import keep_freed_memory
    from diarized.models import ModelError
    from diarized.pipeline.media import MediaError
    from diarized.pipeline.runner import Hooks, Interrupted, Runner
    from diarized.store import open_store, storage_trouble
    keep_freed_memory()
    store = open_store(settings.store_location)
    job = store.get(job_id)
    settings = replace(settings, **job.speakers.given())  # hints given with this file win
    stop, beat_stop = threading.Event(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=_heartbeat, args=(store, job_id, beat_stop), daemon=True).start()
    reporter = Reporter(store, job_id)
    hooks = Hooks(progress=reporter.progress, event=reporter.event, should_stop=stop.is_set,
                  decoded=lambda seconds: store.set_duration(job_id, seconds))
    work = settings.jobs_dir / job_id
    try:
        result = Runner(settings, hooks).run(Path(job.source_path), work / "work", work / "out",
                                             display_name=job.source_name)
        for warning in result.warnings:
            store.event(job_id, "warning", warning)
        return WorkerExit.OK
    except Interrupted as exc:
        reporter.event("interrupted", str(exc))
        return WorkerExit.INTERRUPTED
    except MediaError as exc:
        store.record_error(job_id, "BadMedia", f"{job.source_name}: {exc.problem}", exc.hint)
        return WorkerExit.BAD_INPUT
    except ModelError as exc:
        store.record_error(job_id, "ModelMissing", str(exc), "fix the model setting, then "
                           f"`diarizectl retry {job.short_id}`")
        return WorkerExit.BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - reported, then retried by the supervisor
        if storage_trouble(exc):  # the disk or the store, not the job: its checkpoints wait
            reporter.event("interrupted", f"the disk or the store cannot be written: {exc}")
            return WorkerExit.NO_SPACE
        traceback.print_exc()
        store.record_error(job_id, type(exc).__name__, str(exc) or repr(exc),
                           "see worker.log in the job's failed/ folder")
        return WorkerExit.FAILED
    finally:
        beat_stop.set()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    die_with_parent(args.supervisor_pid)
    sys.exit(int(run(args.job_id, args.settings, args.threads)))


if __name__ == "__main__":
    main()
