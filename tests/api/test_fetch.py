"""Submit by URL against a local HTTP server only: allowed hosts, public addresses, redirects, size, time."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from diarized.api.auth import new_token
from diarized.api.fetch import file_name, host_allowed, refused_address
from tests.harness import wait_until

TOKEN, ENTRY = new_token("fetcher", "submit")


class Media:
    """Serves the recording and every way a download can go wrong, on 127.0.0.1."""

    def __init__(self, audio: bytes):
        media = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                media.paths.append(self.path)
                route = {"/jfk.flac": self.audio, "/hop1": lambda: self.redirect("/hop2"),
                         "/hop2": lambda: self.redirect("/jfk.flac"), "/loop": lambda: self.redirect("/loop"),
                         "/away": lambda: self.redirect(f"http://localhost:{media.port}/jfk.flac"),
                         "/big": self.big, "/unsized": self.unsized, "/slow": self.slow, "/named": self.named}
                route.get(self.path, lambda: self.send_error(404))()

            def redirect(self, where):
                self.send_response(302)
                self.send_header("Location", where)
                self.end_headers()

            def audio(self, headers=()):
                self.send_response(200)
                self.send_header("Content-Length", str(len(audio)))
                for key, value in headers:
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(audio)

            def named(self):
                self.audio([("Content-Disposition", "attachment; filename*=UTF-8''reuni%C3%A3o%20ana.flac")])

            def big(self):
                self.send_response(200)
                self.send_header("Content-Length", str(3 << 20))
                self.end_headers()

            def unsized(self):
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for _ in range(48):
                        self.wfile.write(b"\0" * 65536)
                except OSError:
                    pass  # the client hung up at the limit

            def slow(self):
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(10):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(1.0)

            def log_message(self, *args):
                pass
        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def media(data):
    server = Media((data / "en-jfk/jfk.flac").read_bytes())
    yield server
    server.server.shutdown()


def submit(api, url: str, **fields):
    with api.client(TOKEN) as client:
        return client.post("/jobs", json={"url": url, **fields})


def test_urls_are_off_until_hosts_are_allowed_and_private_addresses_stay_refused(make_daemon, make_api, media):
    make_daemon(fake_workers=True)
    off = make_api([ENTRY])
    answer = submit(off, media.url("/jfk.flac"))
    assert answer.status_code == 403 and "does not fetch URLs (api_url_hosts is empty)" in answer.text
    off.stop()
    public_only = make_api([ENTRY], api_url_hosts="127.0.0.1,localhost")
    for url in (media.url("/jfk.flac"), f"http://localhost:{media.port}/jfk.flac"):
        answer = submit(public_only, url)
        assert answer.status_code == 403 and "loopback address" in answer.json()["error"]["message"], answer.text
    assert media.paths == []  # refused before any connection


def test_a_recording_is_fetched_and_every_failure_is_clear(make_daemon, make_api, media):
    daemon = make_daemon(fake_workers=True, max_file_gb=0.002)
    api = make_api([ENTRY], api_url_hosts="127.0.0.1", api_url_allow_private="true", max_file_gb=0.002,
                   api_url_timeout_seconds=3)
    made = submit(api, media.url("/hop1"), language="en", priority="high")
    assert made.status_code == 202, made.text
    job = made.json()
    assert job["file"] == "jfk.flac" and job["priority"] == "high" and job["options"] == {"language": "en"}
    assert media.paths == ["/hop1", "/hop2", "/jfk.flac"]
    named = submit(api, media.url("/named")).json()
    assert named["file"] == "reunião ana.flac" and named["duplicate_of"] == job["id"]
    cases = [("/loop", 400, "more than 3 redirects"), ("/missing", 502, "answered HTTP 404"),
             ("/away", 403, "localhost is not among the hosts"), ("/big", 413, "larger than the limit"),
             ("/unsized", 413, "larger than the limit"), ("/slow", 408, "within 3 s")]
    for path, status, words in cases:
        started = time.monotonic()
        answer = submit(api, media.url(path))
        assert answer.status_code == status and words in answer.json()["error"]["message"], (path, answer.text)
        assert time.monotonic() - started < 20, path  # socket-bounded: a refusal never hangs the client
    for url, words in (("ftp://127.0.0.1/x.wav", "not an http"), (f"http://u:p@127.0.0.1:{media.port}/jfk.flac",
                                                                  "user name or password")):
        assert words in submit(api, url).json()["error"]["message"]
    with api.client(TOKEN) as client:
        both = client.post("/jobs", json={"url": media.url("/jfk.flac"), "path": "/etc/hostname"})
        assert both.status_code == 400 and "either `path`" in both.text
    wait_until(lambda: daemon.store.get(job["id"]).state == "succeeded", 30, "the fetched job")
    assert list((api.root / "state/uploads").iterdir()) == []
    assert len(daemon.jobs()) == 2


def test_hosts_names_and_addresses():
    assert host_allowed("media.example.org", (".example.org",)) and host_allowed("x.org", ("*",))
    assert not host_allowed("example.org.evil.net", (".example.org", "example.org"))
    assert host_allowed("Example.ORG.", ("example.org",))
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.9", "169.254.169.254", "::1", "fe80::1", "::ffff:10.0.0.1",
                    "0.0.0.0", "224.0.0.1"):
        assert refused_address(address), address
    assert refused_address("93.184.215.14") is None and refused_address("2606:2800:21f:cb07::1") is None
    assert file_name("https://h/a/b%20c.mp4?x=1", None) == "b c.mp4"
    assert file_name("https://h/", 'attachment; filename="../../etc/passwd"') == "passwd"
    assert file_name("https://h/", None) == "download"
