"""The state root's identity (state_root.py) on a real SQLite store; tests/test_nodes.py has the node case."""

from __future__ import annotations

import pytest

from diarized.state_root import WrongStateRoot, check, marker_path
from diarized.store import open_store


def test_the_first_start_marks_the_root_and_later_starts_agree(make_settings):
    settings = make_settings()
    store = open_store(settings.db_path)
    first = check(settings, store)
    assert marker_path(settings).read_text().strip() == first == store.state_root()
    assert check(settings, store) == first  # a restart: same id, nothing rewritten


def test_a_root_that_is_not_the_stores_refuses_and_says_which_folder(make_settings, tmp_path):
    settings = make_settings()
    store = open_store(settings.db_path)
    check(settings, store)
    other = make_settings(state_dir=tmp_path / "elsewhere")
    other.db_path.parent.mkdir(parents=True)
    with pytest.raises(WrongStateRoot, match="has none. Set state_dir to the shared folder"):
        check(other, store)  # an empty folder pointed at the store
    assert not marker_path(other).exists()  # refused without marking it
    marker_path(other).write_text("0" * 32 + "\n")
    with pytest.raises(WrongStateRoot, match="this folder is root 0000"):
        check(other, store)
    marker_path(other).write_text("not an id")
    with pytest.raises(WrongStateRoot, match="does not hold a diarized state-root id"):
        check(other, store)
