"""`diarized run` as a real process, with fake_worker.py instead of the model worker.

    python tests/support/fake_daemon.py --state-dir DIR

Same settings, supervisor, signals and store as the real daemon; only the
worker command differs, so scheduling, crashes and recovery are tested in
seconds (tests/harness.py, Daemon(fake_workers=True)).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from diarized.cli.daemon import load, serve

FAKE_WORKER = Path(__file__).with_name("fake_worker.py")


def fake_worker_command(job_id: str, settings_file: Path, threads: int) -> list[str]:
    return [sys.executable, str(FAKE_WORKER), job_id, "--settings", str(settings_file),
            "--threads", str(threads), "--supervisor-pid", str(os.getpid())]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args()
    serve(*load(None, args.state_dir), worker_command=fake_worker_command)
