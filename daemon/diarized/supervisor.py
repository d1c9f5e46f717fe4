"""Scheduling and worker lifecycle: at most max_workers isolated workers, within budget.

The supervisor never imports torch or the models: it stays small, starts fast
and survives whatever a model does to a worker. Each worker is its own process
session (killable as a group) with its own thread budget. Decisions per tick:
take complete inbox files, honour cancellations, reap finished workers (publish,
retry or fail), enforce memory and time limits, start queued jobs that fit.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

from diarized import outbox
from diarized.config import Settings
from diarized.inbox import Inbox
from diarized.pipeline.atomic import write_text
from diarized.store import Job, Store
from diarized.worker import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, settings_to_json

log = logging.getLogger("diarized.supervisor")

TICK_SECONDS = 0.5
RSS_RECORD_SECONDS = 5.0
# Admission estimate of a worker's peak RSS: models + runtime, plus the audio.
# Measured with base (README, Performance; `python -m bench`): 1.67-1.83 GiB per
# worker on 30 minutes, 2.10-2.40 GiB on 120 (the memory-mapped audio is 0.23 GiB
# per hour of it). The estimate stays ~0.4 GiB above those peaks.
WORKER_BASE_GB = {"tiny.en": 1.8, "base": 2.0}
WORKER_GB_PER_AUDIO_HOUR = 0.4
BACKOFF_SECONDS = 30.0


class AlreadyRunning(RuntimeError):
    """The state root is locked by another supervisor."""


def estimate_peak_gb(model: str, duration: float | None) -> float:
    base = WORKER_BASE_GB.get(model, 4.0)
    return base + WORKER_GB_PER_AUDIO_HOUR * (duration or 3600.0) / 3600.0


def job_timeout(duration: float | None, unit_timeout: float) -> float:
    """Whole-job limit: generous (real-time factor 2) but finite."""
    return max(3 * unit_timeout, 900.0 + 2.0 * (duration or 7200.0))


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


@dataclass
class Running:
    job: Job
    proc: subprocess.Popen
    ps: psutil.Process
    estimate_gb: float
    threads: int = 1
    rss: int = 0
    peak_rss: int = 0
    last_rss_record: float = 0.0
    kill_reason: str | None = None  # set when the supervisor itself ended the worker
    cancel: bool = False
    stopping: bool = False


@dataclass
class Notifier:
    """Hooks for the service manager (systemd.py); no-ops off systemd."""

    ready: Callable[[], None] = lambda: None
    status: Callable[[str], None] = lambda text: None
    watchdog: Callable[[], None] = lambda: None
    stopping: Callable[[float], None] = lambda seconds: None


@dataclass
class Supervisor:
    settings: Settings
    store: Store
    notifier: Notifier = field(default_factory=Notifier)
    running: dict[str, Running] = field(default_factory=dict)
    stop_requested: bool = False

    def __post_init__(self) -> None:
        self.inbox = Inbox(self.settings, self.store)
        self.settings_file = self.settings.state_dir / "state" / "worker-settings.json"
        self.started_at = time.time()

    # -- start ------------------------------------------------------------------
    def prepare(self) -> None:
        s = self.settings
        for folder in (s.inbox, s.outbox, s.done, s.failed, s.jobs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.lock_state_dir()
        write_text(self.settings_file, settings_to_json(s))

    def lock_state_dir(self) -> None:
        """One supervisor per state root: a second one's recovery would kill the first's workers."""
        path = self.settings.jobs_dir.parent / "daemon.lock"
        self._lock = path.open("a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            raise AlreadyRunning(f"another diarized (pid {self._lock.read().strip() or '?'}) is running "
                                 f"on {self.settings.state_dir}; stop it first") from None
        self._lock.truncate(0)
        self._lock.write(str(os.getpid()))
        self._lock.flush()

    def recover(self) -> list[str]:
        """Jobs left `running` by a dead supervisor: stop leftovers, then requeue or publish."""
        notes = []
        for job in self.store.jobs(states=("running",)):
            leftover = _worker_process(job)
            if leftover is not None:
                _kill_group(leftover.pid)
                notes.append(f"{job.id}: killed leftover worker {leftover.pid}")
            if job.output_dir and outbox._owned_by(Path(job.output_dir), job.id):
                outbox.publish(self.settings, self.store, job)
                notes.append(f"{job.id}: was published before the crash; marked succeeded")
                continue
            job = self.store.requeue(job.id, "the daemon stopped while it ran",
                                     spend_attempt=leftover is None)
            if job.state == "failed":
                outbox.fail_job(self.settings, self.store, job)
            notes.append(f"{job.id}: requeued ({job.state})")
        notes += self.inbox.reconcile()
        for note in notes:
            log.info("recovery: %s", note)
        return notes

    def start(self) -> None:
        self.prepare()
        self.recover()
        self.inbox.start()
        self.notifier.ready()
        log.info("ready: watching %s with up to %d workers, %.1f GiB budget",
                 self.settings.inbox, self.settings.max_workers, self.settings.max_memory_gb)

    # -- the loop ----------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def request_stop(signum, _frame):
            log.info("received %s: finishing", signal.Signals(signum).name)
            self.stop_requested = True
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    def run_forever(self) -> None:
        self.install_signal_handlers()
        self.start()
        try:
            while not self.stop_requested:
                self.tick()
                time.sleep(TICK_SECONDS)
        finally:
            self.shutdown()

    def tick(self) -> None:
        for job_id in self.inbox.tick():
            job = self.store.get(job_id)
            log.info("%s: %s %s", job.id, job.state, job.source_name,
                     extra={"job_id": job.id, "file": job.source_name})
        self.handle_cancellations()
        self.reap()
        self.enforce_limits()
        if not self.stop_requested:
            self.admit()
        self.publish_status()

    # -- admission ---------------------------------------------------------------------
    def memory_in_use_gb(self) -> float:
        return sum(max(r.estimate_gb, r.rss / 2**30) for r in self.running.values())

    def admit(self) -> None:
        waiting = self.store.claimable()
        for index, job in enumerate(waiting):
            if len(self.running) >= self.settings.max_workers:
                return
            need = estimate_peak_gb(self.settings.model, job.duration)
            left = self.settings.max_memory_gb - self.memory_in_use_gb()
            if self.running and need > left:
                return  # wait for memory; a lone job always runs, or it would starve
            claimed = self.store.claim(job.id)
            if claimed is not None:
                self.spawn(claimed, need, self.threads_for(len(waiting) - index))

    def threads_for(self, waiting: int) -> int:
        """Split the cores among the jobs that will run together, not among max_workers.

        A job that starts alone gets every core (one file through the daemon is then as
        fast as the one-shot); jobs admitted together split them. CTranslate2 and torch
        fix their pools at load time, so a job that arrives while a lone job runs gets
        what is left, at least one thread: briefly one thread more than cores.
        """
        if self.settings.cpu_threads > 0:
            return self.settings.cpu_threads
        cores = os.cpu_count() or 1
        together = min(self.settings.max_workers, len(self.running) + waiting)
        used = sum(r.threads for r in self.running.values())
        return max(1, min(cores // max(1, together), cores - used))

    def spawn(self, job: Job, estimate_gb: float, threads: int) -> None:
        work = outbox.job_dir(self.settings, job.id)
        work.mkdir(parents=True, exist_ok=True)
        # telemetry and hub access are switched off inside the worker itself
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "JOB_ID": job.id}
        with (work / "worker.log").open("ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "diarized.worker", job.id, "--settings", str(self.settings_file),
                 "--threads", str(threads)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, env=env, close_fds=True)
        self.running[job.id] = Running(job, proc, psutil.Process(proc.pid), estimate_gb, threads)
        self.store.set_worker(job.id, proc.pid, threads)
        log.info("%s: started worker %d for %s", job.id, proc.pid, job.source_name,
                 extra={"job_id": job.id, "file": job.source_name})

    # -- limits --------------------------------------------------------------------------
    def enforce_limits(self) -> None:
        now = time.time()
        limit = self.settings.per_worker_memory_gb
        for job_id, run in list(self.running.items()):
            if run.kill_reason or run.proc.poll() is not None:
                continue
            run.rss = tree_rss(run.ps)
            run.peak_rss = max(run.peak_rss, run.rss)
            if now - run.last_rss_record >= RSS_RECORD_SECONDS:
                self.store.record_rss(job_id, run.peak_rss / 2**20)
                run.last_rss_record = now
            if run.rss / 2**30 > limit:
                self.kill(run, f"memory limit exceeded ({run.rss / 2**30:.1f} GiB > {limit:.1f} GiB)")
                continue
            job = self.store.get(job_id)
            idle = now - (job.progress_at or job.started_at or now)
            allowed = job_timeout(job.duration, self.settings.unit_timeout_seconds)
            if idle > self.settings.unit_timeout_seconds:
                self.kill(run, f"timeout: no progress for {idle:.0f} s in stage {job.stage}")
            elif job.started_at and now - job.started_at > allowed:
                self.kill(run, f"timeout: job ran longer than {allowed:.0f} s")

    def kill(self, run: Running, reason: str) -> None:
        run.kill_reason = reason
        log.warning("%s: killing worker %d: %s", run.job.id, run.proc.pid, reason,
                    extra={"job_id": run.job.id})
        self.store.event(run.job.id, "killed", reason)
        _kill_group(run.proc.pid)

    def handle_cancellations(self) -> None:
        for job in self.store.jobs(states=("queued",)):
            if job.cancel_requested:
                job = self.store.mark_cancelled(job.id, job.source_path)
                outbox.fail_job(self.settings, self.store, job)
        for job_id, run in self.running.items():
            if not run.cancel and self.store.get(job_id).cancel_requested:
                run.cancel = True
                self.kill(run, "cancelled by the operator")

    # -- reaping --------------------------------------------------------------------------
    def reap(self) -> None:
        for job_id, run in list(self.running.items()):
            code = run.proc.poll()
            if code is None:
                continue
            del self.running[job_id]
            self.store.record_rss(job_id, run.peak_rss / 2**20)
            try:
                self.settle(run, code)
            except OSError as exc:  # e.g. disk full while publishing: try again later
                log.error("%s: could not settle: %s", job_id, exc, extra={"job_id": job_id})
                self.store.requeue(job_id, f"publishing failed: {exc}", spend_attempt=True,
                                   backoff=BACKOFF_SECONDS)

    def settle(self, run: Running, code: int) -> None:
        job = self.store.get(run.job.id)
        if run.cancel:
            outbox.fail_job(self.settings, self.store, self.store.mark_cancelled(job.id, job.source_path))
        elif code == EXIT_OK and not run.kill_reason:
            done = outbox.publish(self.settings, self.store, job)
            log.info("%s: succeeded -> %s", job.id, done.output_dir, extra={"job_id": job.id})
        elif code == EXIT_INTERRUPTED and not run.kill_reason:
            self.store.requeue(job.id, "stopped at a checkpoint", spend_attempt=False)
        elif code == EXIT_BAD_INPUT and not run.kill_reason:
            failed = self.store.fail(job.id, job.error_type or "BadInput", job.error or "bad input",
                                     job.hint or "see error.json")
            outbox.fail_job(self.settings, self.store, failed)
        else:
            reason = run.kill_reason or _exit_reason(code, job)
            if run.stopping and not run.kill_reason:
                job = self.store.requeue(job.id, reason, spend_attempt=False)
            else:
                job = self.store.requeue(job.id, reason, spend_attempt=True,
                                         backoff=self.backoff(job.attempts))
            if job.state == "failed":
                outbox.fail_job(self.settings, self.store, job)

    def backoff(self, attempts: int) -> float:
        return self.settings.retry_backoff_seconds * 2 ** max(0, attempts - 1)

    # -- status and stop ------------------------------------------------------------------
    def publish_status(self, state: str = "running") -> None:
        counts = self.store.counts()
        used = sum(r.rss for r in self.running.values()) / 2**30
        self.store.set_daemon(pid=os.getpid(), started_at=self.started_at, heartbeat_at=time.time(),
                              workers_busy=len(self.running), workers_total=self.settings.max_workers,
                              memory_used_gb=round(used, 2), memory_budget_gb=self.settings.max_memory_gb,
                              queued=counts.get("queued", 0), state=state)
        self.notifier.status(f"{len(self.running)} running, {counts.get('queued', 0)} queued, "
                             f"{used:.1f}/{self.settings.max_memory_gb:.0f} GiB")
        self.notifier.watchdog()

    def shutdown(self) -> None:
        """Ask workers to stop at their next checkpoint, wait, then kill; requeue all."""
        self.inbox.stop()
        deadline = time.monotonic() + self.settings.stop_timeout_seconds
        self.notifier.stopping(self.settings.stop_timeout_seconds + 5)
        for run in self.running.values():
            run.stopping = True
            _signal_group(run.proc.pid, signal.SIGTERM)
        while self.running and time.monotonic() < deadline:
            self.reap()
            self.publish_status("stopping")
            time.sleep(0.2)
        for run in list(self.running.values()):
            _kill_group(run.proc.pid)
            run.proc.wait()
        for job_id, run in list(self.running.items()):
            del self.running[job_id]
            self.store.requeue(job_id, f"the daemon stopped; killed after {self.settings.stop_timeout_seconds:.0f} s",
                               spend_attempt=False)
        self.publish_status("stopped")
        log.info("stopped")


def _exit_reason(code: int, job: Job) -> str:
    if code < 0:
        return f"worker killed by signal {signal.Signals(-code).name}"
    if job.error:
        return f"{job.error_type}: {job.error}"
    return f"worker exited with code {code}"


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(pid: int) -> None:
    _signal_group(pid, signal.SIGKILL)


def _worker_process(job: Job) -> psutil.Process | None:
    """The still-running worker of `job`, if a previous supervisor left one behind."""
    if not job.worker_pid:
        return None
    try:
        proc = psutil.Process(job.worker_pid)
        cmdline = proc.cmdline()
    except psutil.Error:
        return None
    return proc if "diarized.worker" in cmdline and job.id in cmdline else None
