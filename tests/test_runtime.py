"""Where a running daemon says which state root it serves (runtime.py): files read without trusting them."""

from __future__ import annotations

import json
import os

from diarized import runtime


def test_daemons_are_found_by_their_own_files_and_planted_ones_are_ignored(tmp_path):
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    published = runtime.publish(tmp_path / "var", None, env)
    assert published.name == f"daemon-{os.getpid()}.json"
    place = published.parent
    real = {"pid": os.getpid(), "state_dir": str(tmp_path / "elsewhere"), "config": None}
    (tmp_path / "target.json").write_text(json.dumps(real))
    (place / "daemon-1.json").symlink_to(tmp_path / "target.json")  # a link: never followed
    os.mkfifo(place / "daemon-2.json")  # a pipe: would block a reader
    (place / "daemon-3.json").write_text(json.dumps(real | {"config": "x" * 5000}))  # too large
    found = runtime.find_all(env)
    assert [info.state_dir for info in found] == [str(tmp_path / "var")]
    assert runtime.serving(tmp_path / "var", env).pid == os.getpid()
    runtime.remove(published)
    assert runtime.find_all(env) == []
