"""Moving files out of a job: atomic publication, originals to done/, quarantine to failed/.

This module only moves and writes files and returns where things went; it never
changes a job's state (lifecycle.py does, around these calls). Publication
renames the job's finished `out/` folder to outbox/<stem>/ in one step, after
every file in it is fsynced. Every published folder carries job.json and every
failed/ folder error.json naming the job, so a run repeated after a crash
recognises its own folder (`owned_by`) instead of publishing twice.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from pathlib import Path

from diarized.config import Settings
from diarized.nofollow import Entry
from diarized.files import (claim_folder, display_name, fsync_dir, fsync_tree, move_to_free_name, name_candidates,
                            remove_temporaries, sha256_of, write_json)
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


def published_files(folder: str | Path | None) -> dict[str, Path]:
    """A published folder's files by their name inside it (chunks/chunks_metadata.json, ...), sorted."""
    if not folder or not Path(folder).is_dir():
        return {}
    folder = Path(folder)
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.jobs_dir / job_id


def outputs_of(settings: Settings, job_id: str, generation: int) -> Path:
    """Where the worker of one lease generation writes its outputs: its own folder, so a node
    that lost the job, publishing late, never renames away what the new holder is writing."""
    return job_dir(settings, job_id) / f"out.{generation}"


def output_target(settings: Settings, job: Job) -> Path:
    """outbox/<stem>/, or <stem>-<short id>/, <stem>-<short id>-2/ ... when the name is taken.

    A free name is one that does not exist, is this job's own (a repeated run), or is
    an empty folder (nothing to lose: the rename that publishes replaces it atomically,
    while a rename onto a non-empty folder fails instead of overwriting).
    """
    for name in name_candidates(Path(job.source_name).stem, job.short_id):
        target = settings.outbox / name
        if not os.path.lexists(target) or owned_by(target, job.id) or _empty_dir(target):
            return target
    raise AssertionError("unreachable")


def _empty_dir(path: Path) -> bool:
    try:
        return path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    except OSError:
        return False


def publish_outputs(settings: Settings, job: Job, target: Path) -> Path:
    """Rename the job's fsynced out/ folder to `target`; a no-op when it is already there."""
    if owned_by(target, job.id):
        return target
    out = outputs_of(settings, job.id, job.lease_generation)
    if not out.is_dir():
        raise FileNotFoundError(f"job {job.id}: no outputs in {out} and none published at {target}")
    remove_temporaries(out, recursive=True)  # a worker or daemon killed mid-write left them
    write_json(out / JOB_MARKER, {
        "job_id": job.id, "source_name": job.source_name, "sha256": job.sha256,
        "attempts": job.attempts, "published_at": time.time()})
    fsync_tree(out)
    settings.outbox.mkdir(parents=True, exist_ok=True)
    os.rename(out, target)
    fsync_dir(settings.outbox)
    return target


def settle_original(settings: Settings, source: Path | Entry | None, name: str, tag: str) -> str:
    """After success: the original goes to done/ (keep) or away (delete); returns where.

    Never over another original: a taken name becomes name-<tag>.ext (tag: the job's short id).
    An Entry (a duplicate still in the inbox) is moved by its folder's descriptor, never via a link.
    """
    if source is None or not _exists(source):
        return ""
    if settings.done_policy == "delete":
        if isinstance(source, Entry):
            os.unlink(source.name, dir_fd=source.folder)
        else:
            source.unlink()
        return "deleted"
    return str(_move_free(source, settings.done, name, tag))


def _exists(source: Path | Entry) -> bool:
    if isinstance(source, Entry):
        try:
            source.lstat()
        except FileNotFoundError:
            return False
        return True
    return os.path.lexists(source)


def _move_free(source: Path | Entry, folder: Path, name: str, tag: str) -> Path:
    if isinstance(source, Entry):
        return source.move_to_free_name(folder, name, tag)
    return move_to_free_name(source, folder, name, tag)


def find_settled(settings: Settings, job: Job) -> Path | None:
    """A crash between moving the original to done/ and recording it: find it by its content."""
    for name in itertools.islice(name_candidates(job.source_name, job.short_id), 10):
        path = settings.done / name
        if path.is_file() and sha256_of(path) == job.sha256:
            return path
    return None


def forget_old_failure(settings: Settings, source: Path | None) -> None:
    """A retried job that succeeded: its failed/ folder (and error.json) are moot."""
    if source is not None and source.parent.parent == settings.failed:
        shutil.rmtree(source.parent, ignore_errors=True)


def quarantine(settings: Settings, source: Path | Entry | None, source_name: str, job_id: str,
               error: dict) -> Path:
    """failed/<stem>/ with the original (if any), worker.log and error.json; returns the original's path.

    error.json is written first: it marks the folder as this job's, so a run repeated
    after a crash at any line finds the same folder (and the original already in it).
    An Entry (a file still in the inbox) is moved as it is, a link as a link: never followed.
    """
    folder = claim_folder(settings.failed, Path(source_name).stem, short_id(job_id),
                          lambda f: owned_by(f, job_id, ERROR_MARKER))
    remove_temporaries(folder)
    write_json(folder / ERROR_MARKER, {"job_id": job_id, "file": display_name(source_name), **error})
    original = folder / source_name
    inside = isinstance(source, Path) and source.parent == folder
    if source is not None and _exists(source) and not inside:
        original = _move_free(source, folder, source_name, short_id(job_id))
    log = job_dir(settings, job_id) / "worker.log"
    if log.exists():
        shutil.copyfile(log, folder / "worker.log")
    fsync_dir(folder)
    return original


def remove_work(settings: Settings, job_id: str) -> None:
    """The job's work folder (checkpoints, source copy already moved): gone after the end."""
    shutil.rmtree(job_dir(settings, job_id), ignore_errors=True)
