"""One frozen Settings object, loaded once from TOML + DIARIZED_* environment.

Precedence: explicit overrides (CLI flags) > environment > file > default.
Unknown keys are an error everywhere, because a misspelt key that is silently
ignored is how an operator ends up with a budget they did not ask for.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import socket
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import psutil

ENV_PREFIX = "DIARIZED_"
DEFAULT_CONFIG = Path("/etc/diarized/diarized.toml")
FORMATS = ("json", "srt", "vtt", "txt", "rttm")  # the default set
ALL_FORMATS = (*FORMATS, "csv", "tsv", "docx")

# Whisper's languages (faster_whisper.tokenizer._LANGUAGE_CODES): importing faster-whisper
# here would load CTranslate2 into every process that reads a config.
WHISPER_LANGUAGES = frozenset(
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw "
    "he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my "
    "ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt "
    "uk ur uz vi yi yo zh yue".split())
COMPUTE_TYPES = ("default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                 "float16", "bfloat16", "float32")
# key -> (lowest, lowest allowed itself?, highest or None): every number's range, one table
RANGES: dict[str, tuple[float, bool, float | None]] = {
    "max_workers": (1, True, None), "max_attempts": (1, True, None), "beam_size": (1, True, None),
    "batch_size": (1, True, None), "embedding_batch_size": (1, True, None),
    "min_cluster_size": (1, True, None), "cpu_threads": (0, True, None),
    "num_speakers": (0, True, None), "min_speakers": (0, True, None), "max_speakers": (0, True, None),
    "max_memory_gb": (0, False, None), "worker_memory_gb": (0, True, None),
    "max_file_gb": (0, False, None), "settle_seconds": (0, False, None),
    "rescan_seconds": (0, False, None), "unit_timeout_seconds": (0, False, None),
    "stop_timeout_seconds": (0, False, None), "unit_seconds": (0, False, None),
    "retry_backoff_seconds": (0, True, None), "min_speaker_duration": (0, True, None),
    "short_speaker_seconds": (0, True, None), "speaker_margin": (0, True, 2.0), "one_voice_distance": (0, True, 2.0),
    "segmentation_step": (0, False, 1.0), "clustering_threshold": (0, False, 2.0),
    "webhook_retry_seconds": (0, False, None), "retention_days": (0, True, None),
    "api_url_timeout_seconds": (0, False, None), "lease_seconds": (10, True, None),
    "api_header_timeout_seconds": (0, False, None), "api_body_idle_seconds": (0, False, None),
    "api_max_connections": (16, True, None), "webhook_timeout_seconds": (0, False, None),
}
CLUSTERINGS = ("agglomerative", "spectral")
EMBEDDING_PASSES = ("shared", "window")
DIARIZATION_PRECISIONS = ("auto", "float32", "bfloat16")
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")



class ConfigError(ValueError):
    """A configuration problem, phrased for the operator who has to fix it."""


WEBHOOK_EVENTS = ("succeeded", "failed", "cancelled", "duplicate")
WEBHOOK_WINDOW_SECONDS = 86400.0  # a failing delivery is retried for a day, then failed
TOKEN_SCOPES = ("read", "submit")


@dataclass(frozen=True)
class Webhook:
    """One endpoint told about finished jobs (a [[webhooks]] table)."""

    url: str
    secret: str
    events: tuple[str, ...] = WEBHOOK_EVENTS


def default_memory_gb() -> float:
    """The seed's 28 GB on a 32 GB box, scaled down on smaller machines."""
    total = psutil.virtual_memory().total / 2**30
    return round(min(28.0, 0.85 * total), 1)


@dataclass(frozen=True)
class Settings:
    # folders
    state_dir: Path = Path("/var/lib/diarized")
    inbox_dir: Path | None = None
    outbox_dir: Path | None = None
    done_dir: Path | None = None
    failed_dir: Path | None = None
    # the job store: empty for the SQLite file under state/, or a postgresql:// URL
    store: str = ""
    # this machine's name among the nodes sharing one PostgreSQL store (and one state folder)
    node_id: str = field(default_factory=lambda: socket.gethostname().split(".")[0] or "node")
    lease_seconds: float = 120.0  # a running job whose worker is silent this long is taken over
    # scheduling and limits
    max_workers: int = 2
    max_memory_gb: float = field(default_factory=default_memory_gb)
    worker_memory_gb: float = 0.0  # 0: max_memory_gb / max_workers
    cpu_threads: int = 0  # per worker; 0: a lone job gets every core, jobs admitted together split them
    settle_seconds: float = 5.0
    rescan_seconds: float = 30.0
    unit_timeout_seconds: float = 600.0
    max_attempts: int = 3
    retry_backoff_seconds: float = 30.0  # doubled after each failed attempt
    stop_timeout_seconds: float = 30.0
    done_policy: str = "keep"
    retention_days: float = 0.0  # finished jobs' files (outputs, original) removed after this; 0: kept
    max_file_gb: float = 20.0  # larger inbox files are refused before they are hashed
    # models
    model: str = "base"
    models_dir: Path | None = None  # extra folder searched for <model>/ folders
    cache_dir: Path | None = None  # where the bundled base model is assembled
    allow_downloads: bool = False
    # transcription
    language: str = "auto"
    compute_type: str = "int8"
    beam_size: int = 5
    batch_size: int = 8  # >1: faster-whisper's batched pipeline; 1: sequential
    word_timestamps: bool = True
    initial_prompt: str = ""
    hotwords: str = ""
    unit_seconds: float = 600.0
    keep_chunks: bool = False
    # diarization
    num_speakers: int = 0
    min_speakers: int = 0
    max_speakers: int = 0  # 0: no limit (the seed's 8 silently capped crowded recordings)
    min_speaker_duration: float = 1.0
    # the speaker decision (pipeline/speakers.py), chosen on the tuning half (bench/speaker_decision.py)
    short_speaker_seconds: float = 3.0  # a cluster with less speech may be a piece of another voice...
    speaker_margin: float = 0.4  # ...and joins the nearest one unless its centroid is this far from all
    one_voice_distance: float = 0.0  # all centroids closer than this: one speaker (0: off; 0.4 merged real voices)
    # tuned on ../shared/data with bench/tune_diarization.py (README, Accuracy)
    segmentation_step: float = 0.25
    clustering_threshold: float = 0.75
    min_cluster_size: int = 2  # bench/tune_clustering.py: 4 merged real voices on long, crowded files
    diarization_clustering: str = "agglomerative"  # or "spectral" (bench/tune_clustering.py compares them)
    embedding_pass: str = "shared"  # CAM++ once over the audio; "window": once per 10-s window (pyannote's way)
    embedding_exclude_overlap: bool = False
    embedding_batch_size: int = 16
    diarization_precision: str = "auto"  # bfloat16 networks where the CPU has it natively (pipeline/precision.py)
    # outputs and logs
    formats: tuple[str, ...] = FORMATS
    log_format: str = "auto"  # auto | human | json
    log_file: Path | None = None
    # the network-facing service (`diarized api`)
    api_listen: str = "127.0.0.1:8787"  # host:port, or unix:/path
    api_tokens: tuple[str, ...] = ()  # "name:scope:sha256 of the token" (`diarizectl token new`)
    api_allowed_roots: tuple[Path, ...] = ()  # folders POST /jobs may take a server-side path from
    api_public_url: str = ""  # e.g. https://transcripts.example.org: output URLs are absolute under it
    api_url_hosts: tuple[str, ...] = ()  # hosts POST /jobs {"url"} may fetch from (".example.org", "*"); empty: off
    api_url_allow_private: bool = False  # may a fetched URL resolve to a loopback or private address?
    api_url_timeout_seconds: float = 600.0  # a whole download, from connecting to the last byte
    api_header_timeout_seconds: float = 10.0  # a connection must send its request's headers within this
    api_body_idle_seconds: float = 60.0  # a request body may pause this long, no longer
    api_max_connections: int = 1000  # then the longest-waiting idle connection is closed for a new one
    webhooks: tuple[Webhook, ...] = ()
    webhook_retry_seconds: float = 10.0  # first retry of a failed delivery; doubled, at most an hour
    webhook_timeout_seconds: float = 15.0  # one attempt, from connecting to the end of the answer

    # -- derived folders -------------------------------------------------
    @property
    def inbox(self) -> Path:
        return self.inbox_dir or self.state_dir / "inbox"

    @property
    def outbox(self) -> Path:
        return self.outbox_dir or self.state_dir / "outbox"

    @property
    def done(self) -> Path:
        return self.done_dir or self.state_dir / "done"

    @property
    def failed(self) -> Path:
        return self.failed_dir or self.state_dir / "failed"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "state" / "diarized.db"

    @property
    def store_location(self) -> str:
        """What open_store() opens: the store key, else the embedded SQLite file."""
        return self.store or str(self.db_path)

    @property
    def store_is_file(self) -> bool:
        return not self.store

    @property
    def node_dir(self) -> Path:
        """This node's own files (its lock, its workers' settings): state/ alone, or state/nodes/<node>/
        when several nodes may share the state folder through a PostgreSQL store."""
        state = self.db_path.parent
        return state if self.store_is_file else state / "nodes" / self.node_id

    @property
    def jobs_dir(self) -> Path:
        return self.state_dir / "state" / "jobs"

    @property
    def uploads(self) -> Path:
        """Where `diarizectl submit`, the Python API and the HTTP API copy a file before intake."""
        return self.state_dir / "state" / "uploads"

    @property
    def models_cache(self) -> Path:
        """Where the bundled base model is assembled once (CacheDirectory= under systemd)."""
        if self.cache_dir:
            return self.cache_dir
        xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(xdg) / "diarized" / "models"

    @property
    def threads(self) -> int:
        """Threads one pipeline run uses: cpu_threads, else every core.

        The daemon never relies on the fallback: its supervisor splits the cores
        among the jobs it admits together and gives each worker its share
        (supervisor.threads_for). The fallback serves `diarizectl transcribe`.
        """
        return self.cpu_threads if self.cpu_threads > 0 else os.cpu_count() or 1

    @property
    def folders(self) -> dict[str, Path]:
        """Every folder the daemon writes, by name: the one list start-up checks and doctor use."""
        return {"inbox": self.inbox, "outbox": self.outbox, "done": self.done, "failed": self.failed,
                "state": self.db_path.parent, "node": self.node_dir, "jobs": self.jobs_dir,
                "uploads": self.uploads}

    @property
    def per_worker_memory_gb(self) -> float:
        if self.worker_memory_gb > 0:
            return self.worker_memory_gb
        return self.max_memory_gb / max(1, self.max_workers)


KEYS = {f.name: f for f in dataclasses.fields(Settings)}


def _base_type(name: str) -> type:
    hint = typing.get_type_hints(Settings)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return args[0]
    return typing.get_origin(hint) or hint


def _coerce(name: str, value: Any) -> Any:
    """Turn a TOML or environment value into the field's type, or explain."""
    kind = _base_type(name)
    if name == "webhooks":
        return _webhooks(value)
    if name == "api_allowed_roots":
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(Path(str(i).strip()).expanduser().absolute() for i in items if str(i).strip())
    if name == "state_dir" and not str(value).strip():
        raise ConfigError("state_dir must not be empty: give the folder for inbox/, outbox/, state/")
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
        if kind is Path:
            # absolute: job records keep paths, and a client in another folder must find them
            return Path(str(value)).expanduser().absolute() if str(value).strip() else None
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}") from None


def _webhooks(value: Any) -> tuple[Webhook, ...]:
    """[[webhooks]] tables from TOML, or the same as JSON text (DIARIZED_WEBHOOKS, the worker's file)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            raise ConfigError("webhooks: expected a JSON list of {url, secret, events}") from None
    hooks = []
    for n, item in enumerate(value if isinstance(value, (list, tuple)) else [value]):
        if isinstance(item, Webhook):
            hooks.append(item)
            continue
        if not isinstance(item, dict):
            raise ConfigError(f"webhooks[{n}]: expected a table with url, secret and events")
        unknown = sorted(set(item) - {"url", "secret", "events"})
        if unknown or "url" not in item or "secret" not in item:
            raise ConfigError(f"webhooks[{n}]: needs url and secret (and optionally events); "
                              f"unknown: {', '.join(unknown) or '-'}")
        hooks.append(Webhook(str(item["url"]), str(item["secret"]),
                             tuple(item.get("events", WEBHOOK_EVENTS))))
    return tuple(hooks)


def api_problems(s: "Settings") -> list[str]:
    """Tokens, webhooks and the listen address: checked at load, explained by key."""
    problems = []
    for entry in s.api_tokens:
        parts = entry.split(":")
        if len(parts) != 3 or parts[1] not in TOKEN_SCOPES or len(parts[2]) != 64 \
                or any(c not in "0123456789abcdef" for c in parts[2]):
            problems.append(f"api_tokens: {entry[:40]!r} is not name:scope:sha256 (scope read or submit; "
                            "`diarizectl token new NAME` prints a valid entry)")
    if s.api_public_url and (not s.api_public_url.startswith(("http://", "https://"))
                             or any(c in s.api_public_url for c in "?# ")):
        problems.append(f"api_public_url must be an http:// or https:// address without query or spaces, "
                        f"like https://transcripts.example.org; not {s.api_public_url!r}")
    for hook in s.webhooks:
        if not hook.url.startswith(("http://", "https://")):
            problems.append(f"webhooks: url {hook.url!r} must start with http:// or https://")
        if len(hook.secret) < 16:
            problems.append(f"webhooks: the secret for {hook.url} must be at least 16 characters")
        bad = [e for e in hook.events if e not in WEBHOOK_EVENTS]
        if bad or not hook.events:
            problems.append(f"webhooks: events for {hook.url} must be among {', '.join(WEBHOOK_EVENTS)}")
    listen = s.api_listen
    if not listen.startswith("unix:"):
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            problems.append(f"api_listen must be host:port or unix:/path, not {listen!r}")
    return problems


def _range_problems(s: "Settings") -> list[str]:
    problems = []
    for key, (low, inclusive, high) in RANGES.items():
        value = getattr(s, key)
        if not math.isfinite(value):
            problems.append(f"{key} must be a finite number, not {value}")
        elif value < low or (value == low and not inclusive):
            problems.append(f"{key} must be {'at least' if inclusive else 'more than'} {low:g}, not {value:g}")
        elif high is not None and value > high:
            problems.append(f"{key} must be at most {high:g}, not {value:g}")
    return problems


def _validate(s: Settings) -> None:
    problems = _range_problems(s)
    if problems:  # the rules below assume sane numbers
        raise ConfigError("; ".join(problems))
    if s.language != "auto" and s.language not in WHISPER_LANGUAGES:
        problems.append(f"language must be auto or a Whisper language code (pt, en, ...), not {s.language!r}")
    if s.model.endswith(".en") and s.language not in ("auto", "en"):
        problems.append(f"model {s.model} understands English only, but language = {s.language!r}: "
                        "choose a multilingual model (base, small, ...) or language = \"en\"")
    if s.compute_type not in COMPUTE_TYPES:
        problems.append(f"compute_type must be one of {', '.join(COMPUTE_TYPES)}; not {s.compute_type!r}")
    ram_gb = psutil.virtual_memory().total / 2**30
    if s.max_memory_gb > ram_gb:
        problems.append(
            f"max_memory_gb = {s.max_memory_gb} is more than this machine's RAM "
            f"({ram_gb:.1f} GiB); lower it"
        )
    if s.per_worker_memory_gb < 1.0:
        problems.append(
            f"each worker would get {s.per_worker_memory_gb:.2f} GiB "
            "(max_memory_gb / max_workers); a worker needs at least 1 GiB: "
            "raise max_memory_gb or lower max_workers"
        )
    if s.done_policy not in ("keep", "delete"):
        problems.append(f"done_policy must be keep or delete, not {s.done_policy!r}")
    bad = [f for f in s.formats if f not in ALL_FORMATS]
    if bad or not s.formats:
        problems.append(f"formats must be a subset of {','.join(ALL_FORMATS)}; got {bad}")
    if s.embedding_pass not in EMBEDDING_PASSES:
        problems.append(f"embedding_pass must be {' or '.join(EMBEDDING_PASSES)}, not {s.embedding_pass!r}")
    if s.diarization_precision not in DIARIZATION_PRECISIONS:
        problems.append(f"diarization_precision must be {', '.join(DIARIZATION_PRECISIONS)}, "
                        f"not {s.diarization_precision!r}")
    if s.diarization_clustering not in CLUSTERINGS:
        problems.append(f"diarization_clustering must be {' or '.join(CLUSTERINGS)}, not {s.diarization_clustering!r}")
    if s.log_format not in ("auto", "human", "json"):
        problems.append("log_format must be auto, human or json")
    problems += speaker_hint_problems(s.num_speakers, s.min_speakers, s.max_speakers)
    problems += api_problems(s)
    if not NODE_NAME.fullmatch(s.node_id):
        problems.append(f"node_id must be 1-63 letters, digits, '.', '_' or '-', not {s.node_id!r}")
    if s.store and not s.store.startswith(("postgresql://", "postgres://")):
        problems.append(f"store must be empty (the SQLite file under state/) or a postgresql:// URL, "
                        f"not {s.store!r}")
    if problems:
        raise ConfigError("; ".join(problems))


def check_folders(settings: Settings) -> None:
    """Refuse at start, naming the folder, what would fail on the first file instead.

    Every folder must be creatable and writable; the inbox, outbox, done, failed and the
    job folders must be one filesystem (files move between them by rename, which cannot
    cross filesystems, and a copy could be cut in half); and none may sit inside another
    (a done/ inside the inbox would feed every original back in as a new job, forever).
    """
    for folder in (settings.state_dir, *settings.folders.values()):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {folder}: {exc.strerror}") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{folder} is not writable by this user (uid {os.getuid()})")
    named = {name: path.resolve() for name, path in settings.folders.items() if name not in ("state", "node")}
    devices = {name: path.stat().st_dev for name, path in named.items()}
    for name, device in devices.items():
        if device != devices["jobs"]:
            raise ConfigError(f"{name} folder {named[name]} is on another filesystem than "
                              f"{named['jobs']}: files are moved between them by rename; put them "
                              "on one filesystem (or leave the *_dir keys empty)")
    for name, path in named.items():
        for other, inner in named.items():
            if other != name and (inner == path or path in inner.parents):
                raise ConfigError(f"{other} folder {inner} is inside (or is) the {name} folder {path}; "
                                  "give every folder its own place")


def settings_to_json(settings: Settings) -> str:
    """Settings as the JSON a worker loads back with load_settings (paths as text, unset keys left out)."""
    def plain(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(i) for i in v]
        return v
    return json.dumps({k: plain(v) for k, v in dataclasses.asdict(settings).items() if v is not None})


def speaker_hint_problems(num: int | None, low: int | None, high: int | None) -> list[str]:
    """What is wrong with a set of speaker hints (0 or None: not given); one rule for config,
    the command line, sidecar files and the store."""
    problems = []
    for name, value in (("num_speakers", num), ("min_speakers", low), ("max_speakers", high)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            problems.append(f"{name} must be a whole number, 0 or more (0: not given), not {value!r}")
    if problems:
        return problems
    if num and (low or high):
        problems.append("num_speakers fixes the count: give it, or min_speakers/max_speakers, not both")
    if low and high and low > high:
        problems.append(f"min_speakers ({low}) is larger than max_speakers ({high})")
    return problems


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    return data


def read_env(env: Mapping[str, str]) -> dict[str, str]:
    values = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var == "DIARIZED_CONFIG":
            continue
        key = var[len(ENV_PREFIX):].lower()
        if key not in KEYS:
            raise ConfigError(f"environment variable {var}: unknown key {key}")
        values[key] = value
    return values


def default_config_file(env: Mapping[str, str] | None = None) -> Path | None:
    """$DIARIZED_CONFIG, else /etc/diarized/diarized.toml when it exists."""
    env = os.environ if env is None else env
    if env.get("DIARIZED_CONFIG"):
        return Path(env["DIARIZED_CONFIG"])
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from file, environment and overrides, then validate."""
    merged: dict[str, Any] = {}
    if config_file is not None:
        merged.update(read_toml(config_file))
    merged.update(read_env(os.environ if env is None else env))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(set(merged) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)}")
    values = {k: _coerce(k, v) for k, v in merged.items()}
    settings = Settings(**values)
    _validate(settings)
    return settings
