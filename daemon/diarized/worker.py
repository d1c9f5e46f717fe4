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
import stat
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

    OK = 0  # outputs are in the job's out.<lease generation>/: publish
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
    parser.add_argument("--lease", type=int, default=None, help="the lease generation it was started under")
    return parser.parse_args(argv)


def lease_is_over(job, lease: int | None) -> bool:
    """The job moved on between the claim and this process's start (another node took it over)."""
    over = lease is not None and not job.runs_under(lease)
    if over:
        print(f"job {job.id} is {job.state} under lease generation {job.lease_generation}, not {lease}: "
              "not running it", file=sys.stderr, flush=True)
    return over


class Reporter:
    """Turns runner callbacks into throttled store updates with an ETA from stage rates (eta.py),
    fenced by the lease, queued (reports.py) so an outage of the store neither loses nor waits."""

    def __init__(self, store, job_id: str, generation: int | None = None, stages: tuple[str, ...] = (),
                 rates=None, model: str = ""):
        from diarized.eta import StageClock
        from diarized.reports import ReportQueue
        from diarized.store import StoreUnavailable

        self.store, self.job_id, self.generation = store, job_id, generation
        self.queue = ReportQueue(StoreUnavailable)
        self.clock = StageClock(stages)
        self.rates, self.model = rates, model  # eta.StageRates: what each stage took here before
        self.last_write = 0.0
        self.last_stage = ""

    def decoded(self, seconds: float) -> None:
        """The audio's length is known: record it, and time the stages to come by this machine's history."""
        self.queue.put(self.store.set_duration, self.job_id, seconds)
        if self.rates is not None:
            self.clock.expect(self.rates.expected(self.model, seconds))

    def learn(self, result) -> None:
        """A whole run (nothing resumed) teaches the stage rates; a resumed one would look too quick."""
        timings, seconds = result.document.get("timings") or {}, result.document.get("total_duration") or 0
        if self.rates is None or result.units_resumed or not timings:
            return
        stages = {s: timings.get(s, 0.0) for s in ("decode", "transcribe", "diarize")}
        stages["write"] = timings.get("merge", 0.0) + timings.get("write", 0.0)
        self.rates.learn(self.model, seconds, stages)

    def progress(self, stage: str, stage_fraction: float, job_fraction: float) -> None:
        now = time.monotonic()
        eta = self.clock.update(now, stage, stage_fraction, job_fraction)  # every report: rates need them all
        if stage == self.last_stage and now - self.last_write < PROGRESS_EVERY:
            return
        self.last_write, self.last_stage = now, stage
        self.queue.put(self.store.progress, self.job_id, stage, round(job_fraction, 4), eta, self.generation,
                       progress=True)

    def event(self, kind: str, detail: str) -> None:
        self.queue.put(self.store.event, self.job_id, kind, detail)

    def error(self, error_type: str, error: str, hint: str) -> None:
        self.queue.put(self.store.record_error, self.job_id, error_type, error, hint)

    def close(self, timeout: float) -> None:
        """Before the exit: the supervisor settles the job on what the store says then."""
        self.queue.close(timeout)


def keep_lease(store, job, lease_seconds: float, done: threading.Event, lost: threading.Event) -> None:
    """Renew the job's lease every few seconds until `done`; set `lost` once the store says it is over.

    A lost lease means another node took the job over (or it was cancelled): this worker stops
    at its next checkpoint and the supervisor drops it. A store that cannot be reached is not a
    lost lease: the job goes on, and the lease has lease_seconds of slack for the outage.
    """
    while not done.wait(HEARTBEAT_SECONDS):
        try:
            if not store.heartbeat(job.id, job.lease_generation, lease_seconds):
                print(f"lease generation {job.lease_generation} of job {job.id} is over: stopping",
                      file=sys.stderr, flush=True)
                lost.set()
                return
        except Exception:  # noqa: BLE001 - a busy or unreachable database must not kill the job
            pass


def not_plain(path: Path) -> bool:
    """Is something other than a regular file at `path` (a link: the decoder would follow it anywhere)?"""
    try:
        return not stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False  # missing: the decoder says so


def open_job(settings, job_id: str):
    """The store and this job, waiting out a store that is briefly away (a database restart).

    The lease allows lease_seconds without a heartbeat, so a worker may wait half of that.
    """
    from diarized.store import StoreUnavailable, open_store

    deadline = time.monotonic() + settings.lease_seconds / 2
    store = None
    while True:
        try:
            store = store or open_store(settings.store_location)
            return store, store.get(job_id)
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(2.0)


def run(job_id: str, settings_file: Path, threads: int | None = None, lease: int | None = None) -> WorkerExit:
    from diarized.config import load_settings

    settings = load_settings(None, json.loads(settings_file.read_text()), env={})
    if threads:  # the supervisor's share of the cores for this job
        settings = replace(settings, cpu_threads=threads)
    if not settings.allow_downloads:
        os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported: it reads this once

    from diarized import outbox
    from diarized.allocator import keep_freed_memory
    from diarized.models import ModelError
    from diarized.pipeline.media import MediaError
    from diarized.eta import StageRates
    from diarized.pipeline.runner import STAGES, Hooks, Interrupted, Runner
    from diarized.store import StoreUnavailable, storage_trouble
    keep_freed_memory()
    try:
        store, job = open_job(settings, job_id)
    except StoreUnavailable as exc:
        print(f"the job store cannot be reached: {exc}", file=sys.stderr, flush=True)
        return WorkerExit.NO_SPACE  # requeued for free once the store is back; the daemon pauses
    if lease_is_over(job, lease):
        return WorkerExit.INTERRUPTED
    from diarized.options import apply

    settings = apply(settings, job)  # hints and options given with this file win
    stop, beat_stop = threading.Event(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=keep_lease, args=(store, job, settings.lease_seconds, beat_stop, stop),
                     daemon=True).start()
    reporter = Reporter(store, job_id, job.lease_generation, STAGES, StageRates(settings.db_path.parent /
                                                                                "stage-rates.json"), settings.model)
    hooks = Hooks(progress=reporter.progress, event=reporter.event, should_stop=stop.is_set,
                  decoded=reporter.decoded)
    work = settings.jobs_dir / job_id
    if not_plain(Path(job.source_path)):  # the service reads only what intake moved in itself
        reporter.error("NotAFile", f"{job.source_name}: {job.source_path} is not a plain file (a "
                       "link or a pipe in its place)", "drop the recording into the inbox again")
        return WorkerExit.BAD_INPUT
    try:
        result = Runner(settings, hooks).run(Path(job.source_path), work / "work",
                                             outbox.outputs_of(settings, job_id, job.lease_generation),
                                             display_name=job.source_name)
        for warning in result.warnings:
            reporter.event("warning", warning)
        reporter.learn(result)
        return WorkerExit.OK
    except Interrupted as exc:
        reporter.event("interrupted", str(exc))
        return WorkerExit.INTERRUPTED
    except MediaError as exc:
        reporter.error("BadMedia", f"{job.source_name}: {exc.problem}", exc.hint)
        return WorkerExit.BAD_INPUT
    except ModelError as exc:
        reporter.error("ModelMissing", str(exc), f"fix the model setting, then `diarizectl retry {job.short_id}`")
        return WorkerExit.BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - reported, then retried by the supervisor
        if storage_trouble(exc):  # the disk or the store, not the job: its checkpoints wait
            reporter.event("interrupted", f"the disk or the store cannot be written: {exc}")
            return WorkerExit.NO_SPACE
        traceback.print_exc()
        reporter.error(type(exc).__name__, str(exc) or repr(exc), "see worker.log in the job's failed/ folder")
        return WorkerExit.FAILED
    finally:
        reporter.close(settings.lease_seconds / 2)  # the lease allows that long without the store
        beat_stop.set()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    die_with_parent(args.supervisor_pid)
    code = run(args.job_id, args.settings, args.threads, args.lease)
    from diarized.allocator import exit_without_collecting

    exit_without_collecting()
    sys.exit(int(code))


if __name__ == "__main__":
    main()
