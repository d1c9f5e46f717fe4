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


def test_tokens_are_added_and_revoked_without_a_restart(make_daemon, make_api, tmp_path):
    """Before: a new or revoked token needed a restart of diarized-api (and SIGHUP ended it)."""
    import json
    import signal

    from click.testing import CliRunner

    from diarized.cli.ctl import cli
    from tests.api.test_dashboard import login
    from tests.harness import wait_until

    ana, ana_entry = new_token("ana", "submit")
    config = tmp_path / "diarized.toml"
    config.write_text(f'# the operator\'s notes stay\napi_tokens = ["{ana_entry}"]  # ana\n')
    make_daemon(fake_workers=True)
    api = make_api(config=config)

    def ctl(*args):
        return CliRunner().invoke(cli, ["--config", str(config), "--state-dir", str(api.root), "token", *args],
                                  env={"DIARIZED_CONFIG": "", "DIARIZED_API_TOKENS": None})

    def status(token):
        with api.client(token) as client:
            return client.get("/jobs").status_code

    assert status(ana) == 200
    made = ctl("new", "bot", "--scope", "read", "--add")
    assert made.exit_code == 0, made.output
    bot = next(line.strip() for line in made.output.splitlines() if line.strip().startswith("dz_"))
    wait_until(lambda: status(bot) == 200, 10, "the added token to work")
    assert [t["name"] for t in json.loads(ctl("list", "--json").stdout)] == ["ana", "bot"]
    with login(api, ana) as session:
        assert session.get("/ui/").status_code == 200
        revoked = ctl("revoke", "ana")
        assert revoked.exit_code == 0 and "revoked ana" in revoked.output
        wait_until(lambda: status(ana) == 401, 10, "the revoked token to be refused")
        assert session.get("/ui/", follow_redirects=False).status_code == 303  # its session ended too
    assert "# the operator's notes stay" in config.read_text() and status(bot) == 200
    assert ctl("revoke", "nobody").exit_code == 1

    config.write_text(config.read_text() + "api_tokens = [broken\n")  # a bad edit: nobody is locked out
    api.proc.send_signal(signal.SIGHUP)
    with api.client(bot) as client:
        assert client.get("/jobs").status_code == 200
    assert api.proc.poll() is None and "api_tokens not reloaded" in api.log.read_text()
