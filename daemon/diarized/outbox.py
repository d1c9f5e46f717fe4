"""Moving files out of a job: atomic publication, originals to done/, quarantine to failed/.

This module only moves and writes files and returns where things went; it never
changes a job's state (lifecycle.py does, around these calls). Publication
renames the job's finished `out/` folder to outbox/<stem>/ in one step, after
every file in it is fsynced. Every published folder carries job.json and every
failed/ folder error.json naming the job, so a run repeated after a crash
recognises its own folder (`owned_by`) instead of publishing twice.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from diarized.config import Settings
from diarized.files import fsync_dir, fsync_tree, write_json
from diarized.store import Job, short_id

JOB_MARKER = "job.json"
ERROR_MARKER = "error.json"


def owned_by(folder: Path, job_id: str, marker: str = JOB_MARKER) -> bool:
    """Does `folder` carry `marker` naming this job?

    How a repeated run recognises its own work: an outbox folder with job.json,
    or a failed/ folder with error.json, written by this job before a crash.
    """
    try:
        return json.loads((folder / marker).read_text())["job_id"] == job_id
    except (OSError, ValueError, KeyError, TypeError):
        return False


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.jobs_dir / job_id


def output_target(settings: Settings, job: Job) -> Path:
    """outbox/<stem>/, or outbox/<stem>-<short id>/ when another job has the stem."""
    first = settings.outbox / Path(job.source_name).stem
    if not first.exists() or owned_by(first, job.id):
        return first
    return settings.outbox / f"{first.name}-{job.short_id}"


def outputs_ready(settings: Settings, job: Job) -> bool:
    return (job_dir(settings, job.id) / "out").is_dir()


def publish_outputs(settings: Settings, job: Job, target: Path) -> Path:
    """Rename the job's fsynced out/ folder to `target`; a no-op when it is already there."""
    if owned_by(target, job.id):
        return target
    out = job_dir(settings, job.id) / "out"
    if not out.is_dir():
        raise FileNotFoundError(f"job {job.id}: no outputs in {out} and none published at {target}")
    write_json(out / JOB_MARKER, {
        "job_id": job.id, "source_name": job.source_name, "sha256": job.sha256,
        "attempts": job.attempts, "published_at": time.time()})
    fsync_tree(out)
    settings.outbox.mkdir(parents=True, exist_ok=True)
    os.rename(out, target)
    fsync_dir(settings.outbox)
    return target


def _move_into(path: Path, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name or path.name)
    if target.exists() and target != path:
        target = folder / f"{target.stem}-{int(time.time())}{target.suffix}"
    os.replace(path, target)
    fsync_dir(folder)
    return target


def settle_original(settings: Settings, source: Path | None, name: str) -> str:
    """After success: the original goes to done/ (keep) or away (delete); returns where."""
    if source is None or not source.exists():
        return ""
    if settings.done_policy == "delete":
        source.unlink()
        return "deleted"
    return str(_move_into(source, settings.done, name))


def forget_old_failure(settings: Settings, source: Path | None) -> None:
    """A retried job that succeeded: its failed/ folder (and error.json) are moot."""
    if source is not None and source.parent.parent == settings.failed:
        shutil.rmtree(source.parent, ignore_errors=True)


def quarantine(settings: Settings, source: Path | None, source_name: str, job_id: str,
               error: dict) -> Path:
    """failed/<stem>/ with the original (if any), worker.log and error.json saying what to do."""
    stem = Path(source_name).stem
    folder = settings.failed / stem
    if folder.exists() and not owned_by(folder, job_id, ERROR_MARKER):
        folder = settings.failed / f"{stem}-{short_id(job_id)}"
    folder.mkdir(parents=True, exist_ok=True)
    if source is not None and source.exists() and source.parent != folder:
        os.replace(source, folder / source_name)
    log = job_dir(settings, job_id) / "worker.log"
    if log.exists():
        shutil.copyfile(log, folder / "worker.log")
    write_json(folder / ERROR_MARKER, {"job_id": job_id, "file": source_name, **error})
    fsync_dir(folder)
    return folder


def remove_work(settings: Settings, job_id: str) -> None:
    """The job's work folder (checkpoints, source copy already moved): gone after the end."""
    shutil.rmtree(job_dir(settings, job_id), ignore_errors=True)
