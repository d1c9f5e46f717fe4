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
"""

from __future__ import annotations

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

from diarized.config import WEBHOOK_WINDOW_SECONDS, Settings
from diarized.outbox import published_files
from diarized.store import Delivery, JobStore, Notification, StoreUnavailable

log = logging.getLogger("diarized.webhooks")

SIGNATURE_HEADER = "Diarized-Signature"
KEEP_TRYING_SECONDS = WEBHOOK_WINDOW_SECONDS  # then failed (`diarizectl webhooks retry` revives it)
MAX_DELAY_SECONDS = 3600.0
LEASE_SECONDS = 60.0  # a sender that dies mid-send: the delivery is due again after this
TIMEOUT_SECONDS = 10.0


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
    """Dispatch notifications and send due deliveries; `run` loops until told to stop."""

    def __init__(self, settings: Settings, store: JobStore, client: httpx.Client | None = None):
        self.settings = settings
        self.store = store
        self.hooks = {hook.url: hook for hook in settings.webhooks}
        self.http = client or httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False,
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
        outputs = list(published_files(job.output_dir)) if note.event == "succeeded" else []
        return json.dumps({
            "event": note.event, "job_id": job.id, "status": job.status, "file": job.source_name,
            "outputs": [{"name": n, "url": f"/jobs/{job.id}/outputs/{n}"} for n in outputs],
            "duration": job.duration, "processing_seconds": job.processing_seconds,
            "started_at": job.started_at, "completed_at": job.finished_at,
            "error": job.error if note.event != "succeeded" else None,
            "hint": job.hint if note.event != "succeeded" else None,
        }, ensure_ascii=False, sort_keys=True)

    def send_due(self) -> int:
        due = self.store.claim_deliveries(LEASE_SECONDS)
        for delivery in due:
            self.attempt(delivery)
        return len(due)

    def attempt(self, delivery: Delivery) -> Delivery:
        hook = self.hooks.get(delivery.url)
        if hook is None:
            return self.store.finish_attempt(delivery.id, None, "this endpoint is no longer in the config "
                                             "(webhooks)", None)
        body = delivery.payload.encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(hook.secret, int(time.time()), body),
                   "Diarized-Delivery": delivery.id, "Diarized-Event": delivery.event}
        status, error = None, None
        try:
            response = self.http.post(delivery.url, content=body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        retry_at = None
        if error is not None:
            retry_at = time.time() + delay(delivery.attempts + 1, self.settings.webhook_retry_seconds)
            if retry_at > delivery.expires_at:
                retry_at = None
        done = self.store.finish_attempt(delivery.id, status, error, retry_at)
        log.info("webhook %s %s to %s: %s", delivery.id, delivery.event, delivery.url,
                 "delivered" if error is None else f"{error}; " + (
                     f"retry in {retry_at - time.time():.0f} s" if retry_at else "giving up"))
        return done

    def run(self, stop: threading.Event, every: float = 1.0) -> None:
        while not stop.wait(every):
            try:
                self.dispatch()
                self.send_due()
            except StoreUnavailable as exc:
                log.warning("webhooks wait: the store cannot be written (%s)", exc)
            except Exception:
                log.exception("webhook sender: unexpected error; it goes on")


def start(settings: Settings, open_store: Callable[[], JobStore]) -> Callable[[], None]:
    """The sender in a thread with its own store connection; returns the function that stops it."""
    stop = threading.Event()
    sender = Sender(settings, open_store())
    thread = threading.Thread(target=sender.run, args=(stop,), name="webhooks", daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join(TIMEOUT_SECONDS + 5)
        sender.store.close()
    return halt
