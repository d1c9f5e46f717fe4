"""`diarizectl token new NAME`: a bearer token for the HTTP API, shown once; only its hash is kept."""

from __future__ import annotations

import click


@click.group()
def token() -> None:
    """Bearer tokens for `diarized api`."""


@token.command("new")
@click.argument("name")
@click.option("--scope", type=click.Choice(["read", "submit"]), default="submit", show_default=True,
              help="read: see jobs and outputs; submit: also upload, cancel, retry, change priority.")
def new(name: str, scope: str) -> None:
    """Print a new token once, and the api_tokens entry (its sha256) to put in the config."""
    from diarized.api.auth import new_token

    try:
        secret, entry = new_token(name, scope)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"token for {name} ({scope}); shown only now, give it to {name}:\n\n  {secret}\n")
    click.echo("add this entry to api_tokens in the config (e.g. /etc/diarized/diarized.toml), "
               "then restart diarized-api:\n")
    click.echo(f'  api_tokens = ["{entry}"]')
