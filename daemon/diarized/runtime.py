"""Where a running daemon says which state root it serves, so `diarizectl` needs no flag.

The supervisor writes a small JSON file at start and removes it at exit; a
`diarizectl` started with neither --config nor --state-dir (nor their
DIARIZED_* variables) reads it. Places: $XDG_RUNTIME_DIR/diarized/ (a user's
session), /run/diarized/ (the system service's RuntimeDirectory=), and
/tmp/diarized-<uid>/ when neither is writable. Each daemon writes a file of its
own (daemon-<pid>.json), so two daemons on one machine (two state roots) are
both seen, and a client that was not told which one refuses to guess
(`find_all`). A file whose process is gone is ignored (a daemon killed with -9
cannot remove it).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from diarized.files import write_json

def file_name(pid: int) -> str:
    return f"daemon-{pid}.json"


@dataclass(frozen=True)
class RuntimeInfo:
    pid: int
    state_dir: str
    config: str | None
    paused: str | None = None  # why the daemon takes no work (its store cannot be written)


def pid_alive(pid: int | None) -> bool:
    """Does the process exist, even if it is another user's or hidden by ProtectProc=?"""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def candidates(env: Mapping[str, str] | None = None) -> list[Path]:
    env = os.environ if env is None else env
    places = []
    if env.get("XDG_RUNTIME_DIR"):
        places.append(Path(env["XDG_RUNTIME_DIR"]) / "diarized")
    places += [Path("/run/diarized"), Path(f"/tmp/diarized-{os.getuid()}")]
    return places


def publish(state_dir: Path, config: Path | None, env: Mapping[str, str] | None = None,
            paused: str | None = None) -> Path | None:
    """Write this process's file in the first writable place; None if there is none.

    It also carries a pause reason: a daemon whose disk is full cannot say so in its store.
    """
    info = RuntimeInfo(os.getpid(), str(state_dir), str(config) if config else None, paused)
    for place in candidates(env):
        try:
            place.mkdir(mode=0o755, parents=True, exist_ok=True)
            return write_json(place / file_name(info.pid), asdict(info), mode=0o644)
        except OSError:
            continue
    return None


def remove(path: Path | None) -> None:
    """Remove the file if it is still ours (another daemon may have replaced it)."""
    if path is None:
        return
    info = _read(path)
    if info is not None and info.pid == os.getpid():
        path.unlink(missing_ok=True)


MAX_BYTES = 4096  # a runtime file is a few hundred bytes


def _read(path: Path) -> RuntimeInfo | None:
    """One daemon's file; not a link, not a pipe, not more than MAX_BYTES (/tmp/diarized-<uid>/ is in a
    folder anyone could have made first), else ignored like a broken one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        try:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return None
            raw = file.read(MAX_BYTES + 1)
            return RuntimeInfo(**json.loads(raw)) if len(raw) <= MAX_BYTES else None
        except (OSError, ValueError, TypeError):
            return None


def find_all(env: Mapping[str, str] | None = None) -> list[RuntimeInfo]:
    """Every running daemon that published itself, one per state root (first place first)."""
    found: dict[str, RuntimeInfo] = {}
    for place in candidates(env):
        try:
            paths = sorted(place.glob("daemon*.json"))  # daemon.json: before each daemon had its own
        except OSError:
            continue
        for path in paths:
            info = _read(path)
            if info is not None and pid_alive(info.pid):
                found.setdefault(str(Path(info.state_dir).resolve()), info)
    return list(found.values())


def find(env: Mapping[str, str] | None = None) -> RuntimeInfo | None:
    """The running daemon, when exactly one state root is served on this machine."""
    found = find_all(env)
    return found[0] if len(found) == 1 else None


def serving(state_dir: Path, env: Mapping[str, str] | None = None) -> RuntimeInfo | None:
    """The running daemon of this state root, if it published itself."""
    root = Path(state_dir).resolve()
    return next((info for info in find_all(env) if Path(info.state_dir).resolve() == root), None)
