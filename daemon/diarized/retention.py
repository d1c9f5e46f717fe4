"""Removing a job's files: DELETE /jobs/{id}, `diarizectl delete`, and retention_days.

Only what the job owns is removed, and only inside the service's own folders:
its published folder if the job.json there names it, its original where the
store says it is (a file in done/, or its whole failed/ folder if error.json
there names it), and its work folder under state/jobs/. A link is removed as a
link, never followed (shutil.rmtree works by descriptors and does not descend
into links). A delete changes the store first, so no worker can claim the job
meanwhile; a crash before the files go leaves files nothing points at, never a
job pointing at files half gone. Expiry removes the files first and records it
after, so a sweep cut short is simply repeated.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from diarized.config import Settings
from diarized.outbox import ERROR_MARKER, JOB_MARKER, job_dir, owned_by
from diarized.store import Job, JobStore

log = logging.getLogger("diarized.retention")

SWEEP_SECONDS = 600.0  # how often the inbox-holding supervisor looks for expired jobs
SWEEP_BATCH = 200  # jobs per sweep: a year's backlog is cleared over some ticks, never in one


@dataclass
class Removed:
    """What went: paths and their bytes; problems are paths that could not be removed, and why."""

    paths: list[Path] = field(default_factory=list)
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = f"removed {len(self.paths)} item(s), {self.bytes / 2**20:.1f} MiB"
        return text + (f"; could not remove: {'; '.join(self.problems)}" if self.problems else "")


def owned_paths(settings: Settings, job: Job) -> list[Path]:
    """The job's own files and folders, each inside the folder it must be in."""
    found: list[Path] = []
    if job.output_dir and _inside(Path(job.output_dir), settings.outbox) \
            and owned_by(Path(job.output_dir), job.id, JOB_MARKER):
        found.append(Path(job.output_dir))
    if job.source_path and job.source_path != "deleted":
        source = Path(job.source_path)
        if _inside(source, settings.failed) and owned_by(source.parent, job.id, ERROR_MARKER):
            found.append(source.parent)
        elif _inside(source, settings.done):
            found.append(source)
    found.append(job_dir(settings, job.id))
    return found


def remove_files(settings: Settings, job: Job) -> Removed:
    removed = Removed()
    for path in owned_paths(settings, job):
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            removed.problems.append(f"{path}: {exc.strerror}")
            continue
        try:
            if stat.S_ISDIR(info.st_mode):
                size = _tree_bytes(path)
                shutil.rmtree(path)
            else:
                size = info.st_size
                path.unlink()
        except OSError as exc:
            removed.problems.append(f"{path}: {exc.strerror}")
            continue
        removed.paths.append(path)
        removed.bytes += size
    return removed


def delete(settings: Settings, store: JobStore, job_id: str) -> tuple[Job, Removed]:
    """The job's rows, then its files. InvalidTransition (from the store) while it runs."""
    job = store.delete(store.get(job_id).id)
    removed = remove_files(settings, job)
    log.info("deleted job %s (%s, %s): %s", job.id, job.source_name, job.state, removed.describe(),
             extra={"job_id": job.id})
    return job, removed


def expire(settings: Settings, store: JobStore, now: float | None = None, limit: int = SWEEP_BATCH) -> list[Job]:
    """Finished jobs older than retention_days lose their files (rows and events stay); 0 days: off."""
    if settings.retention_days <= 0:
        return []
    cutoff = (time.time() if now is None else now) - settings.retention_days * 86400
    expired = []
    for job in store.expiring(cutoff, limit):
        removed = remove_files(settings, job)
        detail = f"retention_days {settings.retention_days:g}: {removed.describe()}"
        if store.mark_expired(job.id, detail):
            log.info("job %s expired: %s", job.id, detail, extra={"job_id": job.id})
            expired.append(job)
    return expired


def _inside(path: Path, folder: Path) -> bool:
    """Is `path` directly or deeper below `folder`, by their real locations (the path's own last
    component is not resolved: a link there is removed as itself)?"""
    try:
        parent = Path(os.path.realpath(path.parent))
        return parent == Path(os.path.realpath(folder)) or Path(os.path.realpath(folder)) in parent.parents
    except OSError:
        return False


def _tree_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
