"""The state root's identity: a marker file in state/ and its id recorded in the job store.

Several nodes share one state root and one database. A node started with another
state_dir on the same database used to take jobs into its own outbox and, once it
held the inbox role, leave the real inbox unread, while `status` looked healthy.
So the root carries an id (state/root-id, made once by whichever node starts
first, never rewritten) and the store records the id of the root it serves; a node
whose root does not match refuses to start and says which folder to use.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from diarized.config import Settings
from diarized.files import write_text
from diarized.store import JobStore, safe_location

MARKER = "root-id"
_ID = re.compile(r"[0-9a-f]{32}")
MAX_MARKER_BYTES = 4096


class WrongStateRoot(RuntimeError):
    """This node's state_dir is not the state root its job store belongs to."""


def marker_path(settings: Settings) -> Path:
    return settings.db_path.parent / MARKER


def read_marker(path: Path) -> str | None:
    """The id in the marker, None if there is none; a marker that is not ours is an error, not a reset."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        text = fh.read(MAX_MARKER_BYTES).decode("utf-8", "replace").strip()
    if not _ID.fullmatch(text):
        raise WrongStateRoot(f"{path} does not hold a diarized state-root id ({text[:40]!r}); restore it from "
                             "the shared state folder, or remove it if this folder has never served a job store")
    return text


def make_marker(path: Path) -> str:
    """A new id, written whole under a temporary name and linked into place: link() fails if
    another node made the marker meanwhile, and then theirs is the root's id."""
    tmp = write_text(path.with_name(f".{MARKER}.{os.getpid()}"), uuid.uuid4().hex + "\n", mode=0o644)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    found = read_marker(path)
    assert found is not None
    return found


def check(settings: Settings, store: JobStore) -> str:
    """This root's id, recorded in the store if it records none yet; WrongStateRoot on a mismatch."""
    path = marker_path(settings)
    where = safe_location(settings.store_location)
    mine = read_marker(path)
    if mine is None:
        recorded = store.state_root()
        if recorded is not None:
            raise WrongStateRoot(
                f"state_dir {settings.state_dir} is not the state root of the job store {where}: the store "
                f"belongs to the root whose {path.relative_to(settings.state_dir)} holds {recorded}, and this "
                "folder has none. Set state_dir to the shared folder the other nodes use.")
        mine = make_marker(path)
    recorded = store.bind_root(mine)
    if recorded != mine:
        raise WrongStateRoot(
            f"state_dir {settings.state_dir} is not the state root of the job store {where}: the store belongs "
            f"to root {recorded}, this folder is root {mine} ({path}). Set state_dir to the shared folder the "
            "other nodes use, or give this folder its own store.")
    return mine
