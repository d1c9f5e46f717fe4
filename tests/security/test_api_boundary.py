"""An HTTP client as an attacker: what it can make the API read, and what it can make the API hold.

One real daemon (fake workers) and one real uvicorn for the module; each case says
what broke the boundary before (issue "Security and reliability at the trust boundary").
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import psutil
import pytest

from diarized.api.auth import new_token
from tests.harness import ApiServer, Daemon, wait_until

SUBMIT, SUBMIT_ENTRY = new_token("ana", "submit")
READ, READ_ENTRY = new_token("viewer", "read")


@pytest.fixture(scope="module")
def service(tmp_path_factory, models_cache):
    root = tmp_path_factory.mktemp("boundary") / "var"
    media = root.parent / "media"
    media.mkdir()
    daemon = Daemon(root, models_cache, fake_workers=True).start()
    api = ApiServer(root, [SUBMIT_ENTRY, READ_ENTRY], api_body_idle_seconds=2, api_header_timeout_seconds=2,
                    max_file_gb=0.01, api_allowed_roots=str(media)).start()
    yield daemon, api
    for service in (api, daemon):
        if service.proc.poll() is None:
            service.stop()


@contextmanager
def login(api: ApiServer, token: str) -> Iterator[httpx.Client]:
    with api.client() as client:
        client.follow_redirects = False
        form = client.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        answer = client.post("/ui/login", data={"csrf": csrf, "token": token, "next": "/ui/"})
        assert answer.status_code == 303, answer.text
        yield client


def finished_job(daemon: Daemon, api: ApiServer, name: str, content: bytes) -> dict:
    with api.client(SUBMIT) as client:
        job = client.post("/jobs", files={"file": (name, content)}).json()
        return wait_until(lambda: (j := client.get(f"/jobs/{job['id']}").json())["state"] == "succeeded"
                          and j, 30, f"{name} to succeed")


def test_files_are_served_only_as_the_jobs_own_plain_files(service, data):
    daemon, api = service
    audio = (data / "en-jfk/jfk.flac").read_bytes()
    job = finished_job(daemon, api, "served.flac", audio)
    key = api.root / "state/keys/dashboard.key"
    assert key.exists() and oct(key.parent.stat().st_mode & 0o777) == "0o700"
    stored = daemon.store.get(job["id"])
    with login(api, READ) as browser:
        ranged = browser.get(f"/ui/jobs/{job['id']}/audio", headers={"Range": "bytes=100-199"})
        assert ranged.status_code == 206 and ranged.content == audio[100:200]
        assert browser.get(f"/ui/jobs/{job['id']}/audio").content == audio
        # what the old intake could leave: the recorded original replaced by a link to the key
        original = Path(stored.source_path)
        original.rename(original.with_name("moved.flac"))
        original.symlink_to(key)
        refused = browser.get(f"/ui/jobs/{job['id']}/audio")
        assert refused.status_code == 404 and refused.headers["content-type"] == "application/json"
        original.unlink()
        original.write_bytes(b"K" * len(audio[:10]))  # a plain file, but not the job's own (its size differs)
        assert browser.get(f"/ui/jobs/{job['id']}/audio").status_code == 404
        original.unlink()
        original.with_name("moved.flac").rename(original)
    outbox = Path(stored.output_dir)
    (outbox / "evil.json").symlink_to(key)
    with api.client(READ) as client:
        names = [o["name"] for o in client.get(f"/jobs/{job['id']}/outputs").json()]
        assert "evil.json" not in names and "final_transcription.json" in names
        assert client.get(f"/jobs/{job['id']}/outputs/evil.json").status_code == 404
        text = client.get(f"/jobs/{job['id']}/outputs/transcription.txt")
        assert text.status_code == 200 and text.content == (outbox / "transcription.txt").read_bytes()
    (outbox / "evil.json").unlink()


def test_a_rotated_token_ends_its_dashboard_sessions(service, tmp_path):
    daemon, api = service
    rotated, rotated_entry = new_token("ana", "submit")  # the same name and scope, a new secret
    second = ApiServer(api.root, [rotated_entry], listen=None)
    with login(api, SUBMIT) as browser:
        cookie = browser.cookies.get("diarized_session")
        assert browser.get("/ui/").status_code == 200
    second.start()
    try:
        with second.client() as other:
            other.cookies.set("diarized_session", cookie, domain=second.listen.split(":")[0], path="/ui")
            answer = other.get("/ui/", follow_redirects=False)
            assert answer.status_code == 303 and "/ui/login" in answer.headers["location"]
    finally:
        second.stop()


def raw(api: ApiServer, head: str, body: bytes = b"", timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """One request written by hand on a fresh connection; (status, headers, body) of the answer."""
    host, port = api.listen.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < _expected(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    top, _, rest = answer.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    if "content-length" in headers:
        rest = rest[:int(headers["content-length"])]  # what follows answers the stray bytes, if any
    return int(lines[0].split()[1]), headers, rest


def _expected(answer: bytes) -> int:
    top, _, _ = answer.partition(b"\r\n\r\n")
    match = re.search(rb"(?i)content-length: (\d+)", top)
    return len(top) + 4 + int(match.group(1)) if match else 0


def rss_mb(api: ApiServer) -> float:
    return psutil.Process(api.proc.pid).memory_info().rss / 2**20


def host(api: ApiServer) -> str:
    return api.listen


@pytest.mark.parametrize("path", ["/ui/logout", "/jobs", "/jobs/x/priority", "/ui/upload"])
def test_no_body_is_read_before_authentication(service, path):
    """Before: an anonymous 800 MiB form to /ui/logout was spooled to a temporary file, then refused."""
    _, api = service
    started = time.monotonic()
    status, headers, body = raw(api, f"POST {path} HTTP/1.1\nHost: {host(api)}\nContent-Type: multipart/form-data; "
                                f"boundary=x\nContent-Length: {800 << 20}\n", b"--x\r\n" + b"\0" * 65536)
    assert status == 401 and headers["connection"] == "close", body
    assert json.loads(body)["error"]["code"] == "unauthorized"
    assert time.monotonic() - started < 5  # answered without waiting for the 800 MiB


def test_the_login_form_and_small_bodies_are_capped(service):
    _, api = service
    status, _, body = raw(api, f"POST /ui/login HTTP/1.1\nHost: {host(api)}\nContent-Type: "
                          f"application/x-www-form-urlencoded\nContent-Length: {10 << 20}\n", b"token=")
    assert status == 413 and "at most 4,096 bytes" in json.loads(body)["error"]["message"]
    with api.client(SUBMIT) as client:
        big = client.post("/jobs/x/priority", content=b'{"priority": "' + b"h" * (1 << 20) + b'"}',
                          headers={"content-type": "application/json"})
        assert big.status_code == 413 and big.json()["error"]["code"] == "too_large"

        def chunked():  # no Content-Length: stopped as it passes the cap
            for _ in range(64):
                yield b" " * 65536
        streamed = client.post("/jobs", content=chunked(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413


def multipart(fields: dict[str, str], file: bytes | None = b"RIFF0000WAVE", close: bool = True) -> bytes:
    parts = [f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    if file is not None:
        parts.append(b'--b\r\nContent-Disposition: form-data; name="file"; filename="cut.wav"\r\n\r\n' + file
                     + b"\r\n")
    return b"".join(parts) + (b"--b--\r\n" if close else b"")


def post_upload(api: ApiServer, body: bytes, length: int | None = None) -> tuple[int, dict]:
    status, _, answer = raw(api, f"POST /jobs HTTP/1.1\nHost: {host(api)}\nAuthorization: Bearer {SUBMIT}\n"
                            f"Content-Type: multipart/form-data; boundary=b\n"
                            f"Content-Length: {len(body) if length is None else length}\n", body)
    return status, json.loads(answer) if answer else {}


def test_only_a_complete_well_formed_multipart_body_makes_a_job(service):
    """Before: a body without its closing boundary, or cut short by its Content-Length, became a job."""
    daemon, api = service
    before = len(daemon.jobs())
    status, answer = post_upload(api, multipart({"priority": "high"}, os.urandom(5000), close=False))
    assert status == 400 and "incomplete" in answer["error"]["message"]
    whole = multipart({}, os.urandom(5000))
    status, answer = post_upload(api, whole, length=len(whole) - 200)  # the rest would be another request
    assert status == 400 and "incomplete" in answer["error"]["message"]
    assert len(daemon.jobs()) == before
    assert list((api.root / "state/uploads").iterdir()) == []


def test_a_form_of_fifty_thousand_fields_is_refused_early(service):
    """Before: 50,000 fields grew the API by 180 MB."""
    daemon, api = service
    before, jobs = rss_mb(api), len(daemon.jobs())
    status, answer = post_upload(api, multipart({f"f{n}": "x" * 50 for n in range(50_000)}))
    assert status == 400 and "parts" in answer["error"]["message"]
    assert rss_mb(api) - before < 30 and len(daemon.jobs()) == jobs


def test_a_stalled_body_is_refused_and_nothing_is_kept(service):
    """A body that stops arriving is waited for api_body_idle_seconds (2), no less, then refused with
    408: the server stays silent for the first 1.5 s and has answered within 10 s."""
    daemon, api = service
    host_, port = api.listen.rsplit(":", 1)
    body = multipart({}, os.urandom(5000))
    with socket.create_connection((host_, int(port)), timeout=20) as sock:
        sock.sendall(f"POST /jobs HTTP/1.1\r\nHost: {host(api)}\r\nAuthorization: Bearer {SUBMIT}\r\n"
                     f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {len(body)}\r\n\r\n"
                     .encode() + body[:1000])
        sock.settimeout(1.5)
        with pytest.raises(socket.timeout):  # still within its idle allowance: no answer yet
            sock.recv(65536)
        sock.settimeout(8.5)  # socket.timeout here: the stalled body was never refused
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer
    wait_until(lambda: list((api.root / "state/uploads").iterdir()) == [], 10, "the partial upload to go")


def test_a_nul_byte_in_a_path_is_a_json_400(service):
    _, api = service
    with api.client(SUBMIT) as client:
        media = api.root.parent / "media"
        for body in ({"path": f"{media}/a\u0000b.wav"}, {"file_path": f"{media}/\u0000"}):
            answer = client.post("/jobs" if "path" in body else "/process", json=body)
            assert answer.status_code == 400 and answer.headers["content-type"] == "application/json", answer.text
            assert "NUL" in answer.json()["error"]["message"]


IDLE_CONNECTIONS = 1100  # more than the default descriptor limit of 1024


def test_idle_half_open_connections_never_lock_out_a_request(service):
    """Before: 1,100 idle connections (no request sent) made /healthz time out (1,024 descriptors)."""
    daemon, shared = service
    api = ApiServer(shared.root, [SUBMIT_ENTRY], descriptors=1024, api_header_timeout_seconds=2).start()
    try:
        _hold_idle_connections(api)
    finally:
        api.stop()


def _hold_idle_connections(api: ApiServer) -> None:
    host_, port = api.listen.rsplit(":", 1)
    held = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            sock = socket.create_connection((host_, int(port)), timeout=10)
            held.append(sock)
        half = socket.create_connection((host_, int(port)), timeout=10)
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers begun, never finished
        held.append(half)
        started = time.monotonic()
        with api.client() as client:
            assert client.get("/healthz", timeout=10).json()["status"] == "ok"
        assert time.monotonic() - started < 5
        # api_header_timeout_seconds = 2: the server closes what never sent its headers
        closed = wait_until(lambda: _closed(half), 15, "the half-sent request to be closed")
        assert closed and psutil.Process(api.proc.pid).num_fds() < IDLE_CONNECTIONS // 2
    finally:
        for sock in held:
            sock.close()


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True
