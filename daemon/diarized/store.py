"""The job store: the `JobStore` contract, job states, and its SQLite backend.

Only this module writes SQL. The contract (`JobStore`) says what every backend
guarantees, method by method, the way huey's BaseStorage documents its
backends; tests/store/test_contract.py checks each point against a real
database, and a second backend (PostgreSQL, for several nodes) must pass the
same suite unchanged. States:

    incoming -> queued -> running -> succeeded | failed | cancelled
    incoming -> duplicate   (same content as a live or finished job)
    incoming -> failed      (the file vanished before it was moved)

`incoming` is a job recorded but whose file is not yet moved out of the inbox
(record first, then move: a crash in between is finished at the next start).
A crash or timeout returns a running job to queued with one attempt spent,
until max_attempts; a graceful stop returns it without spending one.

The SQLite backend runs every transition in one BEGIN IMMEDIATE transaction,
so the supervisor, its workers and `diarizectl` (separate processes) never
see a half-made change. Its schema is a list of frozen migrations, each the
literal DDL of its version: a migration is never edited once released, a
change is a new one.
"""

from __future__ import annotations

import enum
import errno
import functools
import json
import os
import re
import secrets
import socket
import sqlite3
import stat
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol

from diarized.runtime import pid_alive

if TYPE_CHECKING:
    from diarized.summary import Summary


class State(enum.StrEnum):
    """A job's place in its lifecycle (see the module docstring for the arrows)."""

    INCOMING = "incoming"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DUPLICATE = "duplicate"


# the seed's words for a job's state (its scripts wait for "completed" or "failed")
SEED_STATUS = {State.INCOMING: "queued", State.QUEUED: "queued", State.RUNNING: "processing",
               State.SUCCEEDED: "completed", State.FAILED: "failed", State.CANCELLED: "cancelled",
               State.DUPLICATE: "duplicate"}
LIVE_STATES = (State.INCOMING, State.QUEUED, State.RUNNING)
DEDUPE_STATES = (*LIVE_STATES, State.SUCCEEDED)
FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED, State.DUPLICATE)


class Priority(enum.IntEnum):
    """The seed's JobPriority; lower runs first."""

    HIGH = 1
    NORMAL = 2
    LOW = 3

    @classmethod
    def parse(cls, text: str) -> "Priority":
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"priority must be high, normal or low, not {text!r}") from None


class NotFound(KeyError):
    """No job with that id (or id prefix)."""


class InvalidTransition(RuntimeError):
    """The job is not in a state that allows this (e.g. cancelling a finished job)."""


class LeaseLost(RuntimeError):
    """This node no longer holds the job's lease: another node took the job over (it expired).

    The holder must drop the job without publishing or changing it: the other node's run wins.
    """


class StoreUnavailable(RuntimeError):
    """The store cannot be written now (disk full, read-only, unreachable); nothing was changed.

    A condition of the whole daemon, not of one job: the supervisor pauses and retries.
    """


STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


def storage_trouble(exc: BaseException) -> bool:
    """A condition of the disk or the store that will pass, not a fault of one job or file."""
    return isinstance(exc, StoreUnavailable) or (isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS)


# SQLite's words for a database it cannot write at the moment (sqlite3.OperationalError)
_UNAVAILABLE = ("disk is full", "readonly database", "disk I/O error", "unable to open database",
                "database is locked")


@dataclass(frozen=True)
class Job:
    id: str
    source_name: str
    sha256: str
    size: int
    priority: int
    state: State
    attempts: int
    max_attempts: int
    stage: str | None
    progress: float
    eta_seconds: float | None
    duration: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    not_before: float
    worker_pid: int | None
    heartbeat_at: float | None
    progress_at: float | None
    peak_rss_mb: float | None
    error: str | None
    error_type: str | None
    hint: str | None
    inbox_path: str | None
    source_path: str | None
    output_dir: str | None
    duplicate_of: str | None
    cancel_requested: int
    processing_seconds: float | None
    supervisor_deaths: int = 0  # consecutive daemon deaths while this job ran
    num_speakers: int | None = None  # per-job speaker hints; None: the configuration's
    min_speakers: int | None = None
    max_speakers: int | None = None
    model: str | None = None  # the Whisper model of its last attempt (metrics by model)
    node: str | None = None  # the lease: which node runs it, under which generation, until when
    lease_generation: int = 0  # +1 at every claim; transitions of a running job are fenced by it
    lease_expires_at: float | None = None  # renewed by the worker's heartbeat; then any node requeues it
    wait_mono: float | None = None  # not_before on the monotonic clock of boot `wait_boot` (clock steps)
    wait_boot: str | None = None
    expired_at: float | None = None  # retention_days removed its files (the row stays, for history)
    language: str | None = None  # what came out (summary.py), once succeeded
    language_probability: float | None = None
    word_count: int | None = None
    speakers_found: list[dict] | None = None  # [{label, name, seconds}] in order of first speech
    options: dict | None = None  # JobOptions given with the file, as settings keys (None: the config's)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", State(self.state))
        for name in ("speakers_found", "options"):
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, json.loads(getattr(self, name)))

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    @property
    def speakers(self) -> "SpeakerHints":
        return SpeakerHints(self.num_speakers, self.min_speakers, self.max_speakers)

    @property
    def priority_name(self) -> str:
        return Priority(self.priority).name.lower()

    def runs_under(self, generation: int) -> bool:
        """Is this the running job of lease `generation`? (No: taken over, requeued or finished.)"""
        return self.state == State.RUNNING and self.lease_generation == generation

    # the seed's names (its callbacks read job.job_id, job.status, job.completed_at)
    @property
    def job_id(self) -> str:
        return self.id

    @property
    def status(self) -> str:
        return SEED_STATUS[self.state]

    @property
    def completed_at(self) -> float | None:
        return self.finished_at

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"priority_name": self.priority_name}


@dataclass(frozen=True)
class SpeakerHints:
    """Speaker hints given with one file (submit flags, a sidecar .toml); None: not given.

    num fixes the count; min is a floor, max a ceiling; max = 0 means no ceiling.
    """

    num: int | None = None
    min: int | None = None
    max: int | None = None

    def given(self) -> dict[str, int]:
        return {f"{k}_speakers": v for k, v in (("num", self.num), ("min", self.min), ("max", self.max))
                if v is not None}


@dataclass(frozen=True)
class JobOptions:
    """Settings given with one file (submit flags, POST /jobs fields, a sidecar .toml); None: the config's.

    Checked by options.problems before a job is recorded; the worker runs the job with them.
    """

    language: str | None = None
    model: str | None = None
    formats: tuple[str, ...] | None = None
    initial_prompt: str | None = None
    hotwords: str | None = None

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def to_json(self) -> str | None:
        given = self.given()
        return json.dumps(given, ensure_ascii=False) if given else None


SORTS = {"newest": "jobs.created_at DESC, jobs.id DESC", "oldest": "jobs.created_at ASC, jobs.id ASC",
         "longest": "jobs.duration DESC NULLS LAST, jobs.id DESC", "name": "jobs.source_name ASC, jobs.id ASC"}


@dataclass(frozen=True)
class JobQuery:
    """Finding jobs: words in file names, speaker names and transcripts, and filters; one page of them.

    `text` matches whole words (all of them), accents folded on SQLite; the rest must all hold.
    """

    text: str = ""
    states: tuple[str, ...] = ()
    language: str | None = None
    model: str | None = None
    speaker: str | None = None  # part of a speaker's name or label, any case
    since: float | None = None  # created at or after (unix time)
    until: float | None = None  # created before
    sort: str = "newest"  # a key of SORTS
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True)
class Event:
    job_id: str
    at: float
    kind: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up (a day of retries), or the endpoint is no longer configured


@dataclass(frozen=True)
class Notification:
    """A job reached a final state: written in the same transaction (a transactional outbox)."""

    id: int
    job_id: str
    event: str
    at: float


@dataclass(frozen=True)
class Delivery:
    """One webhook POST of one notification to one endpoint; `id` is the receiver's dedupe key."""

    id: str
    job_id: str
    event: str
    url: str
    state: DeliveryState
    attempts: int
    created_at: float
    expires_at: float
    next_at: float
    last_at: float | None
    last_status: int | None
    last_error: str | None
    payload: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", DeliveryState(self.state))


@dataclass(frozen=True)
class Sample:
    """A worker's memory and CPU at one moment (the supervisor takes one every few seconds)."""

    job_id: str
    pid: int
    at: float
    rss_mb: float
    cpu_percent: float


@dataclass(frozen=True)
class DaemonStatus:
    """A supervisor's last published heartbeat (one node, or all nodes summed), and whether it lives."""

    up: bool
    node: str | None = None
    host: str | None = None
    inbox: bool = False  # this node scans and takes the inbox (one node at a time)
    pid: int | None = None
    state: str | None = None
    started_at: float | None = None
    heartbeat_at: float | None = None
    workers_busy: int = 0
    workers_total: int = 0
    memory_used_gb: float = 0.0
    memory_budget_gb: float = 0.0
    queued: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PendingWork:
    """What the live jobs still need: bytes of originals and seconds of audio known so far."""

    jobs: int
    bytes: int
    seconds: float


@dataclass(frozen=True)
class Timing:
    """One succeeded job's figures; queue_wait is from recording to its last attempt's start."""

    model: str | None
    processing_seconds: float
    duration: float | None
    queue_wait: float | None

    @property
    def real_time_factor(self) -> float | None:
        return self.processing_seconds / self.duration if self.duration else None


def short_id(job_id: str) -> str:
    """The 6-character id `diarizectl status` shows and accepts (the random tail of the id)."""
    return job_id[-6:]


@functools.cache
def boot_id() -> str:
    """This boot of this machine: monotonic times compare only within one (they restart at boot)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _wait(seconds: float | None) -> dict[str, Any]:
    """A job's not-before `seconds` from now on both clocks (see JobStore.claimable); None: due at once."""
    if seconds is None:
        return {"not_before": 0.0, "wait_mono": None, "wait_boot": None}
    return {"not_before": time.time() + seconds, "wait_mono": time.monotonic() + seconds, "wait_boot": boot_id()}


def _node_up(row: dict[str, Any], stale_seconds: float) -> bool:
    """Running, its process alive where that can be seen, and a heartbeat seen lately: on this
    machine by the monotonic clock (a wall-clock step shows no live daemon DOWN), elsewhere by
    the wall clock."""
    if row["state"] not in ("running", "stopping"):
        return False
    if row["host"] == socket.gethostname():
        if not pid_alive(row["pid"]):
            return False
        if row.get("boot_id") == boot_id() and row.get("heartbeat_mono") is not None:
            return time.monotonic() - row["heartbeat_mono"] < stale_seconds
    return time.time() - (row["heartbeat_at"] or 0) < stale_seconds


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("heartbeat_mono", "boot_id")}


def new_job_id(now: float) -> str:
    """Sortable by creation time, unique without coordination."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(3)


class JobStore(Protocol):
    """What every job store guarantees; the supervisor, workers and CLI rely on nothing else.

    Every method that changes a job is atomic: other processes see all of it or
    none of it. Methods that take a job id raise NotFound for an unknown id,
    except where a lost race is part of the contract (then it says what comes back).
    A change that cannot be written (full disk, read-only file, database unreachable)
    raises StoreUnavailable and changes nothing.
    """

    # -- intake (intake.py) ---------------------------------------------------
    def record_incoming(self, source_name: str, sha256: str, size: int, priority: Priority,
                        max_attempts: int, inbox_path: Path, jobs_dir: Path,
                        speakers: SpeakerHints = SpeakerHints(), options: JobOptions = JobOptions()) -> Job:
        """Record a complete file before it is moved, deduplicating by content in the same step.

        The speaker hints and options are stored with the job and used by its worker.

        Returns a new `incoming` job whose source_path is jobs_dir/<id>/source<ext>, or a
        new `duplicate` job (duplicate_of = the oldest incoming, queued, running or
        succeeded job with that sha256). Two callers racing with the same content get
        one `incoming` and one `duplicate`, never two `incoming`.
        """

    def mark_queued(self, job_id: str, duration: float | None = None) -> Job:
        """incoming -> queued once the file is in the job folder; InvalidTransition otherwise."""

    def mark_duplicate_settled(self, job_id: str, where: str) -> None:
        """A duplicate's original has been moved (to done/); clears its inbox_path."""

    # -- reads -----------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        """By full id, or by a unique prefix or suffix (the short id in `status`)."""

    def resolve(self, job_id: str) -> Job:
        """The job, or for a duplicate the job it duplicates (whose outputs it shares)."""

    def jobs(self, states: tuple[str, ...] | None = None, limit: int | None = None,
             offset: int = 0) -> list[Job]:
        """Newest first, optionally only in the given states; `offset` skips that many (pages)."""

    def events(self, job_id: str) -> list[Event]:
        """The job's timeline in the order the events were written."""

    def counts(self) -> dict[str, int]:
        """Jobs per state (states with no job are absent)."""

    def stats(self) -> dict[str, Any]:
        """The seed's orchestrator metrics over the whole history."""

    def timings(self) -> list[Timing]:
        """Model, processing time, audio length and queue wait of every succeeded job (metrics)."""

    def pending_work(self) -> PendingWork:
        """Size and known audio duration of every incoming, queued or running job."""

    def queue(self, limit: int) -> list[Job]:
        """The first `limit` incoming and queued jobs in claim order (priority, then age): what
        `status` shows; an indexed read however long the queue (counts() has the total)."""

    def cancel_requests(self) -> list[Job]:
        """Queued jobs an operator asked to cancel (an indexed read: few rows, whatever the queue)."""

    def claimable(self, now: float | None = None, limit: int | None = None) -> list[Job]:
        """Queued jobs whose backoff has passed, in claim order: priority, then age, then id;
        the first `limit` of them (the supervisor asks for as many as it has free slots).

        A backoff has passed when the wall clock says so, or this machine's monotonic clock
        (same boot): a step of the wall clock back does not make a job wait longer.
        """

    def expired_leases(self, now: float | None = None) -> list[Job]:
        """Running jobs whose lease ended (no heartbeat renewed it), on any node."""

    def worker_threads(self, job_id: str) -> list[int]:
        """The threads each attempt's worker was given, in attempt order."""

    # -- the supervisor (lifecycle.py) -----------------------------------------------
    # Fencing: every transition of a running job takes the lease generation its caller
    # holds. If the job is no longer running under that generation (another node took it
    # over after the lease expired), the call raises LeaseLost and changes nothing; None
    # skips the check (operators, intake, a job that is not running).
    def claim(self, job_id: str, node: str | None = None, lease_seconds: float = 120.0) -> Job | None:
        """queued -> running, spending one attempt and starting `node`'s lease (generation + 1).

        node None: a store served by one node (recovery takes such jobs as its own).

        Returns None (and changes nothing) when the job is not queued any more: of
        several processes claiming one job, exactly one gets it.
        """

    def set_worker(self, job_id: str, pid: int, threads: int, model: str | None = None) -> None:
        """Record the running job's worker process (its lease holder), its thread share and model."""

    def requeue(self, job_id: str, reason: str, spend_attempt: bool, backoff: float = 0.0,
                generation: int | None = None) -> Job:
        """running -> queued, not claimable for `backoff` seconds.

        spend_attempt=False gives the attempt back (the job was stopped, not at fault).
        spend_attempt=True keeps it; when attempts reach max_attempts the job becomes
        failed instead ("no attempts left"). A job that is not running is returned as it is.
        """

    def requeue_after_daemon_death(self, job_id: str, reason: str, generation: int | None = None,
                                   backoff_base: float = 30.0) -> Job:
        """running -> queued without spending an attempt: the daemon (or its node) died, not the job.

        A daemon's death is no evidence against the file (the supervisor opens no media; a
        file is blamed only by its own worker's failures, which spend attempts). Consecutive
        deaths are counted: from the second on, the job waits backoff_base x 2^(deaths-2)
        seconds (at most an hour) before it can be claimed again, so a node that keeps
        restarting does not re-claim the same job in a loop. Any other end of a run resets the
        count. A job that is not running is returned as it is.
        """

    def fail(self, job_id: str, error_type: str, error: str, hint: str, generation: int | None = None) -> Job:
        """Any live state -> failed with the reason and what to do; the worker lease ends."""

    def set_output_dir(self, job_id: str, output_dir: str, generation: int | None = None) -> None:
        """The outbox folder chosen for a job, recorded before the rename that publishes it.

        Fenced: the last check before a node publishes; a node that lost the lease never renames.
        """

    def mark_succeeded(self, job_id: str, output_dir: str, source_path: str | None,
                       generation: int | None = None) -> Job:
        """-> succeeded with progress 1 and the processing time; the worker lease ends."""

    def mark_cancelled(self, job_id: str, where: str | None, generation: int | None = None) -> Job:
        """-> cancelled; `where` is the original's new place (failed/)."""

    def set_source(self, job_id: str, source_path: str) -> None:
        """Where the original is now (after a move to failed/)."""

    def record_rss(self, job_id: str, rss_mb: float) -> None:
        """Raise the job's peak RSS to rss_mb if it is higher; never lowers it."""

    def record_sample(self, job_id: str, pid: int, rss_mb: float, cpu_percent: float,
                      keep_seconds: float = 3600.0, peak_mb: float | None = None) -> None:
        """A worker's memory and CPU now; also raises the job's peak RSS to peak_mb (the highest
        reading between samples; default rss_mb). Samples older than keep_seconds are dropped in
        the same step, so the table stays small."""

    def samples(self, since: float) -> list[Sample]:
        """Samples taken since `since`, oldest first."""

    def set_daemon(self, node: str, **values: Any) -> None:
        """A supervisor's heartbeat row, one per node: host, pid, state, workers, memory, queue, inbox."""

    def nodes(self, stale_seconds: float) -> list[DaemonStatus]:
        """Every node's last heartbeat row, by name; up only if running, recent and (same host) alive."""

    def daemon(self, stale_seconds: float) -> DaemonStatus:
        """The service as a whole: the one node's row, or the live nodes summed (up if any is)."""

    # -- workers ---------------------------------------------------------------------------
    def progress(self, job_id: str, stage: str, progress: float, eta: float | None,
                 generation: int | None = None) -> None:
        """Stage, fraction and ETA of a running job. Ignored if not running (under `generation`)."""

    def heartbeat(self, job_id: str, generation: int, lease_seconds: float) -> bool:
        """Renew the lease for lease_seconds; False if the job is not running under `generation`
        any more (taken over, cancelled, finished): the worker then stops."""

    def event(self, job_id: str, kind: str, detail: str = "", data: dict | None = None) -> None:
        """Append to the job's timeline."""

    def record_error(self, job_id: str, error_type: str, error: str, hint: str) -> None:
        """The worker says why it is about to exit; the supervisor decides what follows."""

    def set_duration(self, job_id: str, duration: float) -> None:
        """The decoded audio duration (admission and ETA use it from then on)."""

    # -- operators ---------------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> Job:
        """Flag a live job; the supervisor cancels it. InvalidTransition once it is final."""

    def request_retry(self, job_id: str) -> Job:
        """failed or cancelled -> queued with attempts reset, if the original still exists."""

    def set_priority(self, job_id: str, priority: Priority) -> Job:
        """Change a live job's priority; InvalidTransition once it is final."""

    def delete(self, job_id: str) -> Job:
        """Remove the job's rows (job, events, notifications, deliveries, samples); returns the job as
        it was, whose files the caller then removes (retention.py). InvalidTransition while it runs
        (or is being recorded): cancel it first."""

    def expiring(self, before: float, limit: int) -> list[Job]:
        """Finished jobs that ended before `before` and still have their files, oldest first."""

    def mark_expired(self, job_id: str, detail: str) -> bool:
        """Its files are gone: the paths are cleared (a later job may reuse the names), the row stays
        with an `expired` event. False if it already was."""

    def record_summary(self, job_id: str, summary: "Summary", generation: int | None = None) -> None:
        """What came out (summary.py): at success, and again after a rename of its speakers."""

    def search(self, query: JobQuery) -> list[Job]:
        """One page of the jobs `query` finds, in its order; the limit is the database's (a store of
        100,000 jobs is never read whole). Ask for limit + 1 to know whether a next page exists."""

    def tallies(self) -> dict[str, int]:
        """Counts that outlive their rows: deleted_<outcome> per deleted job, expired per expiry."""

    # -- webhooks (api/webhooks.py) ----------------------------------------------------------
    def pending_notifications(self, limit: int = 100) -> list[Notification]:
        """Final transitions not yet turned into deliveries, oldest first.

        Every transition to succeeded, failed or cancelled writes one in its own transaction,
        so a notification exists exactly when the state change does.
        """

    def add_deliveries(self, notification_id: int, deliveries: list[tuple[str, str, str]],
                       expires_at: float) -> None:
        """(id, url, payload) rows for a notification, and the notification marked dispatched: atomic."""

    def claim_deliveries(self, lease_seconds: float, limit: int = 20, now: float | None = None,
                         url: str | None = None, other_than: tuple[str, ...] = ()) -> list[Delivery]:
        """Pending deliveries that are due, leased for lease_seconds (not due again meanwhile).

        `url`: only that endpoint's (each endpoint is sent to on its own, so a slow one
        delays no other); `other_than`: only those of endpoints not in that list.
        Of several senders, each due delivery goes to one; a sender that dies mid-send
        leaves it due again when the lease ends (at least once).
        """

    def finish_attempt(self, delivery_id: str, status: int | None, error: str | None,
                       retry_at: float | None) -> Delivery:
        """Record an attempt: delivered when error is None, else pending until retry_at, else failed."""

    def deliveries(self, job_id: str | None = None, limit: int | None = 100) -> list[Delivery]:
        """Newest first, of one job or of all."""

    def get_delivery(self, delivery_id: str) -> Delivery:
        """By id or a unique prefix; NotFound otherwise."""

    def retry_delivery(self, delivery_id: str, expires_at: float) -> Delivery:
        """Pending again, due now, retried until expires_at (an operator's `webhooks retry`)."""

    def delivery_counts(self) -> dict[str, int]:
        """Deliveries per state."""

    # -- maintenance ---------------------------------------------------------------------------
    def claim_node(self, node: str) -> bool:
        """Make this process node `node`'s one supervisor while it lives; False if another holds it.

        Recovery at start requeues the running jobs of its own node, so two supervisors under
        one node name would take each other's work. SQLite: one node per store (the state
        folder's lock says so); PostgreSQL: an advisory lock per node name.
        """

    def hold_inbox(self, node: str) -> bool:
        """Whether this node is the one that scans the inbox now; take the role if it is free.

        Called every tick: the role passes to another node within a tick or two of its holder's
        death (its database session ends). SQLite: always True, one node per store.
        """

    def integrity_check(self) -> str:
        """'ok', or what the database engine found wrong."""

    def close(self) -> None:
        """Release the connection."""


# -- SQLite ---------------------------------------------------------------------------------
SCHEMA_VERSION = 14
MAX_DEATH_BACKOFF = 3600.0  # the longest a job waits after daemon deaths in a row
# No wait the service sets (retry backoff, death backoff, webhook retry and lease) is longer
# than this; one further ahead was written before the wall clock stepped back.
MAX_WAIT_SECONDS = 3600.0 + 600.0

# Frozen: version -> the statements that bring the schema from version-1. Never edit a
# released entry (databases in the field already ran it); add the next version instead.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE "jobs" (
           "id" TEXT PRIMARY KEY, "source_name" TEXT, "sha256" TEXT, "size" INTEGER,
           "priority" INTEGER, "state" TEXT, "attempts" INTEGER, "max_attempts" INTEGER,
           "stage" TEXT, "progress" REAL, "eta_seconds" REAL, "duration" REAL,
           "created_at" REAL, "started_at" REAL, "finished_at" REAL, "updated_at" REAL,
           "not_before" REAL, "worker_pid" INTEGER, "heartbeat_at" REAL, "progress_at" REAL,
           "peak_rss_mb" REAL, "error" TEXT, "error_type" TEXT, "hint" TEXT,
           "inbox_path" TEXT, "source_path" TEXT, "output_dir" TEXT, "duplicate_of" TEXT,
           "cancel_requested" INTEGER, "processing_seconds" REAL)""",
        'CREATE INDEX "idx_jobs_state_priority_created_at" ON "jobs" ("state", "priority", "created_at")',
        'CREATE INDEX "idx_jobs_sha256" ON "jobs" ("sha256")',
        """CREATE TABLE "events" (
           "id" INTEGER PRIMARY KEY, "job_id" TEXT, "at" REAL, "kind" TEXT, "detail" TEXT)""",
        'CREATE INDEX "idx_events_job_id_at" ON "events" ("job_id", "at")',
        """CREATE TABLE "daemon" (
           "id" INTEGER PRIMARY KEY, "pid" INTEGER, "started_at" REAL, "heartbeat_at" REAL,
           "workers_busy" INTEGER, "workers_total" INTEGER, "memory_used_gb" REAL,
           "memory_budget_gb" REAL, "queued" INTEGER, "state" TEXT)""",
    ),
    2: (
        # structured event payloads (worker pid and threads, ...) instead of parsing text
        'ALTER TABLE "events" ADD COLUMN "data" TEXT',
    ),
    3: (
        # a daemon death does not spend the attempt of the jobs it ran, unless it keeps happening
        'ALTER TABLE "jobs" ADD COLUMN "supervisor_deaths" INTEGER NOT NULL DEFAULT 0',
    ),
    4: (
        # speaker hints given with the file (NULL: the configuration's)
        'ALTER TABLE "jobs" ADD COLUMN "num_speakers" INTEGER',
        'ALTER TABLE "jobs" ADD COLUMN "min_speakers" INTEGER',
        'ALTER TABLE "jobs" ADD COLUMN "max_speakers" INTEGER',
    ),
    5: (
        # webhooks: a notification per final transition (same transaction), then deliveries
        """CREATE TABLE "notifications" (
           "id" INTEGER PRIMARY KEY, "job_id" TEXT NOT NULL, "event" TEXT NOT NULL, "at" REAL NOT NULL,
           "dispatched_at" REAL)""",
        'CREATE INDEX "idx_notifications_dispatched_at" ON "notifications" ("dispatched_at", "id")',
        """CREATE TABLE "deliveries" (
           "id" TEXT PRIMARY KEY, "job_id" TEXT NOT NULL, "event" TEXT NOT NULL, "url" TEXT NOT NULL,
           "state" TEXT NOT NULL, "attempts" INTEGER NOT NULL, "created_at" REAL NOT NULL,
           "expires_at" REAL NOT NULL, "next_at" REAL NOT NULL, "last_at" REAL, "last_status" INTEGER,
           "last_error" TEXT, "payload" TEXT NOT NULL)""",
        'CREATE INDEX "idx_deliveries_state_next_at" ON "deliveries" ("state", "next_at")',
        'CREATE INDEX "idx_deliveries_job_id" ON "deliveries" ("job_id")',
    ),
    6: (
        # the Whisper model each job ran with (processing time and real-time factor by model)
        'ALTER TABLE "jobs" ADD COLUMN "model" TEXT',
    ),
    7: (
        # the workers' memory and CPU over the last hour (the dashboard's chart), kept bounded
        """CREATE TABLE "samples" (
           "id" INTEGER PRIMARY KEY, "job_id" TEXT NOT NULL, "pid" INTEGER NOT NULL, "at" REAL NOT NULL,
           "rss_mb" REAL NOT NULL, "cpu_percent" REAL NOT NULL)""",
        'CREATE INDEX "idx_samples_at" ON "samples" ("at")',
    ),
    8: (
        # several nodes on one store: node-scoped leases fenced by a generation, a row per node
        'ALTER TABLE "jobs" ADD COLUMN "node" TEXT',
        'ALTER TABLE "jobs" ADD COLUMN "lease_generation" INTEGER NOT NULL DEFAULT 0',
        'ALTER TABLE "jobs" ADD COLUMN "lease_expires_at" REAL',
        """CREATE TABLE "nodes" (
           "node" TEXT PRIMARY KEY, "host" TEXT, "pid" INTEGER, "started_at" REAL, "heartbeat_at" REAL,
           "workers_busy" INTEGER, "workers_total" INTEGER, "memory_used_gb" REAL,
           "memory_budget_gb" REAL, "queued" INTEGER, "state" TEXT, "inbox" INTEGER NOT NULL DEFAULT 0)""",
        'DROP TABLE "daemon"',
    ),
    9: (
        # durations that survive a step of the wall clock: a backoff's end and a supervisor's heartbeat
        # also on the monotonic clock of the boot that wrote them
        'ALTER TABLE "jobs" ADD COLUMN "wait_mono" REAL',
        'ALTER TABLE "jobs" ADD COLUMN "wait_boot" TEXT',
        'ALTER TABLE "nodes" ADD COLUMN "heartbeat_mono" REAL',
        'ALTER TABLE "nodes" ADD COLUMN "boot_id" TEXT',
    ),
    10: (
        # a queue of 100,000: the claim order read from an index (no sort), cancellations found
        # among the few rows that ask for one
        'CREATE INDEX "idx_jobs_queue" ON "jobs" ("state", "priority", "created_at", "id")',
        'CREATE INDEX "idx_jobs_cancel" ON "jobs" ("state") WHERE "cancel_requested" = 1',
    ),
    11: (
        # retention_days: when a finished job's files were removed; the ones not yet, oldest first
        'ALTER TABLE "jobs" ADD COLUMN "expired_at" REAL',
        'CREATE INDEX "idx_jobs_expiry" ON "jobs" ("finished_at") WHERE "expired_at" IS NULL',
        # counts that outlive the rows they count (deleted jobs by outcome, expiries): counters only grow
        'CREATE TABLE "tallies" ("name" TEXT PRIMARY KEY, "count" INTEGER NOT NULL)',
    ),
    12: (
        # what came out, as data (summary.py): language, words, speakers with their speech time
        'ALTER TABLE "jobs" ADD COLUMN "language" TEXT',
        'ALTER TABLE "jobs" ADD COLUMN "language_probability" REAL',
        'ALTER TABLE "jobs" ADD COLUMN "word_count" INTEGER',
        'ALTER TABLE "jobs" ADD COLUMN "speakers_found" TEXT',
    ),
    13: (
        # options given with one file (options.py): language, model, formats, prompt, hotwords
        'ALTER TABLE "jobs" ADD COLUMN "options" TEXT',
    ),
    14: (
        # finding any job (JobQuery): newest first from an index, and full-text search over file
        # names, speaker names and transcripts (FTS5, accents folded: "reuniao" finds "reunião")
        'CREATE INDEX "idx_jobs_created" ON "jobs" ("created_at", "id")',
        """CREATE VIRTUAL TABLE "job_text" USING fts5(
           "job_id" UNINDEXED, "name", "speakers", "body", tokenize = 'unicode61 remove_diacritics 2')""",
        'INSERT INTO "job_text" ("job_id", "name", "speakers", "body") '
        'SELECT "id", "source_name", \'\', \'\' FROM "jobs" ORDER BY "created_at", "id"',
    ),
}


def _import_sqlite_utils():
    """sqlite-utils without pandas and numpy.

    sqlite-utils imports pandas and numpy, when installed, only to map their scalar
    types to column types; this package never stores them. Importing both costs
    the CLI and the supervisor ~0.3 s and loads numpy into the process that must
    stay free of it, so they are hidden (a None entry in sys.modules makes an import
    fail) while sqlite-utils loads. A process that already has numpy keeps it.
    """
    hidden = [name for name in ("numpy", "pandas") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import sqlite_utils
    finally:
        for name in hidden:
            if sys.modules.get(name) is None:
                del sys.modules[name]
    return sqlite_utils


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the transaction is gone with the connection's state either way


class SchemaError(RuntimeError):
    """The database is not a schema this diarized can use."""


class SQLStore:
    """Every JobStore method, in SQL that SQLite and PostgreSQL both run.

    A backend supplies the connection handling: `transaction()` (one atomic unit,
    StoreUnavailable when it cannot be written), `reading()`, `_x()` (execute, with
    its placeholder style) and the row lock its isolation needs: SQLite's BEGIN
    IMMEDIATE already serialises writers, PostgreSQL locks the rows it changes
    (FOR UPDATE) and takes an advisory lock per content hash for dedupe.
    """

    FOR_UPDATE = ""
    SKIP_LOCKED = ""  # PostgreSQL: rows another transaction holds are skipped, not waited for

    def _x(self, conn, sql: str, params: list | tuple = ()):
        return conn.execute(sql, params)

    def _lock_content(self, conn, sha256: str) -> None:
        """Serialise record_incoming calls for one content (SQLite: the write lock does it)."""

    def _row(self, conn, sql: str, params: list) -> Job | None:
        cur = self._x(conn, sql, params)
        row = cur.fetchone()
        if row is None:
            return None
        return Job(**dict(zip([d[0] for d in cur.description], row)))

    def _records(self, conn, sql: str, params: list, kind: type = Job) -> list:
        """Rows as `kind` dataclasses, by column name (Job, Delivery)."""
        cur = self._x(conn, sql, params)
        names = [d[0] for d in cur.description]
        return [kind(**dict(zip(names, row))) for row in cur.fetchall()]

    def _rows(self, sql: str, params: list) -> list[Job]:
        with self.reading() as conn:
            return self._records(conn, sql, params)

    def _fetch(self, sql: str, params: list | tuple = ()) -> list[tuple]:
        with self.reading() as conn:
            return self._x(conn, sql, params).fetchall()

    def _update(self, conn, job_id: str, **values: Any) -> None:
        values["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in values)
        self._x(conn, f"UPDATE jobs SET {sets} WHERE id = ?", [*values.values(), job_id])

    def _event(self, conn, job_id: str, kind: str, detail: str = "",
               data: dict | None = None) -> None:
        self._x(conn, "INSERT INTO events (job_id, at, kind, detail, data) VALUES (?, ?, ?, ?, ?)",
                     [job_id, time.time(), kind, detail, json.dumps(data) if data else None])

    def _notify(self, conn, job_id: str, event: State) -> None:
        """The transactional outbox: the webhook sender finds this row iff the transition committed."""
        self._x(conn, "INSERT INTO notifications (job_id, event, at) VALUES (?, ?, ?)",
                [job_id, str(event), time.time()])

    def _require(self, conn, job_id: str, generation: int | None = None) -> Job:
        """The job's row, locked for this transaction; LeaseLost if `generation` no longer runs it."""
        job = self._row(conn, "SELECT * FROM jobs WHERE id = ?" + self.FOR_UPDATE, [job_id])
        if job is None:
            raise NotFound(job_id)
        if generation is not None and not job.runs_under(generation):
            raise LeaseLost(f"job {job_id}: lease generation {generation} is over (the job is {job.state}, "
                            f"generation {job.lease_generation} on node {job.node})")
        return job

    # -- reads ------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        found = self._rows("SELECT * FROM jobs WHERE id = ?", [job_id])
        if found:
            return found[0]
        ids = [r[0] for r in self._fetch("SELECT id FROM jobs WHERE id LIKE ? OR id LIKE ?",
                                         [f"%{job_id}", f"{job_id}%"])]
        if len(ids) != 1:
            raise NotFound(job_id)
        return self._rows("SELECT * FROM jobs WHERE id = ?", [ids[0]])[0]

    def resolve(self, job_id: str) -> Job:
        job = self.get(job_id)
        while job.state == State.DUPLICATE and job.duplicate_of:
            found = self._rows("SELECT * FROM jobs WHERE id = ?", [job.duplicate_of])
            if not found:
                return job  # its original was deleted: the duplicate stands alone, without outputs
            job = found[0]
        return job

    def jobs(self, states: tuple[str, ...] | None = None, limit: int | None = None,
             offset: int = 0) -> list[Job]:
        sql, params = "SELECT * FROM jobs", []
        if states:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            params += [str(s) for s in states]
        sql += " ORDER BY created_at DESC, id DESC"
        if limit or offset:  # no LIMIT ALL in SQLite, no LIMIT -1 in PostgreSQL: a number both take
            sql += f" LIMIT {int(limit) if limit else 2**62} OFFSET {int(offset)}"
        return self._rows(sql, params)

    def events(self, job_id: str) -> list[Event]:
        rows = self._fetch("SELECT job_id, at, kind, detail, data FROM events WHERE job_id = ? ORDER BY id",
                           [job_id])
        return [Event(j, at, kind, detail, json.loads(data) if data else {})
                for j, at, kind, detail, data in rows]

    def counts(self) -> dict[str, int]:
        return dict(self._fetch("SELECT state, COUNT(*) FROM jobs GROUP BY state"))

    def timings(self) -> list[Timing]:
        rows = self._fetch("SELECT model, processing_seconds, duration, started_at - created_at FROM jobs "
                           "WHERE state = 'succeeded' AND processing_seconds IS NOT NULL")
        return [Timing(*row) for row in rows]

    def pending_work(self) -> PendingWork:
        jobs, size, seconds = self._fetch(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(duration), 0) FROM jobs "
            "WHERE state IN (?, ?, ?)", [str(s) for s in LIVE_STATES])[0]
        return PendingWork(int(jobs), int(size), float(seconds))

    def claimable(self, now: float | None = None, limit: int | None = None) -> list[Job]:
        now = time.time() if now is None else now
        # due by the wall clock, or by the monotonic one of this boot (a wait set before the wall
        # clock stepped back ends on time; a step forward merely ends it early)
        return self._rows("SELECT * FROM jobs WHERE state = 'queued' AND (not_before <= ? OR "
                          "(wait_boot = ? AND wait_mono <= ?)) ORDER BY priority, created_at, id"
                          + (f" LIMIT {int(limit)}" if limit else ""), [now, boot_id(), time.monotonic()])

    def queue(self, limit: int) -> list[Job]:
        incoming = self._rows("SELECT * FROM jobs WHERE state = 'incoming' ORDER BY priority, created_at, id "
                              f"LIMIT {int(limit)}", [])
        queued = self._rows("SELECT * FROM jobs WHERE state = 'queued' ORDER BY priority, created_at, id "
                            f"LIMIT {int(limit)}", [])
        return sorted(incoming + queued, key=lambda j: (j.priority, j.created_at, j.id))[:limit]

    def cancel_requests(self) -> list[Job]:
        return self._rows("SELECT * FROM jobs WHERE cancel_requested = 1 AND state = 'queued'", [])

    def expired_leases(self, now: float | None = None) -> list[Job]:
        now = time.time() if now is None else now
        return self._rows("SELECT * FROM jobs WHERE state = 'running' AND lease_expires_at < ? "
                          "ORDER BY started_at", [now])

    def worker_threads(self, job_id: str) -> list[int]:
        return [e.data["threads"] for e in self.events(job_id) if e.kind == "worker_started"]

    def nodes(self, stale_seconds: float = 15.0) -> list[DaemonStatus]:
        with self.reading() as conn:
            cur = self._x(conn, "SELECT * FROM nodes ORDER BY node")
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, row)) for row in cur.fetchall()]
        return [DaemonStatus(up=_node_up(r, stale_seconds), **{**_shown(r), "inbox": bool(r["inbox"])})
                for r in rows]

    def daemon(self, stale_seconds: float = 15.0) -> DaemonStatus:
        nodes = self.nodes(stale_seconds)
        live = [n for n in nodes if n.up]
        if len(nodes) <= 1 or len(live) <= 1:
            return (live or nodes or [DaemonStatus(up=False)])[0]
        return DaemonStatus(
            up=True, node=",".join(n.node for n in live), host=None, inbox=True, pid=None,
            state="running",
            started_at=min(n.started_at for n in live), heartbeat_at=max(n.heartbeat_at for n in live),
            workers_busy=sum(n.workers_busy for n in live), workers_total=sum(n.workers_total for n in live),
            memory_used_gb=sum(n.memory_used_gb for n in live),
            memory_budget_gb=sum(n.memory_budget_gb for n in live), queued=live[0].queued)

    # -- intake -----------------------------------------------------------------
    def record_incoming(self, source_name: str, sha256: str, size: int, priority: Priority,
                        max_attempts: int, inbox_path: Path, jobs_dir: Path,
                        speakers: SpeakerHints = SpeakerHints(), options: JobOptions = JobOptions()) -> Job:
        now = time.time()
        with self.transaction() as conn:
            job_id = self._free_job_id(conn, now)
            self._lock_content(conn, sha256)
            first = self._row(conn, f"SELECT * FROM jobs WHERE sha256 = ? AND expired_at IS NULL AND state IN "
                                    f"({','.join('?' * len(DEDUPE_STATES))}) ORDER BY created_at LIMIT 1",
                              [sha256, *DEDUPE_STATES])
            source = Path(jobs_dir) / job_id / ("source" + Path(source_name).suffix.lower())
            self._x(conn, 
                "INSERT INTO jobs (id, source_name, sha256, size, priority, state, attempts, "
                "max_attempts, progress, created_at, updated_at, not_before, inbox_path, "
                "source_path, duplicate_of, cancel_requested, num_speakers, min_speakers, max_speakers, options) "
                "VALUES (?,?,?,?,?,?,0,?,0,?,?,0,?,?,?,0,?,?,?,?)",
                [job_id, source_name, sha256, size, int(priority),
                 State.DUPLICATE if first else State.INCOMING, max_attempts, now, now, str(inbox_path),
                 None if first else str(source), first.id if first else None,
                 speakers.num, speakers.min, speakers.max, options.to_json()])
            self._index_name(conn, job_id, source_name)
            if first:
                self._event(conn, job_id, "duplicate", f"same content as job {first.id} ({first.source_name})")
                self._notify(conn, job_id, State.DUPLICATE)
            else:
                hints = ", ".join(f"{k} {v}" for k, v in speakers.given().items())
                hints += "".join(f", {k} {v!r}" if isinstance(v, str) else f", {k} {','.join(v)}"
                                 for k, v in options.given().items())
                self._event(conn, job_id, "recorded", f"{source_name}, {size} bytes, priority "
                                                      f"{Priority(priority).name.lower()}"
                                                      + (f", {hints}" if hints else ""))
            return self._require(conn, job_id)

    def _free_job_id(self, conn, now: float) -> str:
        """A new id not yet taken: a flood of files in one second would otherwise meet one of the
        16.7 million random tails twice (2,000 files a second: a collision every few seconds)."""
        while True:
            job_id = new_job_id(now)
            if self._x(conn, "SELECT 1 FROM jobs WHERE id = ?", [job_id]).fetchone() is None:
                return job_id

    def mark_queued(self, job_id: str, duration: float | None = None) -> Job:
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state != State.INCOMING:
                raise InvalidTransition(f"job {job_id} is {job.state}, not incoming")
            self._update(conn, job_id, state=State.QUEUED, duration=duration, inbox_path=None)
            self._event(conn, job_id, "queued", f"{duration:.1f} s of audio" if duration else "")
            return self._require(conn, job_id)

    def mark_duplicate_settled(self, job_id: str, where: str) -> None:
        with self.transaction() as conn:
            self._update(conn, job_id, inbox_path=None, source_path=where, finished_at=time.time())
            self._event(conn, job_id, "settled", f"original moved to {where}")

    # -- the supervisor side ---------------------------------------------------------
    def claim(self, job_id: str, node: str | None = None, lease_seconds: float = 120.0) -> Job | None:
        now = time.time()
        with self.transaction() as conn:
            # SKIP LOCKED: a row another node is claiming right now is skipped, not waited for
            job = self._row(conn, "SELECT * FROM jobs WHERE id = ? AND state = 'queued'" + self.SKIP_LOCKED,
                            [job_id])
            if job is None:
                return None
            self._update(conn, job_id, state=State.RUNNING, attempts=job.attempts + 1, stage="starting",
                         progress=0.0, eta_seconds=None, started_at=now, heartbeat_at=now,
                         progress_at=now, worker_pid=None, error=None, error_type=None, hint=None,
                         node=node, lease_generation=job.lease_generation + 1,
                         lease_expires_at=now + lease_seconds)
            self._event(conn, job_id, "claimed", f"attempt {job.attempts + 1}/{job.max_attempts}" + (f" on node {node}" if node else ""),
                        {"node": node, "generation": job.lease_generation + 1})
            return self._require(conn, job_id)

    def set_worker(self, job_id: str, pid: int, threads: int, model: str | None = None) -> None:
        with self.transaction() as conn:
            self._update(conn, job_id, worker_pid=pid, heartbeat_at=time.time(), model=model)
            self._event(conn, job_id, "worker_started", f"pid {pid}, {threads} threads",
                        {"pid": pid, "threads": threads, "model": model})

    def requeue(self, job_id: str, reason: str, spend_attempt: bool, backoff: float = 0.0,
                generation: int | None = None) -> Job:
        now = time.time()
        with self.transaction() as conn:
            job = self._require(conn, job_id, generation)
            if job.state != State.RUNNING:
                return job
            attempts = job.attempts if spend_attempt else max(0, job.attempts - 1)
            if spend_attempt and attempts >= job.max_attempts:
                self._update(conn, job_id, state=State.FAILED, finished_at=now, worker_pid=None,
                             error=job.error or reason, error_type=job.error_type or "Crash")
                self._event(conn, job_id, "failed", f"{reason}; no attempts left")
                self._notify(conn, job_id, State.FAILED)
            else:
                self._update(conn, job_id, state=State.QUEUED, attempts=attempts, worker_pid=None,
                             stage=None, supervisor_deaths=0, **_wait(backoff))
                self._event(conn, job_id, "requeued", reason + (
                    f"; retry in {backoff:.0f} s" if backoff else "") + (
                    "" if spend_attempt else "; attempt not counted"))
            return self._require(conn, job_id)

    def requeue_after_daemon_death(self, job_id: str, reason: str, generation: int | None = None,
                                   backoff_base: float = 30.0) -> Job:
        with self.transaction() as conn:
            job = self._require(conn, job_id, generation)
            if job.state != State.RUNNING:
                return job
            deaths = job.supervisor_deaths + 1
            wait = 0.0 if deaths < 2 else min(MAX_DEATH_BACKOFF, backoff_base * 2 ** min(deaths - 2, 20))
            self._update(conn, job_id, state=State.QUEUED, attempts=max(0, job.attempts - 1),
                         worker_pid=None, stage=None, supervisor_deaths=deaths, **_wait(wait))
            self._event(conn, job_id, "requeued", f"{reason}; attempt not counted (daemon death {deaths} in a "
                                                  "row" + (f"; waits {wait:.0f} s)" if wait else ")"))
            return self._require(conn, job_id)

    def fail(self, job_id: str, error_type: str, error: str, hint: str, generation: int | None = None) -> Job:
        with self.transaction() as conn:
            self._require(conn, job_id, generation)
            self._update(conn, job_id, state=State.FAILED, finished_at=time.time(), worker_pid=None,
                         error=error, error_type=error_type, hint=hint)
            self._event(conn, job_id, "failed", f"{error_type}: {error}")
            self._notify(conn, job_id, State.FAILED)
            return self._require(conn, job_id)

    def set_output_dir(self, job_id: str, output_dir: str, generation: int | None = None) -> None:
        with self.transaction() as conn:
            self._require(conn, job_id, generation)
            self._update(conn, job_id, output_dir=output_dir)

    def mark_succeeded(self, job_id: str, output_dir: str, source_path: str | None,
                       generation: int | None = None) -> Job:
        now = time.time()
        with self.transaction() as conn:
            job = self._require(conn, job_id, generation)
            processing = now - job.started_at if job.started_at else None
            self._update(conn, job_id, state=State.SUCCEEDED, finished_at=now, output_dir=output_dir,
                         source_path=source_path, progress=1.0, stage="done", eta_seconds=0,
                         worker_pid=None, processing_seconds=processing, supervisor_deaths=0)
            self._event(conn, job_id, "succeeded", f"published to {output_dir}")
            self._notify(conn, job_id, State.SUCCEEDED)
            return self._require(conn, job_id)

    def mark_cancelled(self, job_id: str, where: str | None, generation: int | None = None) -> Job:
        with self.transaction() as conn:
            self._require(conn, job_id, generation)
            self._update(conn, job_id, state=State.CANCELLED, finished_at=time.time(), worker_pid=None,
                         source_path=where, error="cancelled by the operator", error_type="Cancelled")
            self._event(conn, job_id, "cancelled", f"original in {where}" if where else "")
            self._notify(conn, job_id, State.CANCELLED)
            return self._require(conn, job_id)

    def set_source(self, job_id: str, source_path: str) -> None:
        with self.transaction() as conn:
            self._update(conn, job_id, source_path=source_path)

    def record_rss(self, job_id: str, rss_mb: float) -> None:
        with self.transaction() as conn:
            self._x(conn, "UPDATE jobs SET peak_rss_mb = ? WHERE id = ? AND COALESCE(peak_rss_mb, 0) < ?",
                    [rss_mb, job_id, rss_mb])

    def record_sample(self, job_id: str, pid: int, rss_mb: float, cpu_percent: float,
                      keep_seconds: float = 3600.0, peak_mb: float | None = None) -> None:
        now = time.time()
        peak = max(rss_mb, peak_mb or 0.0)
        with self.transaction() as conn:
            self._x(conn, "INSERT INTO samples (job_id, pid, at, rss_mb, cpu_percent) VALUES (?, ?, ?, ?, ?)",
                    [job_id, pid, now, rss_mb, cpu_percent])
            self._x(conn, "UPDATE jobs SET peak_rss_mb = ? WHERE id = ? AND COALESCE(peak_rss_mb, 0) < ?",
                    [peak, job_id, peak])
            self._x(conn, "DELETE FROM samples WHERE at < ?", [now - keep_seconds])

    def samples(self, since: float) -> list[Sample]:
        rows = self._fetch("SELECT job_id, pid, at, rss_mb, cpu_percent FROM samples WHERE at >= ? "
                           "ORDER BY at, id", [since])
        return [Sample(*row) for row in rows]

    def set_daemon(self, node: str, **values: Any) -> None:
        if "inbox" in values:
            values["inbox"] = int(values["inbox"])
        cols, marks = ", ".join(values), ",".join("?" * len(values))
        updates = ", ".join(f"{k} = excluded.{k}" for k in values)
        with self.transaction() as conn:  # an upsert both SQLite and PostgreSQL speak
            self._x(conn, f"INSERT INTO nodes (node, {cols}) VALUES (?, {marks}) "
                          f"ON CONFLICT (node) DO UPDATE SET {updates}", [node, *values.values()])

    # -- the worker side ------------------------------------------------------------------
    def progress(self, job_id: str, stage: str, progress: float, eta: float | None,
                 generation: int | None = None) -> None:
        now = time.time()
        fence, params = ("", []) if generation is None else (" AND lease_generation = ?", [generation])
        with self.transaction() as conn:
            self._x(conn, "UPDATE jobs SET stage = ?, progress = ?, eta_seconds = ?, heartbeat_at = ?, "
                         "progress_at = ?, updated_at = ? WHERE id = ? AND state = 'running'" + fence,
                         [stage, progress, eta, now, now, now, job_id, *params])

    def heartbeat(self, job_id: str, generation: int, lease_seconds: float) -> bool:
        now = time.time()
        with self.transaction() as conn:
            cur = self._x(conn, "UPDATE jobs SET heartbeat_at = ?, lease_expires_at = ? WHERE id = ? "
                                "AND state = 'running' AND lease_generation = ?",
                          [now, now + lease_seconds, job_id, generation])
            return cur.rowcount == 1

    def event(self, job_id: str, kind: str, detail: str = "", data: dict | None = None) -> None:
        with self.transaction() as conn:
            self._event(conn, job_id, kind, detail, data)

    def record_error(self, job_id: str, error_type: str, error: str, hint: str) -> None:
        with self.transaction() as conn:
            self._update(conn, job_id, error=error, error_type=error_type, hint=hint)
            self._event(conn, job_id, "error", f"{error_type}: {error}")

    def set_duration(self, job_id: str, duration: float) -> None:
        with self.transaction() as conn:
            self._update(conn, job_id, duration=duration)

    # -- the operator side ------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> Job:
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state not in LIVE_STATES:
                raise InvalidTransition(f"job {job.id} is already {job.state}")
            self._update(conn, job_id, cancel_requested=1)
            self._event(conn, job_id, "cancel_requested", "")
            return self._require(conn, job_id)

    def request_retry(self, job_id: str) -> Job:
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state not in (State.FAILED, State.CANCELLED):
                raise InvalidTransition(f"job {job.id} is {job.state}; only failed or cancelled jobs can be retried")
            if job.expired_at is not None:
                raise InvalidTransition(f"job {job.id}: its files were removed after retention_days; "
                                        "drop the recording into the inbox again")
            if not job.source_path or not os.path.lexists(job.source_path):
                raise InvalidTransition(f"job {job.id}: the original is no longer at {job.source_path}")
            if not stat.S_ISREG(os.lstat(job.source_path).st_mode):
                raise InvalidTransition(f"job {job.id}: {job.source_path} is not a plain file (a link or "
                                        "a pipe put in its place); drop the recording into the inbox again")
            self._update(conn, job_id, state=State.QUEUED, attempts=0, cancel_requested=0, **_wait(None),
                         error=None, error_type=None, hint=None, finished_at=None, stage=None, progress=0.0,
                         supervisor_deaths=0)
            self._event(conn, job_id, "retry", "requested by the operator")
            return self._require(conn, job_id)

    def set_priority(self, job_id: str, priority: Priority) -> Job:
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state not in LIVE_STATES:
                raise InvalidTransition(f"job {job.id} is already {job.state}")
            self._update(conn, job_id, priority=int(priority))
            self._event(conn, job_id, "priority", priority.name.lower())
            return self._require(conn, job_id)

    def delete(self, job_id: str) -> Job:
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state in (State.RUNNING, State.INCOMING):
                raise InvalidTransition(f"job {job.id} is {job.state}; cancel it first "
                                        f"(diarizectl cancel {job.short_id}), then delete it")
            for table in ("events", "notifications", "deliveries", "samples", "job_text", "jobs"):
                self._x(conn, f'DELETE FROM "{table}" WHERE "{"id" if table == "jobs" else "job_id"}" = ?',
                        [job.id])
            self._tally(conn, f"deleted_{job.state}")
            return job

    def _tally(self, conn, name: str) -> None:
        self._x(conn, 'INSERT INTO tallies (name, count) VALUES (?, 1) '
                      'ON CONFLICT (name) DO UPDATE SET count = tallies.count + 1', [name])

    def tallies(self) -> dict[str, int]:
        return dict(self._fetch("SELECT name, count FROM tallies"))

    # -- search (JobQuery) ----------------------------------------------------------------------
    MATCH = "job_text MATCH ?"  # PostgreSQL: a tsquery over the generated document

    def search(self, query: JobQuery) -> list[Job]:
        sql, params = self.search_sql(query)
        return self._rows(sql, params)

    def search_sql(self, query: JobQuery) -> tuple[str, list]:
        """The one statement a search runs (EXPLAIN it to see its plan)."""
        words = re.findall(r"\w+", query.text)
        head, where, params = "SELECT jobs.* FROM jobs", [], []
        if words:
            head, where, params = self._text_source(self._match(words))
        if query.states:
            where.append(f"jobs.state IN ({','.join('?' * len(query.states))})")
            params += [str(s) for s in query.states]
        for column, value in (("language", query.language), ("model", query.model)):
            if value:
                where.append(f"jobs.{column} = ?")
                params.append(value)
        if query.speaker:
            where.append("LOWER(jobs.speakers_found) LIKE ? ESCAPE '!'")
            params.append("%" + re.sub(r"([!%_])", r"!\1", query.speaker.lower()) + "%")
        if query.since is not None:
            where.append("jobs.created_at >= ?")
            params.append(query.since)
        if query.until is not None:
            where.append("jobs.created_at < ?")
            params.append(query.until)
        sql = head + (f" WHERE {' AND '.join(where)}" if where else "")
        order = self.TEXT_ORDER.get(query.sort, SORTS[query.sort]) if words else SORTS[query.sort]
        sql += f" ORDER BY {order} LIMIT {int(query.limit)} OFFSET {int(query.offset)}"
        return sql, params

    def _text_source(self, match: str) -> tuple[str, list[str], list]:
        """(SELECT … FROM …, WHERE conditions, their parameters) for jobs matching the words."""
        return "SELECT jobs.* FROM jobs JOIN job_text ON job_text.job_id = jobs.id", [self.MATCH], [match]

    # A text index row is written with its job, so its rowid follows the jobs' creation order: FTS5
    # hands matches over newest first by itself and the LIMIT stops it early. Sorting every match of a
    # common word by created_at instead took 290 ms with 100,000 jobs (bench/search_scale.py).
    TEXT_ORDER = {"newest": "job_text.rowid DESC", "oldest": "job_text.rowid ASC"}

    def _match(self, words: list[str]) -> str:
        """FTS5: each word a quoted phrase, all of them required (no operator a user typed runs)."""
        return " ".join(f'"{w}"' for w in words)

    def _index_name(self, conn, job_id: str, name: str) -> None:
        self._x(conn, "INSERT INTO job_text (job_id, name, speakers, body) VALUES (?, ?, '', '')", [job_id, name])

    def _index_text(self, conn, job_id: str, speakers: str, body: str) -> None:
        self._x(conn, "UPDATE job_text SET speakers = ?, body = ? WHERE job_id = ?", [speakers, body, job_id])

    def record_summary(self, job_id: str, summary: "Summary", generation: int | None = None) -> None:
        with self.transaction() as conn:
            self._require(conn, job_id, generation)
            self._update(conn, job_id, language=summary.language,
                         language_probability=summary.language_probability, word_count=summary.word_count,
                         speakers_found=summary.speakers_json())
            self._index_text(conn, job_id, " ".join(s.name for s in summary.speakers), summary.text)

    def expiring(self, before: float, limit: int) -> list[Job]:
        return self._rows(f"SELECT * FROM jobs WHERE expired_at IS NULL AND finished_at < ? AND state IN "
                          f"({','.join('?' * len(FINAL_STATES))}) ORDER BY finished_at LIMIT ?",
                          [before, *FINAL_STATES, limit])

    def mark_expired(self, job_id: str, detail: str) -> bool:
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.expired_at is not None:
                return False
            self._update(conn, job_id, expired_at=time.time(), output_dir=None, source_path=None)
            self._event(conn, job_id, "expired", detail)
            self._tally(conn, "expired")
            return True

    # -- webhooks ---------------------------------------------------------------------------
    def pending_notifications(self, limit: int = 100) -> list[Notification]:
        rows = self._fetch("SELECT id, job_id, event, at FROM notifications WHERE dispatched_at IS NULL "
                           f"ORDER BY id LIMIT {int(limit)}")
        return [Notification(*row) for row in rows]

    def add_deliveries(self, notification_id: int, deliveries: list[tuple[str, str, str]],
                       expires_at: float) -> None:
        now = time.time()
        with self.transaction() as conn:
            row = self._x(conn, "SELECT job_id, event, dispatched_at FROM notifications WHERE id = ?"
                          + self.FOR_UPDATE, [notification_id]).fetchone()
            if row is None or row[2] is not None:
                return  # another sender dispatched it first
            for delivery_id, url, payload in deliveries:
                self._x(conn, "INSERT INTO deliveries (id, job_id, event, url, state, attempts, created_at, "
                              "expires_at, next_at, payload) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?) "
                              "ON CONFLICT (id) DO NOTHING",
                        [delivery_id, row[0], row[1], url, now, expires_at, now, payload])
            self._x(conn, "UPDATE notifications SET dispatched_at = ? WHERE id = ?", [now, notification_id])

    def claim_deliveries(self, lease_seconds: float, limit: int = 20, now: float | None = None,
                         url: str | None = None, other_than: tuple[str, ...] = ()) -> list[Delivery]:
        now = time.time() if now is None else now
        where, params = "state = 'pending' AND (next_at <= ? OR next_at > ?)", [now, now + MAX_WAIT_SECONDS]
        if url is not None:
            where, params = where + " AND url = ?", params + [url]
        if other_than:
            where, params = where + f" AND url NOT IN ({','.join('?' * len(other_than))})", params + list(other_than)
        with self.transaction() as conn:
            due = self._records(conn, f"SELECT * FROM deliveries WHERE {where} "
                                      f"ORDER BY next_at LIMIT {int(limit)}" + self.SKIP_LOCKED, params, Delivery)
            for delivery in due:
                self._x(conn, "UPDATE deliveries SET next_at = ? WHERE id = ?", [now + lease_seconds, delivery.id])
            return due

    def finish_attempt(self, delivery_id: str, status: int | None, error: str | None,
                       retry_at: float | None) -> Delivery:
        now = time.time()
        state = DeliveryState.DELIVERED if error is None else \
            DeliveryState.PENDING if retry_at is not None else DeliveryState.FAILED
        with self.transaction() as conn:
            self._x(conn, "UPDATE deliveries SET state = ?, attempts = attempts + 1, last_at = ?, "
                          "last_status = ?, last_error = ?, next_at = ? WHERE id = ?",
                    [str(state), now, status, error, retry_at if retry_at is not None else now, delivery_id])
        return self.get_delivery(delivery_id)

    def deliveries(self, job_id: str | None = None, limit: int | None = 100) -> list[Delivery]:
        sql, params = "SELECT * FROM deliveries", []
        if job_id is not None:
            sql, params = sql + " WHERE job_id = ?", [job_id]
        sql += " ORDER BY created_at DESC, id" + (f" LIMIT {int(limit)}" if limit else "")
        with self.reading() as conn:
            return self._records(conn, sql, params, Delivery)

    def get_delivery(self, delivery_id: str) -> Delivery:
        with self.reading() as conn:
            found = self._records(conn, "SELECT * FROM deliveries WHERE id = ? OR id LIKE ? LIMIT 2",
                                  [delivery_id, f"{delivery_id}%"], Delivery)
        exact = [d for d in found if d.id == delivery_id]
        if exact or len(found) == 1:
            return (exact or found)[0]
        raise NotFound(delivery_id)

    def retry_delivery(self, delivery_id: str, expires_at: float) -> Delivery:
        delivery = self.get_delivery(delivery_id)
        with self.transaction() as conn:
            self._x(conn, "UPDATE deliveries SET state = 'pending', next_at = ?, expires_at = ? WHERE id = ?",
                    [time.time(), expires_at, delivery.id])
        return self.get_delivery(delivery.id)

    def delivery_counts(self) -> dict[str, int]:
        return dict(self._fetch("SELECT state, COUNT(*) FROM deliveries GROUP BY state"))

    def stats(self) -> dict[str, Any]:
        count = "SUM(CASE WHEN state = '{}' THEN 1 ELSE 0 END)".format
        total, ok, failed, cancelled, dups, avg_s, rtf, peak, audio = self._fetch(
            f"SELECT COUNT(*), {count('succeeded')}, {count('failed')}, {count('cancelled')}, "
            f"{count('duplicate')}, AVG(CASE WHEN state = 'succeeded' THEN processing_seconds END), "
            "AVG(CASE WHEN state = 'succeeded' AND duration > 0 THEN processing_seconds / duration END), "
            "MAX(peak_rss_mb), SUM(CASE WHEN state = 'succeeded' THEN duration END) FROM jobs")[0]
        finished = (ok or 0) + (failed or 0)
        return {
            "jobs_total": total or 0, "succeeded": ok or 0, "failed": failed or 0,
            "cancelled": cancelled or 0, "duplicates": dups or 0,
            "success_rate": (ok or 0) / finished if finished else None,
            "average_processing_seconds": avg_s, "average_real_time_factor": rtf,
            "peak_memory_mb": peak, "audio_hours_processed": (audio or 0) / 3600,
        }


class SQLiteStore(SQLStore):
    """The embedded backend: one SQLite file in WAL mode; one connection per process.

    Threads of one process (a worker's heartbeat beside its progress reports, the API's
    request threads) take turns on that connection: two transactions interleaved on one
    connection would fail ("cannot start a transaction within a transaction").
    """

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        self._turn = threading.RLock()
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 30000")
        if not readonly:
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
        # readonly callers (diarizectl) leave an empty file to the daemon that is creating it,
        # but bring an older schema forward: a CLI newer than the running daemon must still read
        if not readonly or 0 < self.schema_version() < SCHEMA_VERSION:
            self.migrate()

    def close(self) -> None:
        self.conn.close()

    # -- plumbing -----------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._turn:
            yield from self._transaction()

    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                _rollback(conn)
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            _rollback(conn)
            if any(words in str(exc) for words in _UNAVAILABLE):
                raise StoreUnavailable(f"{self.path}: {exc}") from exc
            raise

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self._turn:
            try:
                yield self.conn
            except sqlite3.OperationalError as exc:  # a reader too needs its -shm file: a full disk stops it
                if any(words in str(exc) for words in _UNAVAILABLE):
                    raise StoreUnavailable(f"{self.path}: {exc}") from exc
                raise

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    def claim_node(self, node: str) -> bool:
        return True  # the file lives in the state folder, whose flock the supervisor already holds

    def hold_inbox(self, node: str) -> bool:
        return True  # one node per SQLite store

    def schema_version(self) -> int:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0]) if row else 0

    def migrate(self, target: int = SCHEMA_VERSION) -> None:
        """Apply the frozen migrations up to `target`, all in one transaction."""
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise SchemaError(f"{self.path} has schema version {version}, newer than this "
                                  f"diarized ({SCHEMA_VERSION}); upgrade diarized")
            for step in range(version + 1, target + 1):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
            if target > version:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(target)])
        if target == SCHEMA_VERSION:
            self._check_columns()

    def _check_columns(self) -> None:
        """The migrated table must hold every Job field: catches a migration forgotten in review."""
        db = _import_sqlite_utils().Database(self.conn)
        missing = {f.name for f in fields(Job)} - set(db["jobs"].columns_dict)
        if missing:
            raise SchemaError(f"{self.path}: the jobs table lacks {', '.join(sorted(missing))}")


def safe_location(location: str) -> str:
    """A store location without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", str(location))


def open_store(location: str | Path, readonly: bool = False) -> JobStore:
    """The backend for a location: a SQLite file path (the embedded default) or a postgresql:// URL.

    A file that is not a usable store raises SchemaError, one that cannot be written or
    locked now StoreUnavailable: both name the file, neither ever deletes it.
    """
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        from diarized.store_postgres import PostgresStore  # the optional extra diarized[postgres]

        return PostgresStore(text, readonly=readonly)
    if "://" in text:
        raise SchemaError(f"store = {text!r}: only a SQLite file path or a postgresql:// URL")
    try:
        return SQLiteStore(Path(text), readonly=readonly)
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"{text}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise SchemaError(f"{text} is damaged or is not a diarized job store ({exc})") from exc
