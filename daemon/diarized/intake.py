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
import tomllib
from dataclasses import dataclass
from pathlib import Path

from typing import BinaryIO

from diarized import uploads
from diarized.config import Settings, speaker_hint_problems
from diarized.files import display_name, fsync_dir, move_to_free_name, sha256_of
from diarized.outbox import quarantine, settle_original
from diarized.store import Job, JobStore, Priority, SpeakerHints, State
from diarized.uploads import Upload

log = logging.getLogger("diarized.intake")


@dataclass
class Intake:
    settings: Settings
    store: JobStore

    def take(self, path: Path, priority: Priority = Priority.NORMAL) -> Job | None:
        """Make `path` a job (queued, or duplicate settled in done/); None if it is not a file."""
        if path.is_symlink():
            self.reject_symlink(path)
            return None
        if not path.is_file():
            return None
        return self.take_hashed(path, priority, sha256_of(path))

    def take_hashed(self, path: Path, priority: Priority, digest: str,
                    speakers: SpeakerHints | None = None) -> Job:
        """The rest of `take` once the caller has hashed the file (the inbox does it off-loop).

        Speaker hints come from the caller, or from a sidecar <file>.toml beside the file
        (which then travels with it). A move that fails after the job is recorded fails
        the job and puts the file in failed/ with error.json; only if that too fails does
        the error reach the caller.
        """
        path = self._valid_name(path)
        if not os.access(path.parent, os.W_OK | os.X_OK):  # it could not be moved: record nothing
            raise PermissionError(errno.EACCES, "cannot move files out of this folder", str(path.parent))
        if speakers is None:
            speakers = read_sidecar(path)
        job = self.store.record_incoming(path.name, digest, path.stat().st_size, priority,
                                         self.settings.max_attempts, path, self.settings.jobs_dir,
                                         speakers)
        if job.state == State.DUPLICATE:
            return self._settle_duplicate(job, path)
        try:
            return self._move_in(job, path)
        except OSError as exc:
            error_type, message, hint = explain(path, exc)
            failed = self.store.fail(job.id, error_type, message, hint)  # never left `incoming`
            original = quarantine(self.settings, path, path.name, job.id, {
                "state": "failed", "error_type": error_type, "message": message, "hint": hint})
            self.store.set_source(job.id, str(original))
            return self.store.get(failed.id)

    def submit(self, source: Path | BinaryIO, name: str | None = None, priority: Priority = Priority.NORMAL,
               speakers: SpeakerHints = SpeakerHints()) -> Job:
        """A file from anywhere (a path, or a stream with its name) becomes a job now.

        It is copied into state/uploads/ first (uploads.py), so the caller's file is never
        moved and the job id comes back at once; the copy then takes the same path as an
        inbox file. Raises TooLarge, BadName or ValueError (bad hints) before recording anything.
        """
        problems = speaker_hint_problems(speakers.num, speakers.min, speakers.max)
        if problems:
            raise ValueError("; ".join(problems))
        with self.new_upload(name or Path(source).name) as upload:
            if isinstance(source, (str, Path)):
                with open(source, "rb") as fh:
                    upload.copy_from(fh)
            else:
                upload.copy_from(source)
            return self.take_upload(upload, priority, speakers)

    def new_upload(self, name: str) -> Upload:
        """A copy in progress, limited to max_file_gb like inbox files (the HTTP API streams into it)."""
        return Upload(self.settings.uploads, name, int(self.settings.max_file_gb * 2**30))

    def take_upload(self, upload: Upload, priority: Priority, speakers: SpeakerHints) -> Job:
        upload.commit()
        return self.take_hashed(upload.path, priority, upload.digest, speakers)

    def _valid_name(self, path: Path) -> Path:
        """A name that is not UTF-8 is renamed in place to its readable form first (bytes -> U+FFFD)."""
        readable = display_name(path.name)
        if readable == path.name:
            return path
        target = move_to_free_name(path, path.parent, readable, secrets.token_hex(3))
        log.warning("renamed %r to %s: names must be UTF-8", os.fsencode(path.name), target.name)
        return target

    def reject(self, path: Path, error_type: str, message: str, hint: str) -> Path:
        """A file that cannot become a job: failed/<stem>/ with the file and error.json."""
        folder = quarantine(self.settings, path, path.name, f"rejected-{secrets.token_hex(3)}", {
            "state": "rejected", "error_type": error_type, "message": message, "hint": hint}).parent
        log.warning("rejected %s: %s -> %s", display_name(path.name), message, folder)
        return folder

    def reject_error(self, path: Path, exc: BaseException) -> Path:
        folder = self.reject(path, *explain(path, exc))
        sidecar = sidecar_of(path)
        if sidecar.is_file():  # with its file: both in failed/, nothing left behind
            move_to_free_name(sidecar, folder, sidecar.name, folder.name)
        return folder

    def reject_symlink(self, path: Path) -> Path:
        return self.reject(path, "Symlink",
                           f"{display_name(path.name)} is a symbolic link; links are never followed "
                           "out of the inbox",
                           "copy the file itself into the inbox (diarizectl submit FILE does it safely)")

    def _settle_duplicate(self, job: Job, path: Path) -> Job:
        where = settle_original(self.settings, path, path.name, job.short_id)
        self.store.mark_duplicate_settled(job.id, where)
        log.info("duplicate of %s: %s", job.duplicate_of, path.name)
        return self.store.get(job.id)

    def _move_in(self, job: Job, inbox_path: Path) -> Job:
        source = Path(job.source_path)
        source.parent.mkdir(parents=True, exist_ok=True)
        sidecar = sidecar_of(inbox_path)
        if sidecar.is_file():  # its hints are in the job record now; it goes with its file
            os.rename(sidecar, source.parent / "hints.toml")
        os.rename(inbox_path, source)
        fsync_dir(source.parent)
        return self.store.mark_queued(job.id)
    def reconcile(self) -> list[str]:
        """At start: finish claims and duplicate moves that a crash interrupted."""
        notes = []
        for job in self.store.jobs(states=(State.INCOMING,)):
            source = Path(job.source_path)
            inbox_path = Path(job.inbox_path) if job.inbox_path else None
            if inbox_path is not None and uploads.in_live_upload(inbox_path, self.settings.uploads):
                continue  # its uploader is moving it right now
            if source.exists():
                self.store.mark_queued(job.id)
                notes.append(f"{job.id}: claim finished (file was already moved)")
            elif inbox_path is not None and inbox_path.is_file():
                self._move_in(job, inbox_path)
                notes.append(f"{job.id}: claim finished (file moved now)")
            else:
                self.store.fail(job.id, "Vanished", f"{job.source_name} disappeared from the inbox "
                                "before it was moved", "drop the file into the inbox again")
                notes.append(f"{job.id}: file vanished before it was moved")
        for job in self.store.jobs(states=(State.DUPLICATE,)):
            if job.inbox_path and Path(job.inbox_path).is_file():
                self._settle_duplicate(job, Path(job.inbox_path))
                notes.append(f"{job.id}: duplicate moved now")
        return notes + self.sweep_uploads()

    def sweep_uploads(self) -> list[str]:
        """Uploads whose writer died: complete copies become jobs, half-written ones are removed."""
        notes = []
        for folder, complete in uploads.abandoned(self.settings.uploads):
            for path in complete:
                job = self.take(path)
                if job is not None:
                    notes.append(f"{job.id}: upload {job.source_name} taken (its uploader stopped)")
            uploads.forget(folder)
            notes.append(f"removed the abandoned upload folder {folder.name}")
        return notes


SIDECAR_SUFFIX = ".toml"
SIDECAR_KEYS = ("num_speakers", "min_speakers", "max_speakers")


class SidecarError(ValueError):
    """A sidecar .toml that cannot be used: says which file and what is wrong."""


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sidecar(path: Path) -> SpeakerHints:
    """Speaker hints from <file>.toml beside `path` (none when there is no such file)."""
    sidecar = sidecar_of(path)
    if not sidecar.is_file():
        return SpeakerHints()
    name = display_name(sidecar.name)
    try:
        with sidecar.open("rb") as fh:
            data = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SidecarError(f"{name} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(SIDECAR_KEYS))
    if unknown:
        raise SidecarError(f"{name}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(SIDECAR_KEYS)}")
    problems = speaker_hint_problems(*(data.get(k) for k in SIDECAR_KEYS))
    if problems:
        raise SidecarError(f"{name}: {'; '.join(problems)}")
    return SpeakerHints(data.get("num_speakers"), data.get("min_speakers"), data.get("max_speakers"))


def explain(path: Path, exc: BaseException) -> tuple[str, str, str]:
    """(error_type, message naming the file, what to do) for an error met while taking a file."""
    name = display_name(path.name)
    if isinstance(exc, SidecarError):
        return ("BadHints", f"{name}: {exc}", "fix the .toml (see etc/diarized.toml for the keys) "
                "and drop both files into the inbox again")
    if isinstance(exc, PermissionError) and exc.filename and Path(exc.filename).is_dir():
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
