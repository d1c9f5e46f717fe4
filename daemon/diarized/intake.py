"""Turning a complete file into a job: hash, dedupe, record, move into state/jobs/<id>/.

The one intake path: the inbox watcher calls it once it has decided a file is
complete (this module never decides that), and so will `diarizectl submit`
and the HTTP API. Recording comes first and the move second (same filesystem:
a rename, never a copy), so `reconcile()` at start can finish a claim a crash
cut in half. No media is opened here: the duration is learnt by the worker
when it decodes, so a crafted file can only ever crash a worker.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from diarized.config import Settings
from diarized.files import fsync_dir, sha256_of
from diarized.outbox import quarantine, settle_original
from diarized.store import Job, JobStore, Priority, State

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
        size = path.stat().st_size
        digest = sha256_of(path)
        job = self.store.record_incoming(path.name, digest, size, priority, self.settings.max_attempts,
                                         path, self.settings.jobs_dir)
        if job.state == State.DUPLICATE:
            return self._settle_duplicate(job, path)
        return self._move_in(job, path)

    def reject_symlink(self, path: Path) -> Path:
        folder = quarantine(self.settings, path, path.name, f"symlink-{int(time.time())}", {
            "state": "rejected", "error_type": "Symlink",
            "message": f"{path.name} is a symbolic link; links are never followed out of the inbox",
            "hint": "copy the file itself into the inbox (diarizectl submit FILE does it safely)"})
        log.warning("rejected symlink %s -> %s", path, folder)
        return folder

    def _settle_duplicate(self, job: Job, path: Path) -> Job:
        where = settle_original(self.settings, path, path.name)
        self.store.mark_duplicate_settled(job.id, where)
        log.info("duplicate of %s: %s", job.duplicate_of, path.name)
        return self.store.get(job.id)

    def _move_in(self, job: Job, inbox_path: Path) -> Job:
        source = Path(job.source_path)
        source.parent.mkdir(parents=True, exist_ok=True)
        os.replace(inbox_path, source)
        fsync_dir(source.parent)
        return self.store.mark_queued(job.id)

    def reconcile(self) -> list[str]:
        """At start: finish claims and duplicate moves that a crash interrupted."""
        notes = []
        for job in self.store.jobs(states=(State.INCOMING,)):
            source = Path(job.source_path)
            inbox_path = Path(job.inbox_path) if job.inbox_path else None
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
        return notes
