"""Watch the inbox, decide when a file is complete, and hand it to intake.

Two sources of truth, because each misses things: watchdog (inotify) for
prompt write, close and rename events, and a periodic full rescan for files
present at start, missed events and network mounts (NFS/SMB send no inotify
events). A file is taken only when all of these hold:
- its size and mtime have not changed for `settle_seconds` (every write, close
  or rename event restarts that window: an uploader that reopens and appends
  every second is never cut short);
- no process this daemon can see holds it open for writing, whatever the pause
  (a writer running as another user is invisible to an unprivileged daemon:
  the settle window is then the only guard, so uploaders should write under a
  temporary name and rename, as `diarizectl submit` does);
- it does not have a temporary name, and it is not already being taken.
A settled file is opened once, without following a link on the way to it or at
it (nofollow.py: an inbox writer may swap any entry for a link at any moment),
hashed through that descriptor on a background thread (a multi-GB file must not
stall the main loop and its watchdog), and must be the same unchanged inode
after it; intake moves it by its folder's descriptor and checks the far side. Recording and
moving are intake.py's. Every step for one file is guarded: whatever one file
does (unreadable, vanished, renamed mid-hash, a name that is not UTF-8, too
large), it ends in failed/ with error.json or is skipped with a back-off, and
the daemon goes on with the others.

Directories dropped into the inbox are processed file by file (their files
keep their own names), entered by descriptor down to MAX_DEPTH folders (deeper
ones are logged and left). Symlinks are never followed: they are moved, as
links, to failed/ with an explanation. If the inbox folder itself is removed or
replaced, it is made again and watched anew.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import stat
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import psutil

from diarized.config import Settings
from diarized.intake import SIDECAR_SUFFIX, Intake, explain
from diarized.nofollow import Entry, Opened, Refused, walk
from diarized.store import JobStore, Priority, storage_trouble

log = logging.getLogger(__name__)

TEMP_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".download", ".filepart")
PRIORITY_DIRS = {"high": Priority.HIGH, "low": Priority.LOW}
MAX_DEPTH = 12  # folders below the inbox; deeper ones are logged and left alone
MAX_HASHING = 32  # files opened for hashing at once (each holds two descriptors)
DEEP_LOG_SECONDS = 3600.0  # how often a folder too deep to enter is mentioned again


def is_temporary(name: str) -> bool:
    lower = name.lower()
    return name.startswith(".") or name.endswith("~") or lower.endswith(TEMP_SUFFIXES)


WRITE_MODES = ("w", "a", "r+", "a+", "w+")
BLOCK_FIRST, BLOCK_MAX = 60.0, 3600.0  # back-off for a file that cannot even be moved aside


def open_for_writing(paths: Iterable[Path]) -> set[Path]:
    """Those of `paths` that a process we can inspect holds open with write access (one sweep)."""
    wanted = {str(p.resolve()): p for p in paths}
    found: set[Path] = set()
    if not wanted:
        return found
    for proc in psutil.process_iter():
        try:
            for f in proc.open_files():
                if f.path in wanted and f.mode in WRITE_MODES:
                    found.add(wanted[f.path])
        except (psutil.Error, OSError):
            continue
    return found


def sha256_of(opened: Opened) -> str:
    """The hash of the opened file, through its descriptor (runs on the hasher thread)."""
    return opened.sha256()


@dataclass
class Hashing:
    future: Future
    entry: Entry
    opened: Opened
    priority: Priority

    def close(self) -> None:
        self.opened.close()
        self.entry.close()


@dataclass
class Blocked:
    until: float
    wait: float


@dataclass
class Look:
    size: int
    mtime_ns: int
    since: float


class _Handler:
    """watchdog handler: only notes paths; all decisions happen in Inbox.tick()."""

    def __init__(self, events: "queue.Queue[str]"):
        self.events = events

    def dispatch(self, event) -> None:
        if event.is_directory:
            return
        if event.event_type in ("closed", "moved", "created", "modified"):
            path = getattr(event, "dest_path", "") or event.src_path
            self.events.put(os.fsdecode(path))


class Inbox:
    def __init__(self, settings: Settings, store: JobStore):
        self.settings, self.store = settings, store
        self.intake = Intake(settings, store)
        self.root = settings.inbox
        self.looks: dict[Path, Look] = {}
        self.hashing: dict[Path, Hashing] = {}
        self.blocked: dict[Path, Blocked] = {}
        self.deep: dict[Path, float] = {}  # folders too deep to enter -> when they were last logged
        self.events: "queue.Queue[str]" = queue.Queue()
        self.observer = None
        self.watched: tuple[int, int] | None = None  # the inbox folder the watch is on (dev, ino)
        self.hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash")
        self.hash_file = sha256_of  # runs on the hasher thread
        self.last_scan = float("-inf")  # the first tick scans: files present at start

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        for sub in ("", *PRIORITY_DIRS):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._watch()

    def _watch(self) -> None:
        """(Re-)arm the inotify watch on the inbox folder as it is now."""
        from watchdog.observers import Observer

        self._unwatch()
        st = os.stat(self.root)
        self.observer = Observer()
        self.observer.schedule(_Handler(self.events), str(self.root), recursive=True)
        self.observer.start()
        self.watched = (st.st_dev, st.st_ino)

    def _unwatch(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
            self.observer = None

    def stop(self) -> None:
        self._unwatch()
        self.hasher.shutdown(wait=False, cancel_futures=True)
        for hashing in self.hashing.values():
            hashing.close()

    def check_folder(self) -> None:
        """The inbox folder removed (`rm -rf inbox`) or replaced while running: make it again, re-arm
        the watch and say so; a watch whose thread died (an inotify error) is re-armed too."""
        if self.watched is None:
            return  # not watching (start() was not called: tests drive tick() by hand)
        try:
            st = os.stat(self.root)
            same = (st.st_dev, st.st_ino) == self.watched
        except FileNotFoundError:
            same = False
        if same and (self.observer is None or self.observer.is_alive()):
            return
        if not same:
            log.warning("the inbox folder %s was removed or replaced; making it again and watching it anew",
                        self.root)
            self.looks.clear()
        else:
            log.warning("the watch on the inbox %s stopped; watching it anew", self.root)
        for sub in ("", *PRIORITY_DIRS):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._watch()
        self.last_scan = float("-inf")  # and look at everything in it at once

    # -- decisions -------------------------------------------------------------------
    def priority_of(self, path: Path) -> Priority:
        rel = path.relative_to(self.root).parts
        return PRIORITY_DIRS.get(rel[0].lower(), Priority.NORMAL) if len(rel) > 1 else Priority.NORMAL

    def _eligible(self, path: Path) -> bool:
        """Files to take: not temporary, and not a sidecar .toml (read with its file by intake)."""
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return False
        return not any(is_temporary(part) for part in rel.parts) and not path.name.endswith(SIDECAR_SUFFIX)

    def _lstat(self, path: Path) -> os.stat_result:
        """A look for the settle window (decisions that matter go by descriptor: nofollow.Entry)."""
        try:
            return os.lstat(path)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
        with self._entry(path) as entry:  # longer than PATH_MAX: step by step
            return entry.lstat()

    def _entry(self, path: Path) -> Entry:
        return Entry(self.root, path.relative_to(self.root))

    def _stable(self, path: Path, now: float) -> bool:
        try:
            st = self._lstat(path)
        except OSError:  # gone, or its folder became a link: the next scan sees what is there
            self.looks.pop(path, None)
            return False
        look = self.looks.get(path)
        if look is None or (look.size, look.mtime_ns) != (st.st_size, st.st_mtime_ns):
            self.looks[path] = Look(st.st_size, st.st_mtime_ns, now)
            return False
        return stat.S_ISLNK(st.st_mode) or now - look.since >= self.settings.settle_seconds

    def _restart(self, path: Path, now: float) -> None:
        """Start the file's settle window again from `now`."""
        self.looks.pop(path, None)
        self._stable(path, now)

    def scan(self, now: float = 0.0) -> list[Path]:
        """Every eligible entry under the inbox (files, links, pipes; folders entered, links not followed)."""
        found = []
        for entry in walk(self.root, MAX_DEPTH, skip_folder=is_temporary):
            path = self.root / entry.relative
            if entry.kind == "deep":
                self._note_deep(path, now)
            elif self._eligible(path):
                found.append(path)
        return found

    def _note_deep(self, path: Path, now: float) -> None:
        last = self.deep.get(path)
        if last is None or now - last >= DEEP_LOG_SECONDS:
            self.deep[path] = now
            shown = str(path.relative_to(self.root))
            log.warning("%s/%s is more than %d folders below the inbox; its files are not taken (move them "
                        "higher up)", self.root, shown if len(shown) < 120 else shown[:120] + "…", MAX_DEPTH)

    def tick(self, now: float | None = None) -> list[str]:
        """Advance every file one step; returns the ids of jobs created by this tick."""
        now = time.monotonic() if now is None else now
        self.check_folder()
        self._note_events(now)
        if now - self.last_scan >= self.settings.rescan_seconds:
            self.last_scan = now
            for path in self.scan(now):
                if path not in self.looks:
                    self._stable(path, now)
        self._start_hashing(self._settled(now), now)
        return self._finish_hashing(now)

    def _note_events(self, now: float) -> None:
        """Every write, close or rename restarts the file's settle window; none triggers a take."""
        while True:
            try:
                path = Path(self.events.get_nowait())
            except queue.Empty:
                return
            if self._eligible(path) and path not in self.hashing:
                self._restart(path, now)

    def _settled(self, now: float) -> list[Path]:
        """Files whose window has passed and that nobody holds open for writing."""
        ready = []
        for path in sorted(self.looks):
            blocked = self.blocked.get(path)
            if path in self.hashing or (blocked and now < blocked.until):
                continue
            if self._stable(path, now):
                ready.append(path)
        writing = open_for_writing(ready)
        for path in writing:
            self._restart(path, now)  # still being written: a fresh window once it stops
        return [p for p in ready if p not in writing]

    def _start_hashing(self, ready: list[Path], now: float) -> None:
        """Open each ready file once, without following links, and hash it through that descriptor."""
        for path in ready:
            if len(self.hashing) >= MAX_HASHING:
                return  # the rest stay settled and start as these finish
            self.looks.pop(path, None)
            try:
                self._open_and_hash(path)
            except Exception as exc:  # noqa: BLE001 - one file must never stop the daemon
                self._guard(path, exc, now)

    def _open_and_hash(self, path: Path) -> None:
        try:
            entry = self._entry(path)
        except Refused:  # a folder on the way became a link: that link is rejected as an entry of its own
            log.warning("%s: a folder on the way to it is a link now; not followed", path)
            return
        try:
            opened = self._open_checked(entry, path)
        except BaseException:
            entry.close()
            raise
        if opened is None:
            entry.close()
            return
        self.hashing[path] = Hashing(self.hasher.submit(self.hash_file, opened), entry, opened,
                                     self.priority_of(path))

    def _open_checked(self, entry: Entry, path: Path) -> Opened | None:
        """The file opened once; None when it went to failed/ instead (a link, a pipe, too large)."""
        try:
            opened = entry.open()
        except Refused as exc:
            self.intake.reject(entry, *explain(path, exc))
            return None
        if opened.stat.st_size > self.settings.max_file_gb * 2**30:
            opened.close()
            self.intake.reject(entry, "TooLarge", f"{path.name} is {opened.stat.st_size / 2**20:,.1f} MiB, "
                               f"over max_file_gb = {self.settings.max_file_gb:g} GiB",
                               "split the recording, or raise max_file_gb in the configuration")
            return None
        return opened

    def _finish_hashing(self, now: float) -> list[str]:
        created = []
        done = {path: hashing for path, hashing in self.hashing.items() if hashing.future.done()}
        writing = open_for_writing(done) if done else set()  # one sweep of the processes for all
        for path, hashing in done.items():
            del self.hashing[path]
            try:
                digest = hashing.future.result()
                if not hashing.entry.still(hashing.opened) or path in writing:
                    log.info("%s changed while it was hashed; waiting for it to settle again", path)
                    self._stable(path, now)
                    continue
                job = self.intake.take_hashed(hashing.entry, hashing.opened, hashing.priority, digest)
                self.blocked.pop(path, None)
                log.info("%s: %s %s", job.id, job.state, job.source_name,
                         extra={"job_id": job.id, "file": job.source_name})
                created.append(job.id)
            except Exception as exc:  # noqa: BLE001 - one file must never stop the daemon
                self._guard(path, exc, now)
            finally:
                hashing.close()
        return created

    def _guard(self, path: Path, exc: Exception, now: float) -> None:
        """A file that broke a step: failed/ with error.json, or skipped with a back-off."""
        if isinstance(exc, FileNotFoundError) and not self._exists(path):
            log.info("%s disappeared before it was taken; nothing to do", path)
            return
        if storage_trouble(exc):
            raise exc  # the disk or the store, not this file: the supervisor pauses
        try:
            with self._entry(path) as entry:
                folder = self.intake.reject_error(entry, exc)
            log.warning("%s could not be taken (%s); moved to %s with error.json", path, exc, folder)
        except Exception as again:  # noqa: BLE001
            previous = self.blocked.get(path)
            wait = min(BLOCK_MAX, previous.wait * 2) if previous else BLOCK_FIRST
            self.blocked[path] = Blocked(now + wait, wait)
            log.error("%s could not be taken (%s) nor moved to failed/ (%s); trying again in %.0f s",
                      path, exc, again, wait)

    def _exists(self, path: Path) -> bool:
        try:
            self._lstat(path)
        except OSError:
            return False
        return True

    def drain(self, now: float | None = None, timeout: float = 30.0) -> list[str]:
        """Wait for every hash in flight and finish its file (tests); returns the jobs created."""
        created, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            created += self._finish_hashing(time.monotonic() if now is None else now)
            if not self.hashing:
                break
            time.sleep(0.02)
        return created
