"""`diarizectl webhooks`: the deliveries the API service sends, and a way to send one again."""

from __future__ import annotations

import time

import click

from diarized.cli import CliExit
from diarized.cli.common import fail
from diarized.cli.jobs_cmd import _console, _emit_json, _store, deliveries_table, delivery_dict
from diarized.store import NotFound


@click.group()
def webhooks() -> None:
    """Webhook deliveries (sent by `diarized api`)."""


@webhooks.command("list")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_deliveries(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Newest deliveries: where, state, tries and the last answer."""
    store, _ = _store(ctx)
    found = store.deliveries(limit=limit)
    if as_json:
        _emit_json([delivery_dict(d) for d in found])
        return
    _console().print(deliveries_table(found) if found else "no webhook deliveries")


@webhooks.command()
@click.argument("delivery_id")
@click.pass_context
def retry(ctx: click.Context, delivery_id: str) -> None:
    """Send a delivery again (same id and body), now and for another day if it keeps failing."""
    from diarized.config import WEBHOOK_WINDOW_SECONDS
    from diarized.store import open_store

    _, settings = _store(ctx)
    store = open_store(settings.store_location)
    try:
        delivery = store.retry_delivery(delivery_id, time.time() + WEBHOOK_WINDOW_SECONDS)
    except NotFound:
        fail(f"no webhook delivery {delivery_id!r} (see `diarizectl webhooks list`)", CliExit.NOT_FOUND)
    click.echo(f"{delivery.id} to {delivery.url} is due now; the API service sends it within a second")
