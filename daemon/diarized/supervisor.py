"""Scheduling and worker lifecycle: at most max_workers isolated workers, within budget.

The supervisor process never imports torch, numpy, PyAV or the pipeline (a
test checks its memory map): it stays small, starts fast and survives whatever
a model or a crafted file does to a worker. Each worker is its own process
session (killable as a group) with its own thread budget. Decisions per tick:
take complete inbox files, honour cancellations, reap finished workers (publish,
retry or fail), enforce memory and time limits, start queued jobs that fit.
The supervisor decides; lifecycle.py makes each job transition happen.

Several nodes may share one PostgreSQL store and one state folder. Each node runs
only the jobs it claimed, under a lease its workers renew; the one node holding
the inbox (store.hold_inbox) also takes new files, cancels queued jobs and
requeues the jobs of nodes whose leases ran out. A node that finds its lease
taken over (LeaseLost) drops the job: the other node's run publishes it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

from diarized import outbox, retention, state_root
from diarized.config import Settings, settings_to_json
from diarized.files import describe_space, remove_temporaries, space_problem, write_text
from diarized.inbox import Inbox
from diarized.lifecycle import Lifecycle, holding
from diarized.options import model_of
from diarized.store import (Job, JobStore, LeaseLost, State, StoreUnavailable, boot_id, safe_location,
                            storage_trouble)
from diarized.worker import WorkerExit

log = logging.getLogger("diarized.supervisor")

TICK_SECONDS = 0.5
RSS_RECORD_SECONDS = 5.0
# Admission estimate of a worker's peak RSS: models + runtime, plus the audio.
# Measured with base (README, Performance; `python -m bench`): 1.67-1.83 GiB per
# worker on 30 minutes, 2.10-2.40 GiB on 120 (the memory-mapped audio is 0.23 GiB
# per hour of it). The estimate stays ~0.4 GiB above those peaks.
WORKER_BASE_GB = {"tiny.en": 1.8, "base": 2.0}
WORKER_GB_PER_AUDIO_HOUR = 0.4
MAX_BACKOFF_SECONDS = 3600.0
START_RETRY_SECONDS = 2.0  # a start refused by a full disk is tried again this often
COUNT_SECONDS = 5.0  # the queue's length in status and sd_notify is this fresh
ROLE_TRUST_SECONDS = 2.0  # a renewal of the inbox role (a 10-s lease) is trusted this long
ROLE_RENEW_SECONDS = 1.0  # the holder renews the role this often
ROLE_ASK_SECONDS = 2.0  # the other nodes ask for it this often
QUEUE_POLL_SECONDS = 5.0  # the queue is read at least this often without a notification
STATUS_SECONDS = 2.0  # this node's row (its heartbeat for `status`) is written this often, or on a change
EXPIRY_CHECK_SECONDS = 2.0  # how often each node looks for other nodes' expired job leases
# Until its worker has decoded a file, its duration is unknown (the supervisor
# never opens media). Guess it from the size at 16 kB/s (128 kbit/s audio; video
# and uncompressed audio are larger per second, so this over-estimates them),
# capped at four hours: the estimate errs on the safe side and a lone job always runs.
GUESS_BYTES_PER_SECOND = 16_000
GUESS_MAX_SECONDS = 4 * 3600.0

WorkerCommand = Callable[[Job, Path, int], list[str]]


def worker_command(job: Job, settings_file: Path, threads: int) -> list[str]:
    """The real worker; tests give the supervisor small fake workers instead."""
    return [sys.executable, "-m", "diarized.worker", job.id, "--settings", str(settings_file),
            "--threads", str(threads), "--supervisor-pid", str(os.getpid()), "--lease", str(job.lease_generation)]


class AlreadyRunning(RuntimeError):
    """The state root is locked by another supervisor."""


def audio_seconds(job: Job) -> float:
    """The decoded duration once a worker knows it, else a guess from the file size."""
    if job.duration:
        return job.duration
    return min(GUESS_MAX_SECONDS, job.size / GUESS_BYTES_PER_SECOND)


def estimate_peak_gb(model: str, seconds: float) -> float:
    base = WORKER_BASE_GB.get(model, 4.0)
    return base + WORKER_GB_PER_AUDIO_HOUR * seconds / 3600.0


def job_timeout(seconds: float, unit_timeout: float) -> float:
    """Whole-job limit: generous (real-time factor 2) but finite."""
    return max(3 * unit_timeout, 900.0 + 2.0 * seconds)


def tree_cpu(proc: psutil.Process) -> float:
    """CPU % of the worker since the previous call on the same Process object (100 = one core)."""
    try:
        return proc.cpu_percent(None)
    except psutil.Error:
        return 0.0


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
    last_rss_record: float = float("-inf")
    kill_reason: str | None = None  # set when the supervisor itself ended the worker
    cancel: bool = False
    stopping: bool = False
    # Durations are measured on this process's monotonic clock, never by subtracting the
    # wall-clock times the worker writes (a clock step would make a live job look dead or
    # a dead one live): the supervisor notes *when it saw* each new progress or heartbeat.
    started: float = field(default_factory=time.monotonic)
    progress: "Seen" = field(default_factory=lambda: Seen())
    heartbeat: "Seen" = field(default_factory=lambda: Seen())


@dataclass
class Seen:
    """The last value of a store timestamp the supervisor saw, and when (monotonic) it last changed."""

    value: float | None = None
    at: float = field(default_factory=time.monotonic)

    def look(self, value: float | None, now: float) -> float:
        """Seconds since the value last changed (a worker's write is a sign of life, whatever its clock)."""
        if value != self.value:
            self.value, self.at = value, now
        return now - self.at


@dataclass
class Notifier:
    """Hooks for the service manager (systemd.py); no-ops off systemd."""

    ready: Callable[[], None] = lambda: None
    status: Callable[[str], None] = lambda text: None
    watchdog: Callable[[], None] = lambda: None
    stopping: Callable[[float], None] = lambda seconds: None
    paused: Callable[[str | None], None] = lambda reason: None  # the reason, or None on resume


@dataclass
class Supervisor:
    settings: Settings
    store: JobStore
    notifier: Notifier = field(default_factory=Notifier)
    worker_command: WorkerCommand = worker_command
    running: dict[str, Running] = field(default_factory=dict)
    stop_requested: bool = False
    paused: str | None = None  # why the store or the disk cannot be written; None when all is well
    inbox_held: bool = False  # this node scans the inbox and looks after the other nodes' leases

    def __post_init__(self) -> None:
        self.inbox = Inbox(self.settings, self.store)
        self.lifecycle = Lifecycle(self.settings, self.store)
        self.node = self.settings.node_id
        self.settings_file = self.settings.node_dir / "worker-settings.json"
        self.started_at = time.time()
        self._lock = None
        self._counted: tuple[int, float] = (0, float("-inf"))  # (queued, when counted)
        self._swept = float("-inf")  # when retention last looked (monotonic)
        self._inbox_renewed = float("-inf")  # when the inbox role was last asked for (monotonic)
        self._expiry_checked = float("-inf")  # when other nodes' leases were last looked at (monotonic)
        self._queue_read = float("-inf")  # when the queue was last read for claimable jobs (monotonic)
        self._more_queued = True  # the last read filled every free slot: read again when one frees
        self._status_at = float("-inf")  # when this node's row was last written (monotonic)
        self._status_shown: tuple = ()  # what that row said: a change is written at once
        self.woken = True  # store.changes() said so this tick (a job became claimable or asked to cancel)
        self.rows: dict[str, Job] = {}  # this tick's read of this node's running jobs

    # -- start ------------------------------------------------------------------
    def prepare(self) -> None:
        """Folders, the state-root lock and the workers' settings file (again after a full disk refused it)."""
        for folder in self.settings.folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        if self._lock is None:
            self.lock_state_dir()
            state_root.check(self.settings, self.store)
        remove_temporaries(self.settings_file.parent)
        write_text(self.settings_file, settings_to_json(self.settings), mode=0o600)

    def lock_state_dir(self) -> None:
        """One supervisor per node: a second one's recovery would kill the first's workers.

        The node's folder lock (state/ itself for SQLite, state/nodes/<node>/ for PostgreSQL),
        then the store's own claim, which also holds across machines sharing the folder.
        """
        lock = (self.settings.node_dir / "daemon.lock").open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            lock.close()
            raise AlreadyRunning(f"another diarized (pid {holder}) is running as node {self.node} "
                                 f"on {self.settings.state_dir}; stop it first") from None
        try:
            lock.truncate(0)
            lock.write(str(os.getpid()))
            lock.flush()
        except OSError:
            pass  # the pid is for messages; a full disk must not keep the lock from being held
        if not self.store.claim_node(self.node):
            lock.close()
            raise AlreadyRunning(f"another diarized already runs as node {self.node!r} on the job store "
                                 f"{safe_location(self.settings.store_location)}; stop it, or give this "
                                 "one its own node_id") from None
        self._lock = lock

    def recover(self) -> list[str]:
        """Jobs this node left `running` when it died: stop leftovers, then requeue or publish.

        Running jobs of other nodes are theirs while their leases last (take_over_expired).
        """
        notes = self.kill_leftover_workers()
        for job in self.store.jobs(states=(State.RUNNING,)):
            if self.ran(job):
                self.guarded(job.id, "recovering", lambda job=job: notes.append(self._recover_one(job)))
        notes += self.take_inbox()
        notes += self.lifecycle.repair()
        for note in notes:
            log.info("recovery: %s", note)
        return notes

    def _recover_one(self, job: Job) -> str:
        job = self.lifecycle.orphaned(job, "the daemon stopped while it ran")
        return f"{job.id}: " + {State.QUEUED: "requeued", State.SUCCEEDED: "was published before the crash; "
                                "marked succeeded"}.get(job.state, str(job.state))

    def ran(self, job: Job) -> bool:
        """Was `job` claimed by this node (by any, on SQLite: one node per store, whatever its name)?"""
        return self.settings.store_is_file or job.node in (self.node, None)

    def take_inbox(self) -> list[str]:
        """Hold the inbox role if it is free; on taking it, finish what the last holder left."""
        asked = time.monotonic()
        held, self.inbox_held = self.inbox_held, self.store.hold_inbox(self.node)
        self._inbox_renewed = asked
        if held or not self.inbox_held:
            return []
        log.info("node %s now scans the inbox %s", self.node, self.settings.inbox)
        return self.inbox.intake.reconcile()

    def holds_inbox(self) -> bool:
        """Held at its last renewal, and that renewal is recent by this machine's monotonic clock.

        A node stopped (SIGSTOP, a VM pause) past the role's lease resumes mid-tick: another
        node may hold the inbox by then, so it does not scan until it has renewed again.
        """
        return self.inbox_held and time.monotonic() - self._inbox_renewed < ROLE_TRUST_SECONDS

    def look_for_expired_leases(self) -> None:
        """Every node, every few seconds: a node that stopped renewing is taken over by whoever sees it
        first (each take-over is fenced by the lease generation, so two nodes seeing it at once make one)."""
        now = time.monotonic()
        if now - self._expiry_checked < EXPIRY_CHECK_SECONDS:
            return
        self._expiry_checked = now
        self.take_over_expired(self.store.expired_leases())

    def take_over_expired(self, expired: list[Job]) -> None:
        """Requeue (or finish publishing) the running jobs of other nodes whose leases ran out."""
        for job in expired:
            if job.node == self.node:
                continue  # ours: enforce_limits kills its silent worker, settle requeues it
            reason = f"node {job.node} stopped renewing its lease"
            log.warning("%s: %s; taking it over", job.id, reason, extra={"job_id": job.id})
            self.guarded(job.id, "taking over", lambda job=job: self.lifecycle.orphaned(job, reason))

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

    def when_space(self, step: Callable[[], object]) -> bool:
        """Run a start-up step, again every few seconds while the disk or the store refuses it
        (PAUSED meanwhile, ready for systemd); False if a stop came first."""
        while not self.stop_requested:
            try:
                step()
            except (StoreUnavailable, OSError) as exc:
                if not storage_trouble(exc):
                    raise
                self.pause(f"while starting: {describe_space(self.settings.state_dir, exc)}")
                self.notifier.ready()
                time.sleep(START_RETRY_SECONDS)
                continue
            if self.paused:
                self.resume()
            return True
        return False

    def run_forever(self) -> None:
        self.install_signal_handlers()
        if not self.when_space(self.start):
            return
        try:
            while not self.stop_requested:
                self.guarded_tick()
                time.sleep(TICK_SECONDS)
        finally:
            self.shutdown()

    def guarded_tick(self) -> None:
        """A tick; a full disk or an unwritable store pauses the daemon instead of ending it."""
        try:
            self.tick()
        except (StoreUnavailable, OSError) as exc:
            if not storage_trouble(exc):
                raise
            self.pause(str(exc))
        else:
            if self.paused and self.space_returned():
                self.resume()

    def tick(self) -> None:
        self.woken = self.store.changes() or self.woken
        if not self.paused and self.role_due():
            for note in self.take_inbox():
                log.info("inbox take-over: %s", note)
        if not self.paused and self.holds_inbox():
            self.inbox.tick()
            self.sweep()
        if not self.paused and not self.settings.store_is_file:
            self.look_for_expired_leases()
        self.rows = self.running_rows()
        self.handle_cancellations()
        self.reap()
        self.enforce_limits()
        if not self.stop_requested and not self.paused:
            self.admit()
        self.publish_status()
        self.woken = False

    def role_due(self) -> bool:
        """The holder renews the inbox role every second (its lease is 10 s); the others ask every 2 s."""
        return time.monotonic() - self._inbox_renewed >= (ROLE_RENEW_SECONDS if self.inbox_held else ROLE_ASK_SECONDS)

    def queue_due(self) -> bool:
        """Read the queue only when something may have changed: a notification (store.changes()), or
        every QUEUE_POLL_SECONDS for waits that end by time (backoffs) and notifications missed."""
        return self.woken or time.monotonic() - self._queue_read >= QUEUE_POLL_SECONDS

    def running_rows(self) -> dict[str, Job]:
        """This node's running jobs as the store has them, in one read a tick (not one per job)."""
        if not self.running:
            return {}
        return {j.id: j for j in self.store.jobs(states=(State.RUNNING,)) if j.id in self.running}

    def row(self, job_id: str) -> Job:
        """A running job's row from this tick's read; read alone if it left `running` (taken over)."""
        return self.rows.get(job_id) or self.store.get(job_id)

    def sweep(self) -> None:
        """Every SWEEP_SECONDS, by the inbox's holder: work folders late workers left after a success,
        and the files of finished jobs past retention_days."""
        now = time.monotonic()
        if now - self._swept < retention.SWEEP_SECONDS:
            return
        self._swept = now
        for job_id in self.lifecycle.sweep_leftovers(self.settings.lease_seconds * 2):
            log.info("%s: removed a work folder a late worker left after the job succeeded", job_id,
                     extra={"job_id": job_id})
        if self.settings.retention_days <= 0:
            return
        expired = retention.expire(self.settings, self.store)
        if expired:
            log.info("retention: removed the files of %d job(s) older than %g days", len(expired),
                     self.settings.retention_days)

    def pause(self, reason: str) -> None:
        """Take no new work, keep the running jobs (and their rows) as they are, try again each tick."""
        if self.paused is None:
            log.error("paused: cannot write the store or the state folder (%s); running jobs go on, "
                      "nothing new is taken until this clears", reason)
            self.notifier.paused(reason)
        self.paused = reason
        self.notifier.status(f"PAUSED: {reason} ({len(self.running)} running)")
        self.notifier.watchdog()  # alive and deliberate, not hung

    def space_returned(self) -> bool:
        """A probe: can a MiB be written and synced in the job folders again? (the store worked this tick)"""
        return space_problem(self.settings.jobs_dir) is None

    def resume(self) -> None:
        log.info("resumed: the store and the state folder can be written again")
        self.paused = None
        self.notifier.paused(None)

    # -- admission ---------------------------------------------------------------------
    def memory_in_use_gb(self) -> float:
        return sum(max(r.estimate_gb, r.rss / 2**30) for r in self.running.values())

    def admit(self) -> None:
        """Start the best queued jobs that fit; reads only as many as there are free slots."""
        free = self.settings.max_workers - len(self.running)
        if free <= 0 or not (self.queue_due() or self._more_queued):
            return
        self._queue_read = time.monotonic()
        waiting = self.store.claimable(limit=free)
        self._more_queued = len(waiting) >= free  # a full page: more may wait for the next free slot
        for index, job in enumerate(waiting):
            if len(self.running) >= self.settings.max_workers:
                return
            need = estimate_peak_gb(model_of(job, self.settings), audio_seconds(job))
            left = self.settings.max_memory_gb - self.memory_in_use_gb()
            if self.running and need > left:
                return  # wait for memory; a lone job always runs, or it would starve
            claimed = self.store.claim(job.id, self.node, self.settings.lease_seconds)
            if claimed is not None:
                try:
                    self.spawn(claimed, need, self.threads_for(len(waiting) - index))
                except OSError as exc:  # fork refused, the job folder unwritable: not the daemon's end
                    if storage_trouble(exc):
                        raise
                    reason = f"could not start a worker: {exc}"
                    log.error("%s: %s", job.id, reason, extra={"job_id": job.id})
                    self.guarded(job.id, "requeueing", lambda: self.lifecycle.retry_or_fail(
                        claimed, reason, spend_attempt=True, backoff=self.backoff(claimed.attempts)))

    def threads_for(self, waiting: int) -> int:
        """Split the cores among the jobs that will run together, not among max_workers.

        A job that starts alone gets every core (one file through the daemon is then as
        fast as the one-shot); jobs admitted together split them. A job that arrives
        while a lone job runs gets what is left, at least one thread, and the lone job
        gives its extra threads back within seconds: each worker re-measures the free
        cores between batches (allocator.CoreShare) and never runs more threads than that.
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
                self.worker_command(job, self.settings_file, threads),
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, env=env, close_fds=True)
        self.running[job.id] = Running(job, proc, psutil.Process(proc.pid), estimate_gb, threads)
        self.store.set_worker(job.id, proc.pid, threads, model_of(job, self.settings))
        log.info("%s: started worker %d for %s", job.id, proc.pid, job.source_name,
                 extra={"job_id": job.id, "file": job.source_name})

    # -- limits --------------------------------------------------------------------------
    def enforce_limits(self) -> None:
        """Memory, progress and whole-job limits, and this node's workers that went silent.

        Every duration is on the monotonic clock (Running): a wall-clock step of an hour back
        or a day forward neither kills a live job nor spares a hung one.
        """
        now = time.monotonic()
        limit = self.settings.per_worker_memory_gb
        for job_id, run in list(self.running.items()):
            if run.kill_reason or run.proc.poll() is not None:
                continue
            run.rss = tree_rss(run.ps)
            run.peak_rss = max(run.peak_rss, run.rss)
            if now - run.last_rss_record >= RSS_RECORD_SECONDS:
                self.store.record_sample(job_id, run.proc.pid, run.rss / 2**20, tree_cpu(run.ps),
                                         peak_mb=run.peak_rss / 2**20)
                run.last_rss_record = now
            if run.rss / 2**30 > limit:
                self.kill(run, f"memory limit exceeded ({run.rss / 2**30:.1f} GiB > {limit:.1f} GiB)")
                continue
            job = self.row(job_id)
            idle = run.progress.look(job.progress_at, now)
            silent = run.heartbeat.look(job.heartbeat_at, now)
            allowed = job_timeout(audio_seconds(job), self.settings.unit_timeout_seconds)
            if idle > self.settings.unit_timeout_seconds:
                self.kill(run, f"timeout: no progress for {idle:.0f} s in stage {job.stage}")
            elif silent > self.settings.lease_seconds:
                self.kill(run, f"lease expired: no heartbeat from the worker for {silent:.0f} s")
            elif now - run.started > allowed:
                self.kill(run, f"timeout: job ran longer than {allowed:.0f} s")

    def kill(self, run: Running, reason: str) -> None:
        run.kill_reason = reason
        log.warning("%s: killing worker %d: %s", run.job.id, run.proc.pid, reason,
                    extra={"job_id": run.job.id})
        self.store.event(run.job.id, "killed", reason)
        _kill_group(run.proc.pid)

    def kill_leftover_workers(self) -> list[str]:
        """At start, every worker of this state root is a previous supervisor's: killed.

        A worker carries this root's settings file on its command line; the lock means no
        live supervisor owns it. Those a running job names are its leftovers; the others
        were spawned just before a crash, before their job recorded them.
        """
        named = {j.worker_pid: j.id for j in self.store.jobs(states=(State.RUNNING,)) if j.worker_pid and self.ran(j)}
        notes = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if proc.pid == os.getpid() or str(self.settings_file) not in cmdline or "--settings" not in cmdline:
                continue
            _kill_group(proc.pid)
            try:
                proc.kill()
            except psutil.Error:
                pass
            job_id = named.get(proc.pid)
            notes.append(f"{job_id}: killed leftover worker {proc.pid}" if job_id in cmdline
                         else f"killed worker {proc.pid} that no job named ({' '.join(cmdline[-6:])})")
        return notes

    def handle_cancellations(self) -> None:
        """Queued jobs are cancelled by the inbox's node (one node: no double cancel), running ones
        by the node that runs them."""
        for job in self.store.cancel_requests() if self.inbox_held and self.queue_due() else []:
            self.guarded(job.id, "cancelling", lambda job=job: self.lifecycle.cancel(job))
        for job_id, run in self.running.items():
            if not run.cancel and self.row(job_id).cancel_requested:
                run.cancel = True
                self.kill(run, "cancelled by the operator")

    # -- reaping --------------------------------------------------------------------------
    def reap(self) -> None:
        """Settle every exited worker; one whose settling the store refuses stays for the next tick."""
        for job_id, run in list(self.running.items()):
            code = run.proc.poll()
            if code is None:
                continue
            self.store.record_rss(job_id, run.peak_rss / 2**20)
            try:
                self.settle(run, code)
            except LeaseLost as exc:
                self.drop(run, exc)
            except Exception as exc:  # noqa: BLE001 - one job must never stop the daemon
                if storage_trouble(exc):
                    raise  # the whole daemon pauses; this worker is settled after it resumes
                reason = f"could not finish: {exc}"
                log.error("%s: %s", job_id, reason, extra={"job_id": job_id})
                self.guarded(job_id, "retrying", lambda: self.lifecycle.retry_or_fail(
                    self.current(run), reason, spend_attempt=True, backoff=self.backoff(run.job.attempts)))
            del self.running[job_id]

    def current(self, run: Running) -> Job:
        """The job as the store has it now, if this node still holds its lease; else LeaseLost."""
        return holding(self.store, run.job.id, run.job.lease_generation)

    def drop(self, run: Running, exc: LeaseLost) -> None:
        """Another node took the job over while this one ran or published it: the rest is that node's."""
        log.warning("%s: left to the node that holds it now: %s", run.job.id, exc, extra={"job_id": run.job.id})
        self.guarded(run.job.id, "noting the lost lease",
                     lambda: self.store.event(run.job.id, "lease_lost", f"node {self.node}: {exc}"))

    def guarded(self, job_id: str, what: str, action: Callable[[], object]) -> None:
        """Run one job's step; if it breaks (not the disk), log it and go on with the others.

        Whatever is left half-done is repaired by recovery at the next start (lifecycle.repair).
        """
        try:
            action()
        except LeaseLost as exc:
            log.warning("%s: %s skipped: %s", job_id, what, exc, extra={"job_id": job_id})
        except Exception as exc:  # noqa: BLE001
            if storage_trouble(exc):
                raise
            log.error("%s: %s failed: %s; left for recovery at the next start", job_id, what, exc,
                      extra={"job_id": job_id})

    def settle(self, run: Running, code: int) -> None:
        """Decide what a worker's exit means; the lifecycle carries it out."""
        job = self.current(run)
        clean = not run.kill_reason
        if run.cancel:
            self.lifecycle.cancel(job)
        elif code == WorkerExit.OK and clean:
            done = self.lifecycle.succeed(job)
            log.info("%s: succeeded -> %s", job.id, done.output_dir, extra={"job_id": job.id})
        elif code == WorkerExit.INTERRUPTED and clean:
            self.lifecycle.retry_or_fail(job, "stopped at a checkpoint", spend_attempt=False)
        elif code == WorkerExit.NO_SPACE and clean:
            self.lifecycle.retry_or_fail(job, "no space to write its work", spend_attempt=False)
            self.pause(f"{job.source_name}: its worker could not write to {self.settings.state_dir} "
                       "(no space left?)")
        elif code == WorkerExit.BAD_INPUT and clean:
            self.lifecycle.fail(job, job.error_type or "BadInput", job.error or "bad input",
                                job.hint or "see error.json")
        elif run.stopping and clean:
            self.lifecycle.retry_or_fail(job, _exit_reason(code, job), spend_attempt=False)
        else:
            self.lifecycle.retry_or_fail(job, run.kill_reason or _exit_reason(code, job),
                                         spend_attempt=True, backoff=self.backoff(job.attempts))

    def backoff(self, attempts: int) -> float:
        """Doubling after each failed attempt, at most an hour."""
        return min(MAX_BACKOFF_SECONDS, self.settings.retry_backoff_seconds * 2 ** max(0, min(attempts - 1, 30)))

    # -- status and stop ------------------------------------------------------------------
    def queued_count(self) -> int:
        """The queue's length, counted at most every COUNT_SECONDS (a count reads every queued row's index
        entry: with 100,000 queued, twice a second would be most of the idle supervisor's time)."""
        now = time.monotonic()
        if now - self._counted[1] >= COUNT_SECONDS:
            self._counted = (self.store.counts().get(State.QUEUED, 0), now)
        return self._counted[0]

    def publish_status(self, state: str = "running") -> None:
        queued = self.queued_count()
        used = sum(r.rss for r in self.running.values()) / 2**30
        if self._status_due(state, queued):
            self._write_status(state, queued, used)
        self.notifier.status(f"{len(self.running)} running, {queued} queued, "
                             f"{used:.1f}/{self.settings.max_memory_gb:.0f} GiB")
        self.notifier.watchdog()

    def _status_due(self, state: str, queued: int) -> bool:
        """Every STATUS_SECONDS, or at once when what `status` shows changed (not every tick: each
        write is a transaction, and with many nodes on one database they add up)."""
        shown = (state, queued, len(self.running), self.inbox_held)
        due = shown != self._status_shown or time.monotonic() - self._status_at >= STATUS_SECONDS
        return due or state != "running"

    def _write_status(self, state: str, queued: int, used: float) -> None:
        self._status_shown = (state, queued, len(self.running), self.inbox_held)
        self._status_at = time.monotonic()
        self.store.set_daemon(self.node, host=socket.gethostname(), pid=os.getpid(), started_at=self.started_at,
                              heartbeat_at=time.time(), heartbeat_mono=time.monotonic(), boot_id=boot_id(),
                              workers_busy=len(self.running),
                              workers_total=self.settings.max_workers, memory_used_gb=round(used, 2),
                              memory_budget_gb=self.settings.max_memory_gb, queued=queued, state=state,
                              inbox=self.inbox_held and state == "running")

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
            self.guarded(job_id, "requeueing", lambda run=run: self.lifecycle.retry_or_fail(
                self.current(run), f"the daemon stopped; killed after {self.settings.stop_timeout_seconds:.0f} s",
                spend_attempt=False))
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
