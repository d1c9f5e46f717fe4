"""Turning a complete file into a job: hash, dedupe, record, move into state/jobs/<id>/.

The one intake path: the inbox watcher calls it once it has decided a file is
complete (this module never decides that), and so will `diarizectl submit`
and the HTTP API. Recording comes first and the move second (same filesystem:
a rename, never a copy), so `reconcile()` at start can finish a claim a crash
cut in half. No media is opened here: the duration is learnt by the worker
when it decodes, so a crafted file can only ever crash a worker.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePath

from typing import BinaryIO

from diarized import uploads
from diarized.config import Settings, speaker_hint_problems
from diarized.files import display_name
from diarized.nofollow import Entry, Opened, Refused, Swapped
from diarized.options import KEYS as OPTION_KEYS
from diarized.options import OptionError
from diarized.options import parse as parse_options
from diarized.options import problems as option_problems
from diarized.outbox import quarantine, settle_original
from diarized.store import Job, JobOptions, JobStore, Priority, SpeakerHints, State
from diarized.uploads import Upload

log = logging.getLogger("diarized.intake")


@dataclass
class Intake:
    settings: Settings
    store: JobStore

    def take(self, entry: Entry, priority: Priority = Priority.NORMAL) -> Job:
        """Make a complete file a job (queued, or duplicate settled in done/): opened once, hashed
        through that descriptor, moved by its folder's descriptor. Refused for a link or a pipe."""
        with entry.open() as opened:
            return self.take_hashed(entry, opened, priority, opened.sha256())

    def take_hashed(self, entry: Entry, opened: Opened, priority: Priority, digest: str,
                    speakers: SpeakerHints | None = None, options: JobOptions | None = None) -> Job:
        """The rest of `take` once the caller has hashed `opened` (the inbox does it off-loop).

        The caller has checked that the entry still names that inode, unchanged; the move
        checks it once more on the far side (a swap in between fails the job, see _move_in).
        Speaker hints and options come from the caller, or from a sidecar <file>.toml beside
        the file (which then travels with it). A move that fails after the job is recorded fails
        the job and puts the file in failed/ with error.json; only if that too fails does
        the error reach the caller.
        """
        renamed = self._valid_name(entry)
        try:
            return self._record_and_move(renamed, opened, priority, digest, speakers, options)
        finally:
            if renamed is not entry:
                renamed.close()

    def _record_and_move(self, entry: Entry, opened: Opened, priority: Priority, digest: str,
                         speakers: SpeakerHints | None, options: JobOptions | None) -> Job:
        if not os.access(".", os.W_OK | os.X_OK, dir_fd=entry.folder):  # it could not be moved: record nothing
            raise PermissionError(errno.EACCES, "cannot move files out of this folder", str(entry.path.parent))
        if speakers is None:
            speakers, options = read_sidecar(entry.sibling(sidecar_name(entry.name)), self.settings)
        job = self.store.record_incoming(entry.name, digest, opened.stat.st_size, priority,
                                         self.settings.max_attempts, entry.path, self.settings.jobs_dir,
                                         speakers, options or JobOptions())
        if job.state == State.DUPLICATE:
            return self._settle_duplicate(job, entry)
        try:
            return self._move_in(job, entry, opened)
        except OSError as exc:
            error_type, message, hint = explain(entry.path, exc)
            failed = self.store.fail(job.id, error_type, message, hint)  # never left `incoming`
            where: Path | Entry = Path(job.source_path) if isinstance(exc, Swapped) else entry
            original = quarantine(self.settings, where, entry.name, job.id, {
                "state": "failed", "error_type": error_type, "message": message, "hint": hint})
            self.store.set_source(job.id, str(original))
            return self.store.get(failed.id)

    def submit(self, source: Path | BinaryIO, name: str | None = None, priority: Priority = Priority.NORMAL,
               speakers: SpeakerHints = SpeakerHints(), options: JobOptions = JobOptions()) -> Job:
        """A file from anywhere (a path, or a stream with its name) becomes a job now.

        It is copied into state/uploads/ first (uploads.py), so the caller's file is never
        moved and the job id comes back at once; the copy then takes the same path as an
        inbox file. Raises TooLarge, BadName or ValueError (bad hints or options: OptionError)
        before recording anything.
        """
        problems = speaker_hint_problems(speakers.num, speakers.min, speakers.max)
        if problems:
            raise ValueError("; ".join(problems))
        problems = option_problems(options, self.settings)
        if problems:
            raise OptionError("; ".join(problems))
        with self.new_upload(name or Path(source).name) as upload:
            if isinstance(source, (str, Path)):
                with open(source, "rb") as fh:
                    upload.copy_from(fh)
            else:
                upload.copy_from(source)
            return self.take_upload(upload, priority, speakers, options)

    def new_upload(self, name: str) -> Upload:
        """A copy in progress, limited to max_file_gb like inbox files (the HTTP API streams into it)."""
        return Upload(self.settings.uploads, name, int(self.settings.max_file_gb * 2**30))

    def take_upload(self, upload: Upload, priority: Priority, speakers: SpeakerHints,
                    options: JobOptions = JobOptions()) -> Job:
        upload.commit()
        with Entry(self.settings.uploads, PurePath(upload.folder.name, upload.name)) as entry, \
                entry.open() as opened:
            return self.take_hashed(entry, opened, priority, upload.digest, speakers, options)

    def _valid_name(self, entry: Entry) -> Entry:
        """A name that is not UTF-8 is renamed in place to its readable form first (bytes -> U+FFFD)."""
        readable = display_name(entry.name)
        if readable == entry.name:
            return entry
        renamed = entry.rename_here(readable, secrets.token_hex(3))
        log.warning("renamed %r to %s: names must be UTF-8", os.fsencode(entry.name), renamed.name)
        return renamed

    def reject(self, entry: Entry, error_type: str, message: str, hint: str) -> Path:
        """A file that cannot become a job: failed/<stem>/ with the file (as it is) and error.json."""
        name = display_name(entry.name)
        folder = quarantine(self.settings, entry, name, f"rejected-{secrets.token_hex(3)}", {
            "state": "rejected", "error_type": error_type, "message": message, "hint": hint}).parent
        log.warning("rejected %s: %s -> %s", name, message, folder)
        return folder

    def reject_error(self, entry: Entry, exc: BaseException) -> Path:
        folder = self.reject(entry, *explain(entry.path, exc))
        with entry.sibling(sidecar_name(entry.name)) as sidecar:  # with its file: both in failed/
            try:
                sidecar.lstat()
            except FileNotFoundError:
                return folder
            sidecar.move_to_free_name(folder, display_name(sidecar.name), folder.name)
        return folder

    def reject_symlink(self, entry: Entry) -> Path:
        return self.reject(entry, *explain(entry.path, Refused("Symlink", entry.path, "is a symbolic link")))

    def _settle_duplicate(self, job: Job, entry: Entry) -> Job:
        where = settle_original(self.settings, entry, entry.name, job.short_id)
        self.store.mark_duplicate_settled(job.id, where)
        log.info("duplicate of %s: %s", job.duplicate_of, entry.name)
        return self.store.get(job.id)

    def _move_in(self, job: Job, entry: Entry, opened: Opened) -> Job:
        """Into state/jobs/<id>/ by the inbox folder's descriptor; the far side must be `opened`'s inode.

        A name swapped (for a link, say) in the instant between the last check and the rename
        raises Swapped: what was moved is then put aside by the caller and never read.
        """
        source = Path(job.source_path)
        source.parent.mkdir(parents=True, exist_ok=True)
        with entry.sibling(sidecar_name(entry.name)) as sidecar:
            if sidecar.is_regular():  # its hints are in the job record now; it goes with its file
                sidecar.move_to(source.parent / "hints.toml")
        entry.move_to(source, opened)
        return self.store.mark_queued(job.id)

    def reconcile(self) -> list[str]:
        """At start: finish claims and duplicate moves that a crash interrupted."""
        notes = []
        for job in self.store.jobs(states=(State.INCOMING,)):
            try:
                notes.append(self._finish_claim(job))
            except OSError as exc:  # one job's files must not stop the start
                notes.append(self._fail_claim(job, "Unmovable", f"{job.source_name} could not be moved into "
                                              f"its job folder: {exc}", "check the folder's permissions, then "
                                              "drop the file into the inbox again"))
        for job in self.store.jobs(states=(State.DUPLICATE,)):
            entry = self._entry_of(job.inbox_path)
            if entry is not None:
                with entry:
                    try:
                        if entry.is_regular():
                            self._settle_duplicate(job, entry)
                            notes.append(f"{job.id}: duplicate moved now")
                    except OSError as exc:  # left where it is; the next start tries again
                        notes.append(f"{job.id}: its duplicate original could not be moved to done/: {exc}")
        return [n for n in notes if n] + self.sweep_uploads()

    def _finish_claim(self, job: Job) -> str:
        """One `incoming` job: its file already moved, still where it was found, or gone."""
        source = Path(job.source_path)
        if job.inbox_path and uploads.in_live_upload(Path(job.inbox_path), self.settings.uploads):
            return ""  # its uploader is moving it right now
        if os.path.lexists(source):
            if not stat.S_ISREG(os.lstat(source).st_mode):  # swapped in at the crash's moment
                return self._put_aside(job, source)
            self.store.mark_queued(job.id)
            return f"{job.id}: claim finished (file was already moved)"
        entry = self._entry_of(job.inbox_path)
        if entry is not None:
            with entry:
                try:
                    opened = entry.open()
                except (OSError, Refused):
                    opened = None
                if opened is not None:
                    with opened:
                        if opened.sha256() == job.sha256:
                            self._move_in(job, entry, opened)
                            return f"{job.id}: claim finished (file moved now)"
        return self._fail_claim(job, "Vanished", f"{job.source_name} disappeared from the inbox (or changed) "
                                "before it was moved", "drop the file into the inbox again")

    def _fail_claim(self, job: Job, error_type: str, message: str, hint: str) -> str:
        self.store.fail(job.id, error_type, message, hint)
        return f"{job.id}: {message}"

    def _put_aside(self, job: Job, source: Path) -> str:
        error_type, message, hint = explain(source, Swapped(source))
        self.store.fail(job.id, error_type, message, hint)
        original = quarantine(self.settings, source, job.source_name, job.id, {
            "state": "failed", "error_type": error_type, "message": message, "hint": hint})
        self.store.set_source(job.id, str(original))
        return f"{job.id}: {message}"

    def _entry_of(self, recorded: str | None) -> Entry | None:
        """The inbox or upload entry a job recorded, entered without following links; None if gone."""
        if not recorded:
            return None
        path = Path(recorded)
        for root in (self.settings.inbox, self.settings.uploads):
            if root in path.parents:
                try:
                    return Entry(root, path.relative_to(root))
                except (OSError, ValueError):
                    return None
        return None

    def sweep_uploads(self) -> list[str]:
        """Uploads whose writer died: complete copies become jobs, half-written ones are removed."""
        notes = []
        for folder, complete in uploads.abandoned(self.settings.uploads):
            for path in complete:
                with Entry(self.settings.uploads, PurePath(folder.name, path.name)) as entry:
                    job = self.take(entry)
                notes.append(f"{job.id}: upload {job.source_name} taken (its uploader stopped)")
            uploads.forget(folder)
            notes.append(f"removed the abandoned upload folder {folder.name}")
        return notes


SIDECAR_SUFFIX = ".toml"
SIDECAR_KEYS = ("num_speakers", "min_speakers", "max_speakers", *OPTION_KEYS)
# Three numbers and a few options fit in a few hundred bytes. tomllib's cost grows with the square of a dotted
# key's length (40 KB: 7 s and 1.5 GiB), so a sidecar is refused unread past this size:
# at 4 KiB the worst key costs about 50 ms and 20 MiB.
SIDECAR_MAX_BYTES = 4096


class SidecarError(ValueError):
    """A sidecar .toml that cannot be used: says which file and what is wrong."""


def sidecar_name(name: str) -> str:
    return name + SIDECAR_SUFFIX


def read_sidecar(sidecar: Entry, settings: Settings) -> tuple[SpeakerHints, JobOptions]:
    """Speaker hints and options from <file>.toml beside a file (none when there is no such file).

    Opened without following a link (a link to a service-only file would put its keys
    in an error.json), size-checked by its descriptor, and read no further than the cap.
    """
    name = display_name(sidecar.name)
    try:
        opened = sidecar.open()
    except FileNotFoundError:
        return SpeakerHints(), JobOptions()
    except Refused as exc:
        raise SidecarError(f"{name} {exc.strerror}; a sidecar must be a plain file (links are never "
                           "followed)") from None
    except PermissionError:
        raise SidecarError(f"{name} cannot be read by diarized (uid {os.getuid()}): permission denied") from None
    with opened:
        raw = opened.read(SIDECAR_MAX_BYTES + 1)
    if len(raw) > SIDECAR_MAX_BYTES:
        raise SidecarError(f"{name} is larger than {SIDECAR_MAX_BYTES} bytes; a sidecar holds at most "
                           f"{', '.join(SIDECAR_KEYS)}")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SidecarError(f"{name} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(SIDECAR_KEYS))
    if unknown:
        raise SidecarError(f"{name}: unknown key(s) {', '.join(unknown)[:200]}; allowed: {', '.join(SIDECAR_KEYS)}")
    problems = speaker_hint_problems(*(data.get(k) for k in ("num_speakers", "min_speakers", "max_speakers")))
    if problems:
        raise SidecarError(f"{name}: {'; '.join(problems)}")
    try:
        options = parse_options(data, settings)
    except OptionError as exc:
        raise SidecarError(f"{name}: {exc}") from None
    return SpeakerHints(data.get("num_speakers"), data.get("min_speakers"), data.get("max_speakers")), options


def explain(path: Path, exc: BaseException) -> tuple[str, str, str]:
    """(error_type, message naming the file, what to do) for an error met while taking a file."""
    name = display_name(path.name)
    if isinstance(exc, SidecarError):
        return ("BadHints", f"{name}: {exc}", "fix the .toml (see etc/diarized.toml for the keys) "
                "and drop both files into the inbox again")
    if isinstance(exc, Refused) and exc.kind == "Symlink":
        return ("Symlink", f"{name} is a symbolic link (or a folder on the way to it is); links are never "
                "followed out of the inbox", "copy the file itself into the inbox (diarizectl submit FILE "
                "does it safely)")
    if isinstance(exc, Refused):
        return ("NotAFile", f"{name} is not a regular file (a pipe, socket or device)",
                "drop the recording itself into the inbox")
    if isinstance(exc, Swapped):
        return ("Swapped", f"{name} was replaced (by a link or another file) while it was being taken; "
                "nothing of what replaced it was read", "drop the file into the inbox again and leave it "
                "unchanged once it is complete")
    if isinstance(exc, PermissionError) and exc.filename and os.path.isdir(exc.filename):
        return ("Unmovable", f"{name}: diarized (uid {os.getuid()}) cannot move files out of "
                f"{exc.filename}", "make that folder writable by the service's group (chmod g+w)")
    if isinstance(exc, PermissionError):
        return ("Unreadable", f"{name}: permission denied for diarized (uid {os.getuid()})",
                f"make the file readable by the service's group (chmod g+r '{name}') and drop it again")
    if isinstance(exc, OSError) and exc.errno == errno.EXDEV:
        return ("OtherFilesystem", f"{name} is on another filesystem than the state folder, so it "
                "cannot be moved in one step", "drop files into the inbox itself, not a mount inside it")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return ("DiskFull", f"{name}: no space left on the device", "free disk space, then drop it again")
    return (type(exc).__name__, f"{name}: {exc}", "check the file and drop it into the inbox again")
