"""Watch the inbox, decide when a file is complete, and hand it to intake.

Two sources of truth, because each misses things: watchdog (inotify) for
prompt close-after-write and rename events, and a periodic full rescan for
files present at start, missed events and network mounts (NFS/SMB send no
inotify events). A file is taken:
- right after a close-after-write or rename-into-place event, if no process
  still holds it open for writing; or
- once its size and mtime are unchanged for `settle_seconds` across two looks;
and never while it has a temporary name. Hashing, recording and moving the
file are intake.py's; this module only decides when a file is complete and
which priority its folder gives it.

Directories dropped into the inbox are processed file by file (their files
keep their own names). Symlinks are never followed: they are moved, as links,
to failed/ with an explanation.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from diarized.config import Settings
from diarized.intake import Intake
from diarized.store import JobStore, Priority

log = logging.getLogger(__name__)

TEMP_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".download", ".filepart")
PRIORITY_DIRS = {"high": Priority.HIGH, "low": Priority.LOW}


def is_temporary(name: str) -> bool:
    lower = name.lower()
    return name.startswith(".") or name.endswith("~") or lower.endswith(TEMP_SUFFIXES)


def open_for_writing(path: Path) -> bool:
    """True if any process we can inspect holds `path` open with write access."""
    target = str(path.resolve())
    for proc in psutil.process_iter():
        try:
            for f in proc.open_files():
                if f.path == target and f.mode in ("w", "a", "r+", "a+", "w+"):
                    return True
        except (psutil.Error, OSError):
            continue
    return False


@dataclass
class Look:
    size: int
    mtime_ns: int
    since: float


class _Handler:
    """watchdog handler: only notes paths; all decisions happen in Inbox.tick()."""

    def __init__(self, events: "queue.Queue[tuple[str, str]]"):
        self.events = events

    def dispatch(self, event) -> None:
        if event.is_directory:
            return
        if event.event_type in ("closed", "moved"):
            path = getattr(event, "dest_path", "") or event.src_path
            self.events.put(("closed", os.fsdecode(path)))
        elif event.event_type in ("created", "modified"):
            self.events.put(("changed", os.fsdecode(event.src_path)))


class Inbox:
    def __init__(self, settings: Settings, store: JobStore):
        self.settings, self.store = settings, store
        self.intake = Intake(settings, store)
        self.root = settings.inbox
        self.looks: dict[Path, Look] = {}
        self.events: "queue.Queue[tuple[str, str]]" = queue.Queue()
        self.observer = None
        self.last_scan = float("-inf")  # the first tick scans: files present at start

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        from watchdog.observers import Observer

        for sub in ("", *PRIORITY_DIRS):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.observer = Observer()
        self.observer.schedule(_Handler(self.events), str(self.root), recursive=True)
        self.observer.start()

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)

    # -- decisions -------------------------------------------------------------------
    def priority_of(self, path: Path) -> Priority:
        rel = path.relative_to(self.root).parts
        return PRIORITY_DIRS.get(rel[0].lower(), Priority.NORMAL) if len(rel) > 1 else Priority.NORMAL

    def _eligible(self, path: Path) -> bool:
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return False
        return not any(is_temporary(part) for part in rel.parts)

    def _stable(self, path: Path, now: float) -> bool:
        try:
            st = path.lstat()
        except FileNotFoundError:
            self.looks.pop(path, None)
            return False
        look = self.looks.get(path)
        if look is None or (look.size, look.mtime_ns) != (st.st_size, st.st_mtime_ns):
            self.looks[path] = Look(st.st_size, st.st_mtime_ns, now)
            return False
        return now - look.since >= self.settings.settle_seconds

    def scan(self) -> list[Path]:
        """Every eligible entry under the inbox (files and symlinks; not following links)."""
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            base = Path(dirpath)
            dirnames[:] = [d for d in dirnames if not is_temporary(d) and not (base / d).is_symlink()]
            links = [d for d in os.listdir(base) if (base / d).is_symlink() and d not in filenames]
            for name in filenames + links:
                path = base / name
                if self._eligible(path):
                    found.append(path)
        return found

    def tick(self, now: float | None = None) -> list[str]:
        """Take every complete file; returns the ids of jobs created."""
        now = time.time() if now is None else now
        ready: list[Path] = []
        while True:
            try:
                kind, raw = self.events.get_nowait()
            except queue.Empty:
                break
            path = Path(raw)
            if not self._eligible(path) or not path.is_file():
                continue
            if kind == "closed" and not open_for_writing(path):
                ready.append(path)
            else:
                self._stable(path, now)  # start or restart the settle clock
        candidates = set(self.looks)  # files whose settle clock is running
        if now - self.last_scan >= self.settings.rescan_seconds:
            self.last_scan = now
            candidates.update(self.scan())
        for path in sorted(candidates):
            if path not in ready and (path.is_symlink() or self._stable(path, now)):
                ready.append(path)
        created = []
        for path in ready:
            self.looks.pop(path, None)
            job_id = self.claim(path)
            if job_id:
                created.append(job_id)
        return created

    # -- handing over ----------------------------------------------------------------------
    def claim(self, path: Path) -> str | None:
        job = self.intake.take(path, self.priority_of(path))
        return job.id if job else None
