"""kill -9, over and over: the daemon (at named points of claim, hashing, publication and the
store updates around them) and its workers, on a seeded schedule, until the batch drains.

Real recordings from ../shared/data go in; the workers are fake_worker.py (a model run per
kill would take hours), the daemon, store, folders and signals are real. Afterwards every
input is exactly once in outbox/ (outputs identical to an undisturbed run's) or in failed/
with error.json, the store agrees with the folders, and nothing is left behind. The short
run is in `make test`; `make chaos` (CHAOS_FILES=60 CHAOS_MIN_KILLS=100) is the long one.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import time
from pathlib import Path

from diarized.store import FINAL_STATES, State, open_store
import pytest

from tests.harness import Daemon, worker_pids

pytestmark = pytest.mark.chaos

FILES = int(os.environ.get("CHAOS_FILES", "12"))
MIN_KILLS = int(os.environ.get("CHAOS_MIN_KILLS", "25"))
SEED = int(os.environ.get("CHAOS_SEED", "20261127"))
DAEMON_KILL_PROBABILITY = 0.12  # per armed point, before and after each
WORKER_KILL_PROBABILITY = 0.05  # per 0.1-s look while a worker of this daemon runs


def recordings(data: Path, count: int, folder: Path) -> list[Path]:
    """`count` distinct files made from the real recordings (a few bytes appended: new content)."""
    sources = sorted(p for p in data.glob("*/*") if p.suffix in (".wav", ".flac"))
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for n in range(count):
        source = sources[n % len(sources)]
        target = folder / f"{n:03d}-{source.stem}{source.suffix}"
        target.write_bytes(source.read_bytes() + b"\0" * (n // len(sources)))
        made.append(target)
    return made


def expected_output(name: str) -> dict:
    """What fake_worker.py writes for a file that is not a script, as an undisturbed run does."""
    from tests.support.fake_worker import document

    return document(name, {})


def test_kill_9_at_every_phase_loses_and_duplicates_nothing(tmp_path, models_cache, data):
    rng = random.Random(SEED)
    log = tmp_path / "chaos.log"
    root = tmp_path / "var"
    d = Daemon(root, models_cache, fake_workers=True, chaos=f"{SEED}:{DAEMON_KILL_PROBABILITY}:{log}",
               max_attempts=50, max_workers=2, retry_backoff_seconds=0.1)
    made = recordings(data, FILES + 40, tmp_path / "inputs")  # the rest: waves, if needed
    files = made[:FILES]
    d.start(wait=False)
    try:
        restarts, worker_kills = _run_until_drained(d, rng, made, files, log)
    finally:
        if d.proc.poll() is None:
            d.stop()

    phases = collections.Counter(log.read_text().splitlines())
    report = {"files": len(files), "daemon_kills": sum(phases.values()), "daemon_kills_by_phase": phases,
              "daemon_restarts": restarts, "worker_kills": worker_kills}
    store = open_store(root / "state/diarized.db", readonly=True)
    jobs = store.jobs()
    report["outcomes"] = collections.Counter(str(j.state) for j in jobs)
    report["resumes"] = sum(1 for j in jobs for e in store.events(j.id) if e.kind == "requeued")
    (tmp_path / "chaos-report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))

    assert report["daemon_kills"] >= MIN_KILLS and worker_kills > 0
    assert store.integrity_check() == "ok"
    by_name = collections.defaultdict(list)
    for job in jobs:
        by_name[job.source_name].append(job)
    assert sorted(by_name) == sorted(p.name for p in files)
    for name, copies in by_name.items():
        assert len(copies) == 1, f"{name} became {len(copies)} jobs"
        _folders_agree(root, copies[0])
    published = [json.loads((p / "job.json").read_text())["job_id"] for p in (root / "outbox").iterdir()]
    assert sorted(published) == sorted(j.id for j in jobs if j.state == State.SUCCEEDED)  # once each
    assert list((root / "state/jobs").iterdir()) == []
    assert [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".part")] == []
    assert [p for p in (root / "inbox").rglob("*") if p.is_file()] == []
    assert not worker_pids(root)


def _run_until_drained(d: Daemon, rng: random.Random, made: list[Path], files: list[Path],
                       log: Path) -> tuple[int, int]:
    """Restart the daemon whenever chaos kills it, kill its workers now and then, and add
    waves of files until enough kills happened; returns (restarts, worker kills)."""
    root = d.root
    _drop(root, files)
    restarts, worker_kills, deadline = 0, 0, time.monotonic() + 600
    while time.monotonic() < deadline:
        if d.proc.poll() is not None:
            restarts += 1
            probability = DAEMON_KILL_PROBABILITY if _kills(log) < MIN_KILLS else 0.0
            d.chaos = f"{SEED + restarts}:{probability}:{log}"
            d.start(wait=False)
        elif _drained(root, len(files)):
            if _kills(log) >= MIN_KILLS:
                return restarts, worker_kills
            wave = made[len(files):len(files) + 4]  # drained too soon: another wave of files
            files += wave  # the caller's list: it checks every file dropped
            _drop(root, wave)
        else:
            ours = sorted(worker_pids(root))
            if ours and (worker_kills == 0 or rng.random() < WORKER_KILL_PROBABILITY):
                os.kill(rng.choice(ours), signal.SIGKILL)
                worker_kills += 1
        time.sleep(0.1)
    raise AssertionError(f"not drained in time; {d.log.read_text()[-3000:]}")


def _drop(root: Path, paths: list[Path]) -> None:
    """As an uploader should: a hidden temporary name, then a rename into place."""
    (root / "inbox").mkdir(parents=True, exist_ok=True)
    for path in paths:
        tmp = root / "inbox" / f".{path.name}.part"
        tmp.write_bytes(path.read_bytes())
        tmp.rename(root / "inbox" / path.name)


def _kills(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _drained(root: Path, count: int) -> bool:
    db = root / "state/diarized.db"
    if not db.exists():
        return False
    try:
        jobs = open_store(db, readonly=True).jobs()
    except Exception:  # noqa: BLE001 - the schema is being created by a fresh daemon
        return False
    return len(jobs) >= count and all(j.state in FINAL_STATES for j in jobs)


def _folders_agree(root: Path, job) -> None:
    """succeeded <=> outputs in outbox/ and the original in done/; failed <=> original + error.json in failed/."""
    if job.state == State.SUCCEEDED:
        out = Path(job.output_dir)
        assert json.loads((out / "job.json").read_text())["job_id"] == job.id
        assert json.loads((out / "final_transcription.json").read_text()) == expected_output(job.source_name)
        assert Path(job.source_path).parent == root / "done" and Path(job.source_path).exists()
    else:
        assert job.state == State.FAILED, f"{job.source_name} ended {job.state}"
        folder = Path(job.source_path).parent
        assert folder.parent == root / "failed" and Path(job.source_path).exists()
        assert json.loads((folder / "error.json").read_text())["job_id"] == job.id


SUPERVISOR_KILLS = 8


def test_supervisor_kills_during_jobs_never_fail_a_file(tmp_path, models_cache):
    """The blame rule: before, 4 of 8 files failed as DaemonDied ("the file is the likely cause")
    after 8 random supervisor kills. A daemon's death is no evidence against a file."""
    rng = random.Random(SEED)
    d = Daemon(tmp_path / "var", models_cache, fake_workers=True, max_workers=2)  # max_attempts: the default 3
    d.start()
    names = [f"talk-{n}.wav" for n in range(8)]
    for name in names:
        (d.inbox / name).write_text(json.dumps({"runs": [{"exit": 0, "seconds": 3}], "name": name}))
    for _ in range(SUPERVISOR_KILLS):
        wait_until_running(d)
        time.sleep(rng.uniform(0.1, 1.5))
        d.kill9()
        d.start()
    jobs = d.wait_all_final(len(names), timeout=180)
    outcomes = collections.Counter(str(j.state) for j in jobs)
    deaths = max(sum(1 for e in d.store.events(j.id) if "daemon death" in e.detail) for j in jobs)
    print(json.dumps({"files": len(names), "supervisor_kills": SUPERVISOR_KILLS, "outcomes": outcomes,
                      "most_deaths_one_job_saw": deaths}))
    assert outcomes == {"succeeded": len(names)}, [(j.source_name, j.state, j.error) for j in jobs]
    assert all(j.attempts == 1 for j in jobs)  # no attempt spent on the daemon's deaths


def wait_until_running(d: Daemon) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if [j for j in d.jobs("running") if j.worker_pid]:
            return
        time.sleep(0.05)
    raise AssertionError(f"no job started: {d.log.read_text()[-2000:]}")
