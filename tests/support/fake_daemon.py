"""`diarized run` as a real process, with fake_worker.py instead of the model worker.

    python tests/support/fake_daemon.py --state-dir DIR [--chaos SEED:PROBABILITY:LOG]

Same settings, supervisor, signals and store as the real daemon; only the
worker command differs, so scheduling, crashes and recovery are tested in
seconds (tests/harness.py, Daemon(fake_workers=True)).

--chaos arms named points of the real code (claim, hashing, publication, the
store update after it, ...): before or after each, with the given probability,
the daemon appends the point's name to LOG and kills itself with SIGKILL, as a
power cut or the OOM killer would. Nothing of this is in the installed daemon.

--delay-publication FILE: the first daemon to take FILE (a rename: one of several nodes)
sleeps as many seconds as it holds after the fence of its publication passed and before the
rename, as a hard NFS mount or a paused node would.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from pathlib import Path

from diarized import inbox, intake, lifecycle, outbox, store
from diarized.cli.daemon import load, serve

FAKE_WORKER = Path(__file__).with_name("fake_worker.py")

# (owner, attribute, phase): the places a crash is most likely to leave a half-done step
HASHING_SHARE = 0.2  # hashing is re-run for every file after each restart: armed less often
CHAOS_POINTS = (
    (inbox, "sha256_of", "hashing"),
    (intake.Intake, "take_hashed", "claim"),
    (store.SQLiteStore, "record_incoming", "record"),
    (store.SQLiteStore, "mark_queued", "queue"),
    (store.SQLiteStore, "claim", "job claim"),
    (outbox, "publish_outputs", "publication"),
    (outbox, "settle_original", "original to done"),
    (store.SQLiteStore, "mark_succeeded", "store update after publication"),
    (lifecycle.Lifecycle, "quarantine", "quarantine"),
    (store.SQLiteStore, "requeue", "requeue"),
)


def fake_worker_command(job, settings_file: Path, threads: int) -> list[str]:
    return [sys.executable, str(FAKE_WORKER), job.id, "--settings", str(settings_file),
            "--threads", str(threads), "--supervisor-pid", str(os.getpid()), "--lease", str(job.lease_generation)]


def arm_chaos(seed: int, probability: float, log: Path) -> None:
    rng = random.Random(seed)

    def maybe_die(phase: str) -> None:
        if rng.random() < probability * (HASHING_SHARE if phase.endswith("hashing") else 1.0):
            with log.open("a") as fh:
                fh.write(phase + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(owner, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            maybe_die(f"before {phase}")
            result = original(*args, **kwargs)
            maybe_die(f"after {phase}")
            return result
        setattr(owner, name, wrapped)

    for owner, name, phase in CHAOS_POINTS:
        wrap(owner, name, phase)


def delay_publication(flag: Path) -> None:
    original = outbox.publish_outputs

    def delayed(*args, **kwargs):
        taken = flag.with_name(flag.name + f".taken-{os.getpid()}")
        try:
            os.rename(flag, taken)
        except FileNotFoundError:
            pass  # another node took it, or this one already did
        else:
            time.sleep(float(taken.read_text()))
        return original(*args, **kwargs)
    outbox.publish_outputs = delayed


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--chaos", help="SEED:PROBABILITY:LOG")
    parser.add_argument("--delay-publication", type=Path, help="FILE holding seconds (taken once)")
    args = parser.parse_args()
    if args.delay_publication:
        delay_publication(args.delay_publication)
    if args.chaos:
        seed, probability, log = args.chaos.split(":", 2)
        arm_chaos(int(seed), float(probability), Path(log))
    serve(*load(None, args.state_dir), worker_command=fake_worker_command)
