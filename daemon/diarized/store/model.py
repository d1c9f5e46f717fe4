"""The job model: states, priorities, the records the store hands out, and its errors.

Plain data, no SQL: every backend returns these, and every caller (supervisor,
workers, API, CLI) reads them.
"""

from __future__ import annotations

import enum
import errno
import functools
import json
import re
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from diarized.runtime import pid_alive



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


def _wait(seconds: float | None, now: float = 0.0) -> dict[str, Any]:
    """A job's not-before `seconds` from `now` (the store's clock) and on this boot's monotonic clock
    (see JobStore.claimable); None: due at once."""
    if seconds is None:
        return {"not_before": 0.0, "wait_mono": None, "wait_boot": None}
    return {"not_before": now + seconds, "wait_mono": time.monotonic() + seconds, "wait_boot": boot_id()}


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




class SchemaError(RuntimeError):
    """The database is not a schema this diarized can use."""


def safe_location(location: str) -> str:
    """A store location without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", str(location))
