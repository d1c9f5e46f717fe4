"""The HTTP API as a real uvicorn process, with a real daemon (fake workers here; tiny.en in the slow test)."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest

from diarized.api.auth import new_token
from tests.harness import wait_until

READ, READ_ENTRY = new_token("viewer", "read")
SUBMIT, SUBMIT_ENTRY = new_token("uploader", "submit")


@pytest.fixture
def service(make_daemon, make_api, tmp_path):
    """A daemon with fake workers and the API on one state root; files under tmp_path/media may be named."""
    media = tmp_path / "media"
    media.mkdir()
    daemon = make_daemon(fake_workers=True, max_file_gb=0.002)
    api = make_api([READ_ENTRY, SUBMIT_ENTRY], max_file_gb=0.002, api_allowed_roots=str(media))
    return daemon, api, media


def upload(client, name: str, content: bytes, **fields):
    return client.post("/jobs", files={"file": (name, content)}, data={k: str(v) for k, v in fields.items()})


def wait_state(client, job_id: str, *states: str) -> dict:
    return wait_until(lambda: (j := client.get(f"/jobs/{job_id}").json())["state"] in states and j,
                      60, f"job {job_id} to reach {states}")


def test_tokens_and_scopes(service):
    _, api, _ = service
    with api.client() as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok", "daemon_up": True}
        refused = anonymous.get("/jobs")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in refused.json()["error"]["message"]
    with api.client("dz_wrong") as wrong:
        assert wrong.get("/jobs").status_code == 401
    with api.client(READ) as reader:
        assert reader.get("/jobs").status_code == 200
        forbidden = upload(reader, "talk.wav", b"x")
        assert forbidden.status_code == 403 and "read-only" in forbidden.json()["error"]["message"]
        assert reader.post("/jobs/x/cancel").status_code == 403
    assert list((api.root / "state/uploads").iterdir()) == []


def test_upload_poll_and_download(service, data):
    daemon, api, _ = service
    audio = (data / "en-jfk/jfk.flac").read_bytes()
    with api.client(SUBMIT) as client:
        created = upload(client, "jfk.flac", audio, priority="high", num_speakers=1)
        assert created.status_code == 202, created.text
        job = created.json()
        assert job["state"] == "queued" and job["priority"] == "high" and job["speakers"]["num"] == 1
        assert created.headers["location"] == f"/jobs/{job['id']}"
        done = wait_state(client, job["id"], "succeeded")
        assert done["links"]["outputs"] == f"/jobs/{job['id']}/outputs"
        detail = client.get(f"/jobs/{job['short_id']}").json()
        assert [e["kind"] for e in detail["events"]][:2] == ["recorded", "queued"]
        names = [o["name"] for o in client.get(f"/jobs/{job['id']}/outputs").json()]
        assert names == [o["name"] for o in detail["outputs"]] and "final_transcription.json" in names
        doc = client.get(f"/jobs/{job['id']}/outputs/final_transcription.json")
        outbox = daemon.outbox / "jfk/final_transcription.json"
        assert doc.status_code == 200 and doc.content == outbox.read_bytes()
        for evil in ("../../state/diarized.db", "..%2F..%2Fstate%2Fdiarized.db", "%2Fetc%2Fpasswd",
                     "/etc/passwd", "job.json/../../../state/diarized.db", "nope.srt"):
            answer = client.get(f"/jobs/{job['id']}/outputs/{evil}")
            assert answer.status_code == 404, (evil, answer.text)
            assert answer.headers["content-type"] == "application/json"
        again = upload(client, "copy.flac", audio)
        assert again.json()["state"] == "duplicate" and again.json()["duplicate_of"] == job["id"]
        seed = client.get(f"/status/{again.json()['id']}").json()
        assert seed["status"] == "completed" and seed["job_id"] == again.json()["id"]
        archive = client.get(done["links"]["archive"])
        assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
        assert f'jfk-{job["short_id"]}.zip' in archive.headers["content-disposition"]
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
            assert zipped.namelist() == [f"jfk-{job['short_id']}/{n}" for n in names]
            assert zipped.read(f"jfk-{job['short_id']}/final_transcription.json") == outbox.read_bytes()


def test_a_duplicate_answers_with_its_originals_outputs_by_reference(service):
    """Before: a duplicate's outputs list was empty and /status/{id} hid that it was one."""
    _, api, _ = service
    with api.client(SUBMIT) as client:
        first = upload(client, "talk.wav", b"the same bytes twice").json()
        wait_state(client, first["id"], "succeeded")
        copy = upload(client, "again.wav", b"the same bytes twice").json()
        assert copy["state"] == "duplicate" and copy["duplicate_of"] == first["id"]
        assert copy["links"]["outputs"] == f"/jobs/{copy['id']}/outputs"
        original = client.get(f"/jobs/{first['id']}").json()["outputs"]
        detail = client.get(f"/jobs/{copy['id']}").json()
        assert detail["outputs"] == original and original  # the original's files, its URLs: by reference
        assert client.get(f"/jobs/{copy['id']}/outputs").json() == original
        url = next(o["url"] for o in original if o["name"] == "final_transcription.json")
        fetched = client.get(f"/jobs/{copy['id']}/outputs/final_transcription.json")
        assert fetched.status_code == 200 and fetched.content == client.get(url).content
        seed = client.get(f"/status/{copy['id']}").json()
        assert seed["job_id"] == copy["id"] and seed["duplicate_of"] == first["id"] and seed["status"] == "completed"


def test_post_and_get_answer_the_same_job_with_its_results_as_data(make_daemon, make_api):
    make_daemon(fake_workers=True)
    api = make_api([READ_ENTRY, SUBMIT_ENTRY], api_public_url="https://transcripts.example.org/")
    with api.client(SUBMIT) as client:
        created = upload(client, "talk.wav", b"results as data")
        posted = created.json()
        assert set(posted) == set(client.get(f"/jobs/{posted['id']}").json())
        assert [e["kind"] for e in posted["events"]] == ["recorded", "queued"] and posted["outputs"] == []
        wait_state(client, posted["id"], "succeeded")
        job = client.get(f"/jobs/{posted['id']}").json()
        assert job["language"] == "en" and job["language_probability"] == 0.99 and job["word_count"] == 2
        assert job["speakers_found"] == [{"label": "SPEAKER_00", "name": "SPEAKER_00", "seconds": 0.8}]
        assert job["model"] == "tiny.en" and job["duration"] is not None
        base = f"https://transcripts.example.org/jobs/{job['id']}"
        assert job["links"] == {"self": base, "outputs": f"{base}/outputs", "archive": f"{base}/outputs.zip"}
        assert {o["url"] for o in job["outputs"]} >= {f"{base}/outputs/final_transcription.json"}
        listed = client.get("/jobs").json()["jobs"][0]
        assert listed["speakers_found"] == job["speakers_found"] and "events" not in listed


def test_delete_a_job_but_not_a_running_one(service):
    daemon, api, _ = service
    with api.client(SUBMIT) as client, api.client(READ) as reader:
        done = upload(client, "talk.wav", b"a short one").json()
        wait_state(client, done["id"], "succeeded")
        busy = upload(client, "long.wav", json.dumps({"runs": [{"exit": 0, "seconds": 30}]}).encode()).json()
        wait_state(client, busy["id"], "running")
        assert reader.delete(f"/jobs/{done['id']}").status_code == 403
        none_yet = client.get(f"/jobs/{busy['id']}/outputs.zip")
        assert none_yet.status_code == 404 and "no outputs" in none_yet.json()["error"]["message"]
        refused = client.delete(f"/jobs/{busy['id']}")
        assert refused.status_code == 409 and "cancel it first" in refused.json()["error"]["message"]
        gone = client.delete(f"/jobs/{done['short_id']}")
        assert gone.status_code == 200, gone.text
        assert gone.json()["id"] == done["id"] and gone.json()["removed"] >= 2 and gone.json()["problems"] == []
        assert client.get(f"/jobs/{done['id']}").status_code == 404
        assert client.delete(f"/jobs/{done['id']}").status_code == 404
        assert not (daemon.outbox / "talk").exists()
        metrics = reader.get("/metrics").text
        assert 'diarized_jobs_total{outcome="succeeded"} 1.0' in metrics  # counted though deleted
        assert 'diarized_jobs_deleted_total{state="succeeded"} 1.0' in metrics
        client.post(f"/jobs/{busy['id']}/cancel")


def test_an_oversized_upload_is_refused_and_leaves_nothing(service):
    daemon, api, _ = service
    with api.client(SUBMIT) as client:
        answer = upload(client, "big.wav", os.urandom(3 << 20))
        assert answer.status_code == 413 and "larger than the limit" in answer.json()["error"]["message"]

        def streamed():  # no Content-Length: the limit stops the copy itself
            for _ in range(48):
                yield b"\0" * 65536
        boundary = "xyz"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.wav\"\r\n\r\n"
                .encode(), *streamed(), f"\r\n--{boundary}--\r\n".encode())
        answer = client.post("/jobs", content=iter(body),
                             headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert answer.status_code == 413, answer.text
    assert list((api.root / "state/uploads").iterdir()) == []
    assert daemon.jobs() == []


def test_server_side_paths_stay_inside_the_allowed_roots(service, data, tmp_path):
    _, api, media = service
    (media / "talk.flac").write_bytes((data / "en-jfk/jfk.flac").read_bytes())
    (media / "escape.flac").symlink_to(data / "en-jfk/jfk.flac")
    (media / "dir").mkdir()
    with api.client(SUBMIT) as client:
        for path, status in ((str(media / "escape.flac"), 403), ("/etc/passwd", 403),
                             (str(media / "../media/../../etc/hostname"), 403), (str(media / "dir"), 404),
                             (str(media / "missing.wav"), 404)):
            answer = client.post("/jobs", json={"path": path})
            assert answer.status_code == status, (path, answer.text)
        ok = client.post("/jobs", json={"path": str(media / "talk.flac"), "priority": "low"})
        assert ok.status_code == 202 and ok.json()["file"] == "talk.flac" and ok.json()["priority"] == "low"
        assert (media / "talk.flac").exists()  # copied, not moved
        seed = client.post("/process", json={"file_path": str(media / "talk.flac"), "output_dir": "/x"})
        assert seed.status_code == 202 and seed.json()["status"] == "duplicate"


def test_bad_requests_get_clear_json_errors(service):
    _, api, _ = service
    with api.client(SUBMIT) as client:
        cases = [
            (upload(client, "a.wav", b"x", priority="urgent"), 400, "priority must be high, normal or low"),
            (upload(client, "a.wav", b"x", num_speakers=2, max_speakers=3), 400, "num_speakers fixes the count"),
            (upload(client, "a.wav", b"x", min_speakers="two"), 400, "must be a whole number"),
            (upload(client, "..", b"x"), 400, "not a usable file name"),
            (client.post("/jobs", content=b"raw", headers={"content-type": "audio/wav"}), 400, "multipart"),
            (client.post("/jobs", json={"nope": 1}), 400, "path"),
            (client.get("/jobs/nothing-like-this"), 404, "no job 'nothing-like-this'"),
            (client.get("/jobs", params={"limit": 0}), 400, "limit"),
            (client.get("/jobs", params={"state": "sleeping"}), 400, "state"),
        ]
        for answer, status, words in cases:
            assert answer.status_code == status, answer.text
            assert words in answer.json()["error"]["message"], answer.text
    assert list((api.root / "state/uploads").iterdir()) == []


def test_pages_filters_and_operator_actions(service):
    daemon, api, _ = service
    with api.client(SUBMIT) as client:
        slow = json.dumps({"runs": [{"exit": 0, "seconds": 30}]}).encode()
        ids = [upload(client, f"{n}.wav", slow + b" " * n).json()["id"] for n in range(5)]
        pages, offset = [], 0
        while offset is not None:
            page = client.get("/jobs", params={"limit": 2, "offset": offset}).json()
            pages.append([j["id"] for j in page["jobs"]])
            offset = page["next_offset"]
        assert pages == [ids[4:2:-1], ids[2:0:-1], ids[:1]]
        running = wait_until(lambda: client.get("/jobs", params={"state": "running"}).json()["jobs"], 30,
                             "a running job")
        waiting = client.get("/jobs", params={"state": ["queued"]}).json()["jobs"]
        assert len(running) == 2 and len(waiting) == 3
        target = waiting[0]["id"]
        assert client.post(f"/jobs/{target}/priority", json={"priority": "high"}).json()["priority"] == "high"
        assert client.post(f"/jobs/{target}/cancel").json()["cancel_requested"] is True
        wait_state(client, target, "cancelled")
        conflict = client.post(f"/jobs/{target}/cancel")
        assert conflict.status_code == 409 and "already cancelled" in conflict.json()["error"]["message"]
        assert client.post(f"/jobs/{target}/retry").json()["state"] == "queued"
        system = client.get("/system").json()
        assert system["active_jobs"] == 2 and system["daemon"]["up"] is True
        assert "peak_memory_usage" in system["orchestrator_stats"]
        for job_id in ids:
            client.post(f"/jobs/{job_id}/cancel")


def test_openapi_documents_every_route(service):
    _, api, _ = service
    with api.client() as client:
        spec = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/outputs", "/jobs/{job_id}/outputs/{name}",
            "/jobs/{job_id}/cancel", "/jobs/{job_id}/retry", "/jobs/{job_id}/priority", "/system",
            "/healthz", "/process", "/status/{job_id}"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/jobs"]["post"]["requestBody"]["content"]


def test_the_api_docs_load_nothing_from_a_cdn_and_declare_the_bearer_scheme(service):
    """/docs was a blank page offline: Swagger UI came from a CDN (issue 25, item 2)."""
    import re

    _, api, _ = service
    with api.client() as client:
        page = client.get("/docs").text
        assets = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert assets and all(a.startswith("/") for a in assets), assets  # this server's own paths only
        for asset in assets:
            assert client.get(asset).status_code == 200, asset
        assert client.get("/redoc").status_code == 200
        spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearer"]["description"]}
    assert spec["security"] == [{"bearer": []}]


@pytest.mark.slow
def test_a_real_recording_through_the_api_and_a_real_daemon(make_daemon, make_api, data):
    daemon = make_daemon()  # tiny.en, the real worker
    api = make_api([SUBMIT_ENTRY])
    with api.client(SUBMIT) as client:
        job = upload(client, "sample.wav", (data / "pyannote-sample/sample.wav").read_bytes()).json()
        seen = set()

        def finished():
            state = client.get(f"/jobs/{job['id']}").json()
            seen.add((state["state"], state["stage"]))
            return state["state"] in ("succeeded", "failed") and state
        done = wait_until(finished, 300, "the job to finish", every=0.5)
        assert done["state"] == "succeeded", done
        srt = client.get(f"/jobs/{job['id']}/outputs/transcription.srt")
        assert srt.status_code == 200 and srt.headers["content-type"].startswith("application/x-subrip")
        assert srt.content == (daemon.outbox / "sample/transcription.srt").read_bytes()
        assert ("running", "transcribe") in seen or ("running", "diarize") in seen
