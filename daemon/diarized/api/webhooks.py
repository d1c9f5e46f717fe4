"""Signed, durable webhooks: the store's notifications become deliveries, sent until they land.

Every final transition writes a notification in its own transaction (store.py),
so nothing that happened can be missed, whichever process made it happen. This
sender, in the API process only, turns each notification into one delivery per
configured endpoint (a stable id the receiver dedupes on, a body frozen at that
moment), and POSTs due deliveries with a timestamp and an HMAC-SHA256 signature
of "timestamp.body" (the Stripe scheme; `verify` is the receiver's side).
A failure is retried with exponential backoff (webhook_retry_seconds, doubled,
at most an hour apart) for a day; a crash mid-send leaves the delivery leased,
then due again: at least once, never lost across restarts.

A receiver is less trusted than the service: each endpoint is sent to by a task
of its own (a slow one delays no other), each attempt has a total deadline
(webhook_timeout_seconds, whatever the receiver trickles), and at most ANSWER_BYTES of
its answer are read (a 2 GiB answer once pushed the API to 7.5 GiB).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import secrets
import threading
import time
from typing import Callable

import httpx

from diarized.config import WEBHOOK_WINDOW_SECONDS, Settings, Webhook
from diarized.outbox import published_files
from diarized.store import Delivery, JobStore, Notification, StoreUnavailable

log = logging.getLogger("diarized.webhooks")

SIGNATURE_HEADER = "Diarized-Signature"
KEEP_TRYING_SECONDS = WEBHOOK_WINDOW_SECONDS  # then failed (`diarizectl webhooks retry` revives it)
MAX_DELAY_SECONDS = 3600.0
LEASE_SECONDS = 60.0  # a sender that dies mid-send: the delivery is due again after this
CONNECT_SECONDS = 5.0
ANSWER_BYTES = 4096  # what is read of a receiver's answer (for the error message); the rest is dropped
BATCH = 20


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance: float = 300.0, now: float | None = None) -> bool:
    """The receiver's check: the signature matches and the timestamp is recent (replays fail)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    now = time.time() if now is None else now
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, parts.get("v1", ""))


def delay(attempts: int, base: float) -> float:
    """Seconds before the next try after `attempts` failures: base, 2 base, 4 base, ... capped, ±10 %."""
    return min(MAX_DELAY_SECONDS, base * 2 ** max(0, attempts - 1)) * random.uniform(0.9, 1.1)


class Sender:
    """Dispatch notifications and send due deliveries; `run` loops until told to stop.

    Store calls run in threads (asyncio.to_thread): the store is synchronous, SQLite's
    connection takes turns under its own lock and PostgreSQL's pool is thread-safe.
    """

    def __init__(self, settings: Settings, store: JobStore, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self.store = store
        self.hooks = {hook.url: hook for hook in settings.webhooks}
        self.transport = transport

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, follow_redirects=False,
                                 timeout=httpx.Timeout(self.settings.webhook_timeout_seconds,
                                                       connect=CONNECT_SECONDS),
                                 headers={"User-Agent": "diarized-webhooks/1"})

    def dispatch(self) -> int:
        """Notifications -> deliveries. Without a matching endpoint a notification is just marked done."""
        made = 0
        for note in self.store.pending_notifications():
            rows = []
            if time.time() - note.at < KEEP_TRYING_SECONDS:
                rows = [("dlv_" + secrets.token_hex(8), hook.url, self.body(note))
                        for hook in self.hooks.values() if note.event in hook.events]
            self.store.add_deliveries(note.id, rows, time.time() + KEEP_TRYING_SECONDS)
            made += len(rows)
        return made

    def body(self, note: Notification) -> str:
        """The JSON the receiver gets, frozen now (every retry sends the same bytes)."""
        job = self.store.get(note.job_id)
        # a duplicate is told with its original as it is now (outputs by reference, if it succeeded)
        shown = self.store.resolve(job.id) if note.event == "duplicate" else job
        done = shown.state == "succeeded"
        outputs = list(published_files(shown.output_dir)) if done else []
        base = self.settings.api_public_url.rstrip("/")
        return json.dumps({
            "event": note.event, "job_id": job.id, "status": shown.status, "file": job.source_name,
            "duplicate_of": job.duplicate_of,
            "outputs": [{"name": n, "url": f"{base}/jobs/{shown.id}/outputs/{n}"} for n in outputs],
            "model": shown.model, "language": shown.language, "language_probability": shown.language_probability,
            "word_count": shown.word_count, "speakers_found": shown.speakers_found,
            "duration": shown.duration, "processing_seconds": shown.processing_seconds,
            "started_at": shown.started_at, "completed_at": shown.finished_at,
            "error": None if done else shown.error, "hint": None if done else shown.hint,
        }, ensure_ascii=False, sort_keys=True)

    async def send_due(self, http: httpx.AsyncClient, hook: Webhook) -> int:
        """One endpoint's due deliveries, one after another (never waiting on another endpoint)."""
        due = await asyncio.to_thread(self.store.claim_deliveries, LEASE_SECONDS, BATCH, None, hook.url)
        for delivery in due:
            await self.attempt(http, delivery)
        return len(due)

    async def drop_unknown(self) -> int:
        """Deliveries to endpoints no longer configured: failed, with the reason."""
        due = await asyncio.to_thread(self.store.claim_deliveries, LEASE_SECONDS, BATCH, None, None,
                                      tuple(self.hooks))
        for delivery in due:
            await asyncio.to_thread(self.store.finish_attempt, delivery.id, None,
                                    "this endpoint is no longer in the config (webhooks)", None)
        return len(due)

    async def attempt(self, http: httpx.AsyncClient, delivery: Delivery) -> Delivery:
        hook = self.hooks[delivery.url]
        body = delivery.payload.encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(hook.secret, int(time.time()), body),
                   "Diarized-Delivery": delivery.id, "Diarized-Event": delivery.event}
        status, error = await post(http, delivery.url, body, headers, self.settings.webhook_timeout_seconds)
        retry_at = None
        if error is not None:
            retry_at = time.time() + delay(delivery.attempts + 1, self.settings.webhook_retry_seconds)
            if retry_at > delivery.expires_at:
                retry_at = None
        done = await asyncio.to_thread(self.store.finish_attempt, delivery.id, status, error, retry_at)
        log.info("webhook %s %s to %s: %s", delivery.id, delivery.event, delivery.url,
                 "delivered" if error is None else f"{error}; " + (
                     f"retry in {retry_at - time.time():.0f} s" if retry_at else "giving up"))
        return done

    async def run(self, stop: asyncio.Event, every: float = 1.0) -> None:
        """The dispatcher and one loop per endpoint, until `stop` is set."""
        loops = [self._loop(stop, every, self._dispatch_once), self._loop(stop, every, self.drop_unknown)]
        async with self.client() as http:
            loops += [self._loop(stop, every, lambda hook=hook: self.send_due(http, hook))
                      for hook in self.hooks.values()]
            await asyncio.gather(*loops)

    async def _dispatch_once(self) -> int:
        return await asyncio.to_thread(self.dispatch)

    async def _loop(self, stop: asyncio.Event, every: float, step) -> None:
        while not stop.is_set():
            try:
                await step()
            except StoreUnavailable as exc:
                log.warning("webhooks wait: the store cannot be written (%s)", exc)
            except Exception:  # noqa: BLE001 - the sender goes on
                log.exception("webhook sender: unexpected error; it goes on")
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                pass


async def post(http: httpx.AsyncClient, url: str, body: bytes, headers: dict,
               deadline: float) -> tuple[int | None, str | None]:
    """(status, error) of one POST: the whole exchange within `deadline` s, at most ANSWER_BYTES read."""
    try:
        async with asyncio.timeout(deadline):
            async with http.stream("POST", url, content=body, headers=headers) as response:
                answer = await read_at_most(response, ANSWER_BYTES)
    except TimeoutError:
        return None, f"no complete answer within {deadline:g} s"
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {answer.decode('utf-8', 'replace')[:200]}"


async def read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The start of an answer; the rest is never read (the connection is closed with it)."""
    data = b""
    async for chunk in response.aiter_raw():
        data += chunk
        if len(data) >= limit:
            break
    return data[:limit]


def start(settings: Settings, open_store: Callable[[], JobStore]) -> Callable[[], None]:
    """The sender on an event loop in a thread, with its own store connection; returns its stop."""
    sender = Sender(settings, open_store())
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(sender.run(stop),), name="webhooks",
                              daemon=True)
    thread.start()

    def halt() -> None:
        loop.call_soon_threadsafe(stop.set)
        thread.join(settings.webhook_timeout_seconds + 5)
        sender.store.close()
    return halt
