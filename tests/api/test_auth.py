"""Bearer tokens: only hashes are configured, scopes order, names are checked."""

from __future__ import annotations

import pytest

from diarized.api.auth import Scope, Tokens, digest, new_token
from diarized.config import ConfigError, load_settings


def test_a_new_token_matches_only_its_own_entry():
    token, entry = new_token("ana", "read")
    other, other_entry = new_token("bot", "submit")
    assert token not in entry and entry.endswith(digest(token)) and entry.startswith("ana:read:")
    tokens = Tokens((entry, other_entry))
    assert tokens.check(token).name == "ana" and tokens.check(token).scope == Scope.READ
    assert tokens.check(other).scope == Scope.SUBMIT > Scope.READ
    assert tokens.check(token + "x") is None and tokens.check("") is None


@pytest.mark.parametrize("name", ["", "a:b", "a,b"])
def test_token_names_that_would_break_the_entry_are_refused(name):
    with pytest.raises(ValueError):
        new_token(name, "read")


@pytest.mark.parametrize("entry", ["ana:admin:" + "0" * 64, "ana:read:abc", "ana:read", "ana:read:" + "G" * 64])
def test_malformed_entries_are_config_errors(entry, tmp_path):
    with pytest.raises(ConfigError, match="api_tokens"):
        load_settings(None, {"state_dir": tmp_path, "api_tokens": [entry]}, env={})
