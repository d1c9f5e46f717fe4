"""Every store transition of a running or finishing job, in one place.

The supervisor decides *what* happens to a job (its worker exited 0, was
killed, ran out of attempts, was cancelled); this module makes it happen in
the one order that survives a crash at any line: files first where the store
must point at them (the outbox name is recorded before the rename), the store
last where the files are the proof (succeeded only after publication). Each
method is idempotent, so recovery at start can simply call it again.

Every method takes the job as its caller last saw it and fences the store change
with that job's lease generation (when it is running): a node whose lease another
node took over gets LeaseLost before it renames anything, and changes nothing.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from diarized import outbox, summary
from diarized.config import Settings
from diarized.files import owner_of
from diarized.store import Job, JobStore, LeaseLost, NotFound, State, storage_trouble

log = logging.getLogger("diarized.lifecycle")


def held(job: Job) -> int | None:
    """The lease generation a transition of this job is fenced with (None: it is not running)."""
    return job.lease_generation if job.state == State.RUNNING else None


def holding(store: JobStore, job_id: str, generation: int, what: str = "") -> Job:
    """The job as the store has it now, if `generation` still holds its lease; else LeaseLost
    (`what`: what this node did before it looked)."""
    job = store.get(job_id)
    if not job.runs_under(generation):
        raise LeaseLost(f"{what}job {job.id} is {job.state} under lease generation {job.lease_generation} "
                        f"on node {job.node}, not ours ({generation})")
    return job


@dataclass
class Lifecycle:
    settings: Settings
    store: JobStore

    def succeed(self, job: Job) -> Job:
        """Publish the outputs (once), settle the original, then mark succeeded (once).

        The fence before the rename is a check, and the rename may come long after it (a hard
        NFS mount, a paused node): the lease is checked again before the original moves, so a
        node that lost the job while it published leaves the original, and the store, to the
        holder, which finds the published folder and records the success (converge()).
        """
        target = Path(job.output_dir) if job.output_dir else outbox.output_target(self.settings, job)
        if not outbox.owned_by(target, job.id):
            # recorded before the rename (crash-safe), and the fence: a node whose lease is over stops here
            self.store.set_output_dir(job.id, str(target), held(job))
            outbox.publish_outputs(self.settings, job, target)
        if (generation := held(job)) is not None:
            holding(self.store, job.id, generation, f"published to {target}; the original is left to that node: ")
        source = Path(job.source_path) if job.source_path else None
        where = outbox.settle_original(self.settings, source, job.source_name, job.short_id)
        if not where and self.settings.done_policy == "keep":  # moved before a crash: find it
            where = str(outbox.find_settled(self.settings, job) or "")
        outbox.forget_old_failure(self.settings, source)
        if job.state != State.SUCCEEDED:
            self._record_summary(job, target)
            job = self.store.mark_succeeded(job.id, str(target), where or None, held(job))
        elif where:
            self.store.set_source(job.id, where)
        outbox.remove_work(self.settings, job.id)
        return self.store.get(job.id)

    def converged(self, job: Job) -> Job | None:
        """The job's published folder (job.json with its id), whichever generation wrote it, means
        success: recorded now by whoever finds it, instead of a failure or another run."""
        now = self.store.get(job.id)
        if now.output_dir and outbox.owned_by(Path(now.output_dir), job.id):
            log.info("%s: already published to %s (by an earlier lease); recording its success", job.id,
                     now.output_dir, extra={"job_id": job.id})
            return self.succeed(replace(job, output_dir=now.output_dir))  # under the caller's own lease
        return None

    def _record_summary(self, job: Job, target: Path) -> None:
        """What came out, from the published JSON; a job without one (formats without json) has none."""
        try:
            found = summary.read(target)
        except ValueError as exc:
            log.info("%s: no summary for the job record (%s)", job.id, exc, extra={"job_id": job.id})
            return
        self.store.record_summary(job.id, found, held(job))

    def repair(self) -> list[str]:
        """At start: finish what a crash left between a final state and its folders.

        A job folder still in state/jobs/ belongs to a running or queued job, or to a
        job whose end was recorded but not finished (failed before its original reached
        failed/, succeeded before its original reached done/): those are finished now,
        unless another live node ran the job (it may be finishing it this moment).
        One job whose folder cannot be repaired (made by another user, say) is left as it
        is, with what to do in the log and on its timeline, and the start goes on: no
        single job may stop the daemon.
        """
        notes = []
        others = {n.node for n in self.store.nodes() if n.up and n.node != self.settings.node_id}
        for folder in sorted(self.settings.jobs_dir.iterdir()):
            try:
                notes.append(self._repair_one(folder, others))
            except Exception as exc:  # noqa: BLE001 - one job must never stop the start
                if storage_trouble(exc):
                    raise
                notes.append(self.stuck(folder, exc))
        return [n for n in notes if n]

    def _repair_one(self, folder: Path, others: set[str]) -> str:
        try:
            job = self.store.get(folder.name)
        except NotFound:
            return f"{folder.name}: a work folder without a job; left for the operator"
        if job.node in others:
            return ""
        if job.state == State.SUCCEEDED:
            self.succeed(job)
            return f"{job.id}: succeeded; original settled and work folder removed now"
        if job.state in (State.FAILED, State.CANCELLED):
            self.quarantine(job)
            return f"{job.id}: {job.state}; original and error.json moved to failed/ now"
        return ""

    def sweep_leftovers(self, quiet_seconds: float) -> list[str]:
        """Work folders of succeeded jobs that nothing wrote to for `quiet_seconds`: removed.

        A worker of an earlier lease, taken over on another node, may write a checkpoint (and so
        recreate state/jobs/<id>/) after the job succeeded elsewhere; it stops within a heartbeat
        of finding its lease over, so a folder quiet for a lease's length is nobody's.
        """
        removed, quiet_since = [], time.time() - quiet_seconds
        for folder in sorted(self.settings.jobs_dir.iterdir()):
            try:
                job = self.store.get(folder.name)
            except NotFound:
                continue
            if job.state == State.SUCCEEDED and _newest_change(folder) < quiet_since:
                outbox.remove_work(self.settings, job.id)
                removed.append(job.id)
        return removed

    def stuck(self, folder: Path, exc: Exception) -> str:
        """A job whose files the service cannot move: logged, and an event on its timeline with the way out."""
        hint = (f"give the folder back to the service's user (chown -R {os.getuid()} '{folder}'; it belongs to "
                f"{owner_of(folder)}), then `diarizectl retry {folder.name[-6:]}`")
        message = f"its work folder {folder} cannot be cleaned up by diarized (uid {os.getuid()}): {exc}"
        log.error("%s: %s; %s", folder.name, message, hint, extra={"job_id": folder.name})
        try:
            job = self.store.get(folder.name)
        except NotFound:
            return f"{folder.name}: {message}"
        self.store.event(job.id, "stuck", f"{message}; {hint}")
        return f"{job.id}: {message}"

    def was_published(self, job: Job) -> bool:
        """A crash between the rename into outbox/ and the store update: the folder is the proof."""
        return bool(job.output_dir) and outbox.owned_by(Path(job.output_dir), job.id)

    def fail(self, job: Job, error_type: str, error: str, hint: str) -> Job:
        """-> failed now (bad input, no attempts left): original and error.json to failed/; but a job
        an earlier lease published has succeeded."""
        return self.converged(job) or self.quarantine(self.store.fail(job.id, error_type, error, hint, held(job)))

    def cancel(self, job: Job) -> Job:
        return self.quarantine(self.store.mark_cancelled(job.id, job.source_path, held(job)))

    def retry_or_fail(self, job: Job, reason: str, spend_attempt: bool, backoff: float = 0.0) -> Job:
        """Back to the queue; when that spends the last attempt, failed with error.json; but a job an
        earlier lease published has succeeded."""
        return self.converged(job) or self._quarantine_if_failed(
            self.store.requeue(job.id, reason, spend_attempt, backoff, held(job)))

    def orphaned(self, job: Job, reason: str) -> Job:
        """The daemon (or the node) died while `job` ran: back to the queue for free (never blamed on
        the file; after deaths in a row it waits a while first); published before the death: succeeded."""
        if self.was_published(job):
            return self.succeed(job)
        return self.store.requeue_after_daemon_death(job.id, reason, held(job), self.settings.retry_backoff_seconds)

    def _quarantine_if_failed(self, job: Job) -> Job:
        return self.quarantine(job) if job.state == State.FAILED else job

    def quarantine(self, job: Job) -> Job:
        """Move a failed or cancelled job's original to failed/ with error.json; clean its work."""
        source = Path(job.source_path) if job.source_path else None
        original = outbox.quarantine(self.settings, source, job.source_name, job.id, {
            "state": str(job.state), "stage": job.stage, "attempts": job.attempts,
            "error_type": job.error_type, "message": job.error,
            "hint": job.hint or "see worker.log; fix the cause and run `diarizectl retry "
                                f"{job.short_id}`, or drop the file into the inbox again",
            "failed_at": time.time()})
        self.store.set_source(job.id, str(original))
        outbox.remove_work(self.settings, job.id)
        return self.store.get(job.id)


def _newest_change(folder: Path) -> float:
    """The latest mtime in a folder tree (links not followed); now, if it cannot be read whole."""
    try:
        newest = folder.lstat().st_mtime
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
        return newest
    except OSError:
        return time.time()
