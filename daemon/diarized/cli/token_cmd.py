"""`diarizectl token new|list|revoke`: bearer tokens for the HTTP API; only their hashes are kept.

Tokens live in the config's api_tokens. `new --add` and `revoke` edit that list in the
config file itself (tomlkit keeps its comments and layout; the file is replaced
atomically with its owner and mode), and a running `diarized api` reads it again
within a second or two, without a restart.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from diarized.cli.common import fail, settings_from


@click.group()
def token() -> None:
    """Bearer tokens for `diarized api`."""


@token.command("new")
@click.argument("name")
@click.option("--scope", type=click.Choice(["read", "submit"]), default="submit", show_default=True,
              help="read: see jobs and outputs; submit: also upload, cancel, retry, change priority.")
@click.option("--add", is_flag=True, help="Also add it to api_tokens in the config file (the API picks it up).")
@click.pass_context
def new(ctx: click.Context, name: str, scope: str, add: bool) -> None:
    """Print a new token once, and the api_tokens entry (its sha256) to put in the config."""
    from diarized.api.auth import new_token

    try:
        secret, entry = new_token(name, scope)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"token for {name} ({scope}); shown only now, give it to {name}:\n\n  {secret}\n")
    if add:
        path = config_path(ctx)
        edit_tokens(path, lambda entries: [*entries, entry])
        click.echo(f"added to api_tokens in {path}; a running diarized api uses it within 2 s")
        return
    click.echo("add this entry to api_tokens in the config (e.g. /etc/diarized/diarized.toml); "
               "a running diarized api reads it within 2 s (or on `systemctl reload diarized-api`):\n")
    click.echo(f'  api_tokens = ["{entry}"]')


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_tokens(ctx: click.Context, as_json: bool) -> None:
    """The configured tokens: name, scope and the start of their hash (the tokens themselves are not kept)."""
    import json

    from diarized.api.auth import parse_entry

    rows = [dict(zip(("name", "scope", "sha256"), parse_entry(e))) for e in settings_from(ctx).api_tokens]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no api_tokens configured (`diarizectl token new NAME --add` makes one)")
    for row in rows:
        click.echo(f"{row['name']:<24} {row['scope']:<7} sha256 {row['sha256'][:12]}…")


@token.command("revoke")
@click.argument("name")
@click.pass_context
def revoke(ctx: click.Context, name: str) -> None:
    """Remove every token named NAME from api_tokens in the config file; a running API refuses it
    within 2 s and ends its dashboard sessions."""
    from diarized.api.auth import parse_entry

    settings = settings_from(ctx)
    if not any(parse_entry(e)[0] == name for e in settings.api_tokens):
        names = sorted({parse_entry(e)[0] for e in settings.api_tokens})
        fail(f"no token named {name!r}; configured: {', '.join(names) or 'none'}")
    path = config_path(ctx)
    kept = edit_tokens(path, lambda entries: [e for e in entries if parse_entry(e)[0] != name])
    if any(parse_entry(e)[0] == name for e in settings_from(ctx).api_tokens):
        fail(f"{name!r} is also set outside {path} (DIARIZED_API_TOKENS in the environment); remove it there")
    click.echo(f"revoked {name} in {path} ({len(kept)} token(s) left); a running diarized api refuses it "
               "within 2 s")


def config_path(ctx: click.Context) -> Path:
    from diarized.client import locate

    obj = ctx.obj or {}
    config, _ = locate(obj.get("config"), obj.get("state_dir"))
    if config is None:
        fail("no config file to edit: pass --config /etc/diarized/diarized.toml (or set DIARIZED_CONFIG)")
    return Path(config)


def edit_tokens(path: Path, change) -> list[str]:
    """api_tokens in `path` replaced by change(entries), comments and layout kept; returns the new list.

    Checked as the whole config before it is written: an edit never leaves a config the
    daemon would refuse. The file keeps its owner, group and mode.
    """
    import tomlkit
    from tomlkit.exceptions import ParseError

    from diarized.config import ConfigError, load_settings
    from diarized.files import write_text

    try:
        st = path.stat()
        document = tomlkit.parse(path.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror} (run as its owner, e.g. sudo)")
    except ParseError as exc:
        fail(f"{path} is not valid TOML ({exc}); fix it first")
    entries = [str(e) for e in document.get("api_tokens", [])]
    new_entries = change(entries)
    document["api_tokens"] = _multiline(tomlkit, new_entries)
    text = tomlkit.dumps(document)
    check = path.with_name(f".{path.name}.check")
    try:
        write_text(check, text, mode=0o600)
        load_settings(check, {})
    except ConfigError as exc:
        fail(f"the edited config would be refused ({exc}); {path} is unchanged")
    except OSError as exc:
        fail(f"cannot write beside {path}: {exc.strerror} (run as its owner, e.g. sudo)")
    finally:
        check.unlink(missing_ok=True)
    try:
        write_text(path, text, mode=st.st_mode & 0o7777,
                   owner=(st.st_uid, st.st_gid) if os.geteuid() == 0 else None)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror} (run as its owner, e.g. sudo)")
    return new_entries


def _multiline(tomlkit, entries: list[str]):
    array = tomlkit.array()
    array.extend(entries)
    return array.multiline(len(entries) > 1)
