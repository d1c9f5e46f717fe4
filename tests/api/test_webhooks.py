"""Webhooks against a real local receiver: signed, retried, exactly one success per delivery id, durable."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from diarized.api.auth import new_token
from diarized.api.webhooks import SIGNATURE_HEADER, delay, sign, verify
from diarized.worker import WorkerExit
from tests.harness import wait_until

TOKEN, ENTRY = new_token("hooks", "submit")
SECRET = "a-shared-secret-of-some-length"


class Receiver:
    """A tiny HTTP server that records each POST, checks its signature, and answers as scripted."""

    def __init__(self, failures: int = 0):
        self.failures = failures  # answer 500 this many times first
        self.calls: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if receiver.failures > 0 else 204
                receiver.failures -= 1
                receiver.calls.append({"headers": dict(self.headers), "body": body, "status": status,
                                       "verified": verify(SECRET, self.headers[SIGNATURE_HEADER], body)})
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def successes(self) -> list[dict]:
        return [c for c in self.calls if c["status"] == 204]

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    made = []

    def make(failures: int = 0) -> Receiver:
        made.append(Receiver(failures))
        return made[-1]
    yield make
    for r in made:
        r.close()


def hooks(*entries: tuple[str, list[str]]) -> str:
    return json.dumps([{"url": url, "secret": SECRET, "events": events} for url, events in entries])


def upload(api, name: str, content: bytes) -> dict:
    with api.client(TOKEN) as client:
        answer = client.post("/jobs", files={"file": (name, content)})
        assert answer.status_code == 202, answer.text
        return answer.json()


def test_signatures_verify_and_refuse_tampering_and_replays():
    body = b'{"event": "succeeded"}'
    header = sign(SECRET, int(time.time()), body)
    assert verify(SECRET, header, body)
    assert not verify(SECRET, header, body + b" ")
    assert not verify("another-secret-entirely", header, body)
    assert not verify(SECRET, sign(SECRET, int(time.time()) - 3600, body), body)
    assert not verify(SECRET, "garbage", body)
    for attempts, nominal in ((1, 10), (2, 20), (3, 40), (4, 80), (40, 3600)):
        assert 0.9 * nominal <= delay(attempts, 10) <= 1.1 * nominal


def test_a_finished_job_is_posted_signed_with_its_outputs(make_daemon, make_api, receiver):
    ok, failures_only = receiver(), receiver()
    make_daemon(fake_workers=True)
    api = make_api([ENTRY], webhooks=hooks((ok.url, ["succeeded", "failed"]), (failures_only.url, ["failed"])),
                   webhook_retry_seconds=0.2)
    job = upload(api, "talk.wav", b"any bytes: the fake worker succeeds")
    bad = upload(api, "notes.mp4", json.dumps({"runs": [{"exit": WorkerExit.BAD_INPUT, "error": "not media"}]})
                 .encode())
    wait_until(lambda: len(ok.calls) == 2 and len(failures_only.calls) == 1, 60, "three webhook calls")
    by_event = {json.loads(c["body"])["event"]: c for c in ok.calls}
    assert all(c["verified"] for c in ok.calls + failures_only.calls)
    done = json.loads(by_event["succeeded"]["body"])
    assert done["job_id"] == job["id"] and done["status"] == "completed" and done["file"] == "talk.wav"
    assert {o["name"] for o in done["outputs"]} >= {"final_transcription.json"} and done["error"] is None
    assert done["completed_at"] >= done["started_at"] > 0
    failed = json.loads(failures_only.calls[0]["body"])
    assert failed["job_id"] == bad["id"] and failed["event"] == "failed" and "not media" in failed["error"]
    headers = by_event["succeeded"]["headers"]
    assert headers["Diarized-Event"] == "succeeded" and headers["Diarized-Delivery"].startswith("dlv_")


def test_a_failing_receiver_gets_the_same_delivery_until_one_success(make_daemon, make_api, receiver):
    flaky = receiver(failures=2)
    daemon = make_daemon(fake_workers=True)
    api = make_api([ENTRY], webhooks=hooks((flaky.url, ["succeeded"])), webhook_retry_seconds=0.2)
    job = upload(api, "talk.wav", b"audio")
    wait_until(lambda: flaky.successes(), 60, "a successful delivery")
    time.sleep(1.5)  # nothing more comes after the success
    assert [c["status"] for c in flaky.calls] == [500, 500, 204]
    assert len({c["headers"]["Diarized-Delivery"] for c in flaky.calls}) == 1
    (delivery,) = daemon.store.deliveries(job["id"])
    assert delivery.state == "delivered" and delivery.attempts == 3 and delivery.last_status == 204


def test_a_pending_delivery_survives_kill_9_of_the_api(make_daemon, make_api, receiver):
    down = receiver(failures=10**6)  # answers 500 until told otherwise
    daemon = make_daemon(fake_workers=True)
    settings = {"webhooks": hooks((down.url, ["succeeded"])), "webhook_retry_seconds": 0.2}
    api = make_api([ENTRY], **settings)
    job = upload(api, "talk.wav", b"audio")
    wait_until(lambda: len(down.calls) >= 2, 60, "failed attempts")
    api.kill9()
    (pending,) = daemon.store.deliveries(job["id"])
    assert pending.state == "pending" and down.successes() == []
    down.failures = 0
    make_api([ENTRY], **settings)
    # a kill that lands mid-send leaves the delivery leased (LEASE_SECONDS, 60 s): then it is due again
    wait_until(lambda: down.successes(), 90, "the delivery after the restart")
    assert {c["headers"]["Diarized-Delivery"] for c in down.calls} == {pending.id}
    assert daemon.store.get_delivery(pending.id).state == "delivered"


def test_the_readmes_receiver_code_verifies_what_the_sender_signs():
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Webhooks", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace: dict = {}
    exec(code, namespace)
    check = namespace["verify_diarized"]
    body = b'{"event": "failed"}'
    header = sign(SECRET, int(time.time()), body)
    assert check(SECRET, header, body) and not check(SECRET, header, body[:-1])
    assert not check(SECRET, sign(SECRET, int(time.time()) - 600, body), body)


class HostileReceiver:
    """A raw socket server that reads a request, then answers as badly as it is told:
    "huge" (a 2 GiB body, as fast as it goes) or "trickle" (a byte every 3 s, forever)."""

    def __init__(self, mode: str):
        import socket

        self.mode, self.requests, self.sent = mode, 0, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            try:
                conn.recv(65536)
                self.requests += 1
                if self.mode == "huge":
                    conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 2147483648\r\n\r\n")
                    block = b"\0" * (1 << 20)
                    while not self.stopped.is_set() and self.sent < 2 << 30:
                        conn.sendall(block)
                        self.sent += len(block)
                else:
                    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nslow.":
                        if self.stopped.wait(3):
                            return
                        conn.sendall(bytes([byte]))
            except OSError:
                return

    def close(self):
        self.stopped.set()
        self.sock.close()


def test_a_receivers_answer_is_bounded_in_size_and_time_and_delays_no_other(make_daemon, make_api, receiver):
    """Before: a 2 GiB answer pushed the API to 7.5 GiB; a byte every 3 s stalled every other endpoint."""
    import psutil

    huge, trickle, good = HostileReceiver("huge"), HostileReceiver("trickle"), receiver()
    try:
        make_daemon(fake_workers=True)
        api = make_api([ENTRY], webhooks=hooks((huge.url, ["succeeded"]), (trickle.url, ["succeeded"]),
                                               (good.url, ["succeeded"])),
                       webhook_retry_seconds=60, webhook_timeout_seconds=4)
        before = psutil.Process(api.proc.pid).memory_info().rss
        job = upload(api, "talk.wav", b"audio")
        wait_until(lambda: good.successes(), 30, "the good endpoint's delivery")
        wait_until(lambda: trickle.requests and huge.requests, 30, "the hostile endpoints to be called")
        assert len(good.calls) == 1  # delivered while the trickle was still answering
        def attempted():
            found = api_store(api).deliveries(job["id"])
            return len(found) == 3 and all(d.attempts for d in found) and found
        deliveries = wait_until(attempted, 30, "every endpoint's first attempt to end")
        errors = {d.url: d.last_error for d in deliveries}
        assert "no complete answer within 4 s" in errors[trickle.url]
        assert errors[huge.url].startswith("HTTP 500") and len(errors[huge.url]) < 300
        grown = (psutil.Process(api.proc.pid).memory_info().rss - before) / 2**20
        assert grown < 60, f"the API grew by {grown:.0f} MiB reading an answer"
        assert huge.sent < 1 << 30  # it stopped reading long before the 2 GiB
    finally:
        huge.close()
        trickle.close()


def api_store(api):
    from diarized.store import open_store

    return open_store(api.root / "state/diarized.db", readonly=True)


def test_a_duplicate_fires_its_own_event_with_its_originals_outputs(make_daemon, make_api, receiver):
    """Before: a file submitted twice was never announced (no event for a duplicate)."""
    hook, default = receiver(), receiver()
    make_daemon(fake_workers=True)
    api = make_api([ENTRY], webhooks=json.dumps([{"url": hook.url, "secret": SECRET, "events": ["duplicate"]},
                                                 {"url": default.url, "secret": SECRET}]),
                   webhook_retry_seconds=0.2)
    first = upload(api, "talk.wav", b"the same audio")
    wait_until(lambda: len(default.calls) == 1, 60, "the original's webhook")
    copy = upload(api, "again.wav", b"the same audio")
    wait_until(lambda: hook.calls and len(default.calls) == 2, 60, "the duplicate's webhook to both endpoints")
    body = json.loads(hook.calls[0]["body"])
    assert hook.calls[0]["verified"] and hook.calls[0]["headers"]["Diarized-Event"] == "duplicate"
    assert body["event"] == "duplicate" and body["job_id"] == copy["id"] and body["duplicate_of"] == first["id"]
    assert body["status"] == "completed" and {o["name"] for o in body["outputs"]} >= {"final_transcription.json"}
    assert all(o["url"].startswith(f"/jobs/{first['id']}/outputs/") for o in body["outputs"])
    assert [json.loads(c["body"])["event"] for c in default.calls] == ["succeeded", "duplicate"]
