"""Where `diarized api` listens, and when it refuses to: real processes, real sockets."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest

from diarized.api.auth import new_token
from tests.harness import ApiServer, free_port, wait_until

TOKEN, ENTRY = new_token("ops", "submit")


def test_no_token_on_a_network_address_is_refused(make_api):
    api = make_api(start=False)
    api.start(wait=False)
    assert api.proc.wait(30) == 1
    assert "no api_tokens are configured" in api.log.read_text()
    assert "diarizectl token new" in api.log.read_text()


def test_a_unix_socket_without_tokens_is_guarded_by_its_mode(make_api, tmp_path):
    sock = tmp_path / "run/api.sock"
    api = make_api(listen=f"unix:{sock}")
    assert stat.S_IMODE(sock.stat().st_mode) == 0o660
    with api.client() as client:
        assert client.get("/jobs").status_code == 200  # no token needed: only the service's group can connect
    assert api.stop() in (0, -15)  # uvicorn finishes requests, then re-raises SIGTERM (systemd: a clean stop)
    again = make_api(listen=f"unix:{sock}")  # a socket file left behind is replaced, not an error
    with again.client() as client:
        assert client.get("/healthz").status_code == 200


def test_tokens_still_apply_on_a_unix_socket_when_configured(make_api, tmp_path):
    api = make_api([ENTRY], listen=f"unix:{tmp_path / 'api.sock'}")
    with api.client() as anonymous, api.client(TOKEN) as ops:
        assert anonymous.get("/jobs").status_code == 401 and ops.get("/jobs").status_code == 200


@pytest.mark.skipif(not shutil.which("systemd-socket-activate"), reason="systemd's socket activation tool")
def test_socket_activation_uses_the_socket_systemd_passes(tmp_path):
    """systemd-socket-activate listens first and hands the socket over as fd 3, as diarized-api.socket would."""
    import httpx

    port = free_port()
    api = ApiServer(tmp_path / "var", [ENTRY])
    (tmp_path / "var").mkdir()
    proc = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "-E", "DIARIZED_API_TOKENS",
                             "-E", "DIARIZED_CONFIG", "-E", "PYTHONPATH", sys.executable, "-m", "diarized.cli.daemon",
                             "api", "--state-dir", str(api.root), "--listen", "127.0.0.1:1"],
                            env=api.env | {"PYTHONPATH": os.getcwd()}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        def answer():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/jobs", headers={"Authorization": f"Bearer {TOKEN}"},
                                 timeout=30)
            except httpx.TransportError:
                return None
        response = wait_until(answer, 60, "the socket-activated API to answer")
        assert response.status_code == 200 and response.json()["jobs"] == []
    finally:
        proc.terminate()
        proc.wait(30)


def test_tcp_listeners_say_tcp_so_every_connection_gets_nodelay():
    """asyncio sets TCP_NODELAY only where the socket's proto is TCP; with proto 0 each keep-alive
    response waited for a delayed ACK (44 ms a request, measured with bench/api_load.py)."""
    import socket

    from diarized.api.server import Listen, bind

    sock = bind(Listen.parse(f"127.0.0.1:{free_port()}"))
    with sock:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_the_api_process_never_loads_a_model_or_media_library(make_daemon, make_api):
    """Also while it renders outputs (formats.py, through a rename) and zips them."""
    from tests.api.test_dashboard import csrf_of, login
    from tests.harness import wait_until

    daemon = make_daemon(fake_workers=True)
    api = make_api([ENTRY])
    with api.client(TOKEN) as client:
        job = client.post("/jobs", files={"file": ("a.wav", b"render me")}).json()
        wait_until(lambda: daemon.store.get(job["id"]).state == "succeeded", 30, "the job")
        for path in ("/jobs", "/system", "/metrics", "/openapi.json", f"/jobs/{job['id']}/outputs.zip"):
            assert client.get(path).status_code == 200
    with login(api, TOKEN) as session:
        renamed = session.post(f"/ui/jobs/{job['id']}/rename", data={"csrf": csrf_of(session), "name:SPEAKER_00": "Ana"})
        assert renamed.status_code == 303
    maps = open(f"/proc/{api.proc.pid}/maps").read()
    for library in ("libtorch", "ctranslate2", "onnxruntime", "libavcodec", "libavformat", "_multiarray_umath"):
        assert library not in maps, library
