"""Atomic publication of outputs, and quarantine of inputs that failed.

Publishing renames the job's finished `out/` folder to outbox/<stem>/ in one
step, after every file in it is fsynced. The chosen name is recorded in the
store before the rename and every published folder carries job.json with the
job id, so a run repeated after a crash recognises its own folder instead of
publishing twice. Nothing is deleted before its outputs are safely published.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from diarized.config import Settings
from diarized.pipeline.atomic import fsync_dir, write_json
from diarized.store import Job, Store


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    for path in sorted({p.parent for p in folder.rglob("*")} | {folder}):
        fsync_dir(path)


def _owned_by(folder: Path, job_id: str, marker: str = "job.json") -> bool:
    """Does `folder` carry `marker` naming this job? (how a re-run recognises its own work)"""
    try:
        return json.loads((folder / marker).read_text())["job_id"] == job_id
    except (OSError, ValueError, KeyError):
        return False


def _free_name(parent: Path, stem: str, job: Job) -> Path:
    """outbox/<stem>/, or outbox/<stem>-<short id>/ when another job has the stem."""
    first = parent / stem
    if not first.exists() or _owned_by(first, job.id):
        return first
    return parent / f"{stem}-{job.short_id}"


def _move_into(path: Path, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name or path.name)
    if target.exists() and target != path:
        stem, suffix = target.stem, target.suffix
        target = folder / f"{stem}-{int(time.time())}{suffix}"
    os.replace(path, target)
    fsync_dir(folder)
    return target


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.jobs_dir / job_id


def settle_original(settings: Settings, source: Path, name: str) -> str:
    """After success: the original goes to done/ (keep) or away (delete)."""
    if not source.exists():
        return ""
    if settings.done_policy == "delete":
        source.unlink()
        return "deleted"
    return str(_move_into(source, settings.done, name))


def publish(settings: Settings, store: Store, job: Job) -> Job:
    """job dir out/ -> outbox/<stem>/, original -> done/, store -> succeeded. Idempotent."""
    out = job_dir(settings, job.id) / "out"
    stem = Path(job.source_name).stem
    target = Path(job.output_dir) if job.output_dir else _free_name(settings.outbox, stem, job)
    if out.is_dir() and not _owned_by(target, job.id):
        write_json(out / "job.json", {
            "job_id": job.id, "source_name": job.source_name, "sha256": job.sha256,
            "attempts": job.attempts, "published_at": time.time()})
        _fsync_tree(out)
        if job.output_dir is None:
            store.set_output_dir(job.id, str(target))
        settings.outbox.mkdir(parents=True, exist_ok=True)
        os.rename(out, target)
        fsync_dir(settings.outbox)
    elif not _owned_by(target, job.id):
        raise FileNotFoundError(f"job {job.id}: no outputs in {out} and none published at {target}")
    source = Path(job.source_path) if job.source_path else None
    where = settle_original(settings, source, job.source_name) if source else ""
    if source is not None and source.parent.parent == settings.failed:
        shutil.rmtree(source.parent, ignore_errors=True)  # a retried job: its old error.json is moot
    done = store.mark_succeeded(job.id, str(target), where or None)
    shutil.rmtree(job_dir(settings, job.id), ignore_errors=True)
    return done


def quarantine(settings: Settings, source: Path | None, source_name: str, job_id: str,
               error: dict) -> Path:
    """failed/<stem>/ with the original (if any) and error.json saying what to do."""
    stem = Path(source_name).stem
    folder = settings.failed / stem
    if folder.exists() and not _owned_by(folder, job_id, "error.json"):
        folder = settings.failed / f"{stem}-{job_id[-6:]}"
    folder.mkdir(parents=True, exist_ok=True)
    if source is not None and source.exists() and source.parent != folder:
        os.replace(source, folder / source_name)
    log = settings.jobs_dir / job_id / "worker.log"
    if log.exists():
        shutil.copyfile(log, folder / "worker.log")
    write_json(folder / "error.json", {"job_id": job_id, "file": source_name, **error})
    fsync_dir(folder)
    return folder


def fail_job(settings: Settings, store: Store, job: Job, stage: str | None = None) -> Path:
    """Move a failed (or cancelled) job's original to failed/ with error.json; clean its work dir."""
    source = Path(job.source_path) if job.source_path else None
    folder = quarantine(settings, source, job.source_name, job.id, {
        "state": job.state, "stage": stage or job.stage, "attempts": job.attempts,
        "error_type": job.error_type, "message": job.error,
        "hint": job.hint or "see worker.log; fix the cause and run `diarizectl retry "
                            f"{job.short_id}`, or drop the file into the inbox again",
        "failed_at": time.time()})
    store.set_source(job.id, str(folder / job.source_name))
    shutil.rmtree(job_dir(settings, job.id), ignore_errors=True)
    return folder
