"""The dashboard: its locks over plain HTTP (fast), and the whole flow in a real browser (slow).

The browser is Debian's chromium driven through chromium-driver by selenium
(`make system-deps` installs both); pages are screenshotted into the test's
output folder.
"""

from __future__ import annotations

import json
import re
import zipfile
import shutil
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from diarized.api.auth import new_token
from diarized.store import Priority, open_store
from tests.harness import wait_until

SUBMIT, SUBMIT_ENTRY = new_token("ana", "submit")
READ, READ_ENTRY = new_token("viewer", "read")


@contextmanager
def login(api, token: str) -> Iterator[httpx.Client]:
    with api.client() as client:
        client.follow_redirects = False
        form = client.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        answer = client.post("/ui/login", data={"csrf": csrf, "token": token, "next": "/ui/"})
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/", answer.text
        yield client


def csrf_of(client: httpx.Client, path: str = "/ui/") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


class Scripts(HTMLParser):
    """Collects what a Content-Security-Policy without 'unsafe-inline' would refuse."""

    def __init__(self):
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self.inline.append("<script> without src")
        self.inline += [f"{tag} {k}=" for k in names if k.startswith("on") or k == "style"]


@pytest.fixture
def service(make_daemon, make_api):
    daemon = make_daemon(fake_workers=True)
    api = make_api([SUBMIT_ENTRY, READ_ENTRY])
    return daemon, api


def uploaded(session: httpx.Client, daemon, name: str, content: bytes) -> str:
    """Upload through the dashboard's form script path; the job id once the fake worker is done."""
    job_id = session.post("/ui/upload", files={"file": (name, content)},
                          headers={"X-CSRF-Token": csrf_of(session)}).json()["id"]
    wait_until(lambda: daemon.store.get(job_id).state in ("succeeded", "failed"), 30, f"the job {name}")
    return job_id


def test_pages_need_a_session_and_forms_need_its_csrf(service):
    _, api = service
    with api.client() as anonymous:
        anonymous.follow_redirects = False
        first = anonymous.get("/ui/jobs/x")
        assert first.status_code == 303 and first.headers["location"] == "/ui/login?next=/ui/jobs/x"
        assert anonymous.get("/ui/overview.json").status_code == 401
        assert anonymous.post("/ui/login", data={"token": SUBMIT, "csrf": "guess"}).status_code == 403
        form = anonymous.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        wrong = anonymous.post("/ui/login", data={"csrf": csrf, "token": "dz_wrong"})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        evil = anonymous.get("/ui/login", params={"next": "//evil.example/"})
        assert 'value="/ui/"' in evil.text  # no open redirect after login
    with login(api, SUBMIT) as ana:
        cookie = next(c for c in ana.cookies.jar if c.name == "diarized_session")
        assert cookie.has_nonstandard_attr("HttpOnly") and cookie.get_nonstandard_attr("SameSite") == "strict"
        job = ana.post("/ui/upload", files={"file": ("a.wav", b"x")}, headers={"X-CSRF-Token": csrf_of(ana)})
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        assert ana.post(f"/ui/jobs/{job_id}/cancel").status_code == 403  # no CSRF field
        assert ana.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": "x" * 32}).status_code == 403
        assert ana.post("/ui/upload", files={"file": ("b.wav", b"y")}).status_code == 403
        assert ana.post("/ui/logout", data={"csrf": csrf_of(ana)}).status_code == 303
        assert ana.get("/ui/").status_code == 303  # logged out


def test_a_read_only_session_sees_but_cannot_change(service):
    daemon, api = service
    with login(api, SUBMIT) as ana:
        job_id = uploaded(ana, daemon, "a.wav", b"x")
    with login(api, READ) as viewer:
        page = viewer.get("/ui/").text
        assert 'id="upload-form"' not in page and "a.wav" in page
        assert 'id="retry-button"' not in viewer.get(f"/ui/jobs/{job_id}").text
        csrf = csrf_of(viewer)
        refused = viewer.post("/ui/upload", files={"file": ("b.wav", b"y")}, headers={"X-CSRF-Token": csrf})
        assert refused.status_code == 403 and "read token" in refused.json()["error"]["message"]
        assert viewer.post(f"/ui/jobs/{job_id}/retry", data={"csrf": csrf}).status_code == 403
        assert viewer.post(f"/ui/jobs/{job_id}/rename", data={"csrf": csrf, "name:SPEAKER_00": "X"}).status_code == 403


def test_a_rename_updates_the_job_record_and_its_timeline(service):
    daemon, api = service
    with login(api, SUBMIT) as ana:
        job_id = uploaded(ana, daemon, "r.wav", b"rename me")
        answer = ana.post(f"/ui/jobs/{job_id}/rename", data={"csrf": csrf_of(ana), "name:SPEAKER_00": "Ana Souza"},
                          follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].endswith("/transcript?saved=1")
        assert 'id="rename-saved"' in ana.get(answer.headers["location"]).text
    job = daemon.store.get(job_id)
    assert job.speakers_found == [{"label": "SPEAKER_00", "name": "Ana Souza", "seconds": 0.8}]
    renamed = daemon.store.events(job_id)[-1]
    assert renamed.kind == "renamed" and renamed.detail == "SPEAKER_00 → Ana Souza (by ana)"


def test_the_finished_list_tells_the_story_and_a_job_can_be_zipped_and_deleted(service):
    daemon, api = service
    with login(api, SUBMIT) as ana:
        good = uploaded(ana, daemon, "good.wav", b"fine")
        bad = uploaded(ana, daemon, "bad.mp4", json.dumps({"runs": [{"exit": 2, "error": "bad.mp4: not media"}]}).encode())
        rows = {row["file"]: row for row in ana.get("/ui/overview.json").json()["finished"]}
        assert rows["good.wav"]["speakers_text"] == "1" and rows["good.wav"]["language"] == "en"
        assert rows["good.wav"]["short_id"] == good[-6:] and rows["good.wav"]["rtf_text"] != ""
        assert rows["bad.mp4"]["outcome_text"] == "failed: FakeError" and rows["bad.mp4"]["hint"]
        page = ana.get("/ui/").text
        assert "failed: FakeError" in page and f">{good[-6:]}</a>" in page
        assert f'<span class="row-hint">{daemon.store.get(bad).hint}</span>' in page  # what to do, at a glance
        lines = ana.get("/ui/overview.json").json()["samples"]
        assert all(line["label"].endswith(f"({line['job'][-6:]})") for line in lines)  # named by job, not pid
        job_page = ana.get(f"/ui/jobs/{good}").text
        assert 'id="download-all"' in job_page and 'id="delete-button"' in job_page
        zipped = ana.get(f"/ui/jobs/{good}/outputs.zip")
        assert zipped.status_code == 200 and zipped.content[:2] == b"PK"
        confirm = ana.get(f"/ui/jobs/{good}/delete")
        assert confirm.status_code == 200 and "cannot be undone" in confirm.text and "data-confirm" in confirm.text
        assert ana.post(f"/ui/jobs/{good}/delete", data={"csrf": "stale"}).status_code == 403
        gone = ana.post(f"/ui/jobs/{good}/delete", data={"csrf": csrf_of(ana)}, follow_redirects=False)
        assert gone.status_code == 303 and gone.headers["location"] == "/ui/?deleted=good.wav"
        assert "good.wav was deleted." in ana.get(gone.headers["location"]).text
        assert good not in {j.id for j in daemon.jobs()}
        renamed = ana.post(f"/ui/jobs/{bad}/rename", data={"csrf": csrf_of(ana), "name:SPEAKER_00": "X"},
                           follow_redirects=False)
        assert renamed.status_code == 400 and "only a succeeded job" in renamed.text  # nothing to name
    with login(api, READ) as viewer:
        assert viewer.get(f"/ui/jobs/{bad}/delete").status_code == 403
        assert 'id="delete-button"' not in viewer.get(f"/ui/jobs/{bad}").text


def test_any_job_is_found_by_a_word_it_said_through_the_page_the_api_and_the_cli(service, tmp_path):
    from click.testing import CliRunner

    from diarized.cli.ctl import cli

    daemon, api = service
    words = ["orchard", "lantern", "harbour", "meadow", "quartz"]
    with api.client(SUBMIT) as client:
        for n in range(25):
            said = f"we spoke about the {words[n % 5]} number {n}"
            client.post("/jobs", files={"file": (f"talk-{n:02d}.wav", json.dumps(
                {"runs": [{"exit": 0, "seconds": 0.05, "text": said}], "n": n}).encode())})
        wait_until(lambda: len(daemon.jobs("succeeded")) == 25, 60, "25 jobs")
        found = client.get("/jobs", params={"q": "lantern number", "sort": "name"}).json()["jobs"]
        assert [j["file"] for j in found] == [f"talk-{n:02d}.wav" for n in range(1, 25, 5)]
        assert client.get("/jobs", params={"q": "talk 07"}).json()["jobs"][0]["file"] == "talk-07.wav"
        first = client.get("/jobs", params={"limit": 10}).json()
        assert first["next_offset"] == 10 and len(first["jobs"]) == 10
    with login(api, READ) as viewer:
        page = viewer.get("/ui/jobs", params={"q": "quartz", "sort": "oldest"}).text
        assert page.count('data-job="') == 5 and page.index("talk-04.wav") < page.index("talk-24.wav")
        assert 'value="quartz"' in page and 'id="next-page"' not in page
        paged = viewer.get("/ui/jobs", params={"offset": 0}).text
        assert paged.count('data-job="') == 25
        assert "No job matches." in viewer.get("/ui/jobs", params={"q": "zeppelin"}).text
    listed = CliRunner().invoke(cli, ["--state-dir", str(daemon.root), "list", "--search", "meadow 13", "--json"],
                                env={"DIARIZED_CONFIG": ""})
    assert [j["source_name"] for j in json.loads(listed.stdout)] == ["talk-13.wav"]


def test_transcript_edits_are_saved_with_a_timeline_entry_and_refused_when_stale(service):
    daemon, api = service
    with login(api, SUBMIT) as ana:
        job_id = uploaded(ana, daemon, "e.wav", b"edit me")
        page = ana.get(f"/ui/jobs/{job_id}/transcript").text
        assert 'data-version="0"' in page and 'id="undo-button" disabled' in page
        edits = {"version": 0, "edits": [{"op": "text", "paragraph": 0, "text": "Hello over there."}]}
        assert ana.post(f"/ui/jobs/{job_id}/edit", json=edits).status_code == 403  # no CSRF header
        saved = ana.post(f"/ui/jobs/{job_id}/edit", json=edits, headers={"X-CSRF-Token": csrf_of(ana)})
        assert saved.status_code == 200 and saved.json() == {"version": 1, "done": ["paragraph 1: words"]}
        stale = ana.post(f"/ui/jobs/{job_id}/edit", json=edits, headers={"X-CSRF-Token": csrf_of(ana)})
        assert stale.status_code == 409 and "reload it" in stale.json()["error"]["message"]
        bad = ana.post(f"/ui/jobs/{job_id}/edit", json={"version": 1, "edits": []},
                       headers={"X-CSRF-Token": csrf_of(ana)})
        assert bad.status_code == 400
        page = ana.get(f"/ui/jobs/{job_id}/transcript").text
        assert "Hello over there." in page and 'data-version="1"' in page and "Last edited" in page
    job = daemon.store.get(job_id)
    assert job.word_count == 3 and daemon.store.events(job_id)[-1].detail == "by ana: paragraph 1: words"
    with login(api, READ) as viewer:
        refused = viewer.post(f"/ui/jobs/{job_id}/edit", json=edits, headers={"X-CSRF-Token": csrf_of(viewer)})
        assert refused.status_code == 403


def test_no_inline_script_names_are_escaped_and_the_policy_is_sent(service):
    daemon, api = service
    evil = '"><img src=x onerror=alert(1)>.wav'
    with login(api, SUBMIT) as ana:
        job_id = ana.post("/ui/upload", files={"file": (evil, b"x")},
                          headers={"X-CSRF-Token": csrf_of(ana)}).json()["id"]
        wait_until(lambda: daemon.store.get(job_id).state == "succeeded", 30, "the job")
        for path in ("/ui/", f"/ui/jobs/{job_id}", f"/ui/jobs/{job_id}/transcript", "/ui/login"):
            answer = ana.get(path)
            assert answer.status_code == 200, (path, answer.text)
            assert "script-src 'self'" in answer.headers["content-security-policy"]
            scan = Scripts()
            scan.feed(answer.text)
            assert scan.inline == [], (path, scan.inline)
            assert "<img src=x" not in answer.text
            if path != "/ui/login":
                assert "onerror=alert(1)&gt;" in answer.text  # shown, as text


def test_page_times_with_a_thousand_jobs_are_recorded(make_daemon, make_api, tmp_path):
    """Seeds 1,000 jobs and records each page's server time (Server-Timing); the numbers go to
    a file for the closing note, not into an assert (machines here are shared)."""
    daemon = make_daemon(fake_workers=True, max_workers=1)
    store = open_store(daemon.root / "state/diarized.db")
    for n in range(1000):
        job = store.mark_queued(store.record_incoming(f"talk-{n}.wav", f"{n:064x}", 10, Priority.LOW, 3,
                                                      tmp_path / "x", daemon.root / "state/jobs").id, 60.0)
        if n % 2:
            store.claim(job.id)
            store.mark_succeeded(job.id, str(tmp_path / f"out/{n}"), None)
    api = make_api([SUBMIT_ENTRY])
    times: dict[str, list[float]] = {}
    with login(api, SUBMIT) as ana:
        job_id = store.jobs(limit=1)[0].id
        for path in ("/ui/", "/ui/overview.json", f"/ui/jobs/{job_id}"):
            for _ in range(20):
                answer = ana.get(path)
                assert answer.status_code == 200
                times.setdefault(path, []).append(float(answer.headers["server-timing"].split("dur=")[1]))
    report = {path: {"p50_ms": sorted(t)[len(t) // 2], "max_ms": max(t)} for path, t in times.items()}
    (tmp_path / "page-times.json").write_text(json.dumps(report, indent=2))
    print("page server times with 1,000 jobs:", json.dumps(report))
    assert set(report) == {"/ui/", "/ui/overview.json", f"/ui/jobs/{job_id}"}


# -- a real browser -------------------------------------------------------------------------------
def browser(downloads: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                 "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromedriver"), reason="chromium-driver (make system-deps installs it)")
def test_the_dashboard_in_a_real_browser(make_daemon, make_api, data, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    daemon = make_daemon()  # tiny.en, the real worker
    api = make_api([SUBMIT_ENTRY])
    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver = browser(tmp_path / "downloads")
    try:
        driver.get(api.url + "/ui/")
        assert driver.current_url.startswith(api.url + "/ui/login")
        driver.save_screenshot(str(shots / "1-login.png"))
        driver.find_element(By.ID, "token").send_keys(SUBMIT)
        driver.find_element(By.ID, "login-button").click()
        wait_until(lambda: driver.find_elements(By.ID, "upload-form"), 30, "the overview")
        driver.execute_script("window.notReloaded = true")
        driver.find_element(By.ID, "file").send_keys(str(data / "pyannote-sample/sample.wav"))
        driver.find_element(By.ID, "upload-button").click()
        wait_until(lambda: "sample.wav is queued" in driver.find_element(By.ID, "upload-message").text, 60,
                   lambda: "the upload to be accepted: " + driver.find_element(By.ID, "upload-message").text)
        seen = set()

        def progressed():
            # one script reads the rows: the page replaces them every 2 s, so an element found in
            # one call may be gone by the next (a stale element reference)
            values, running, done = driver.execute_script(
                "const q = s => Array.from(document.querySelectorAll(s));"
                "return [q('#queue-rows progress').map(p => p.value), q('#queue-rows .state-running').length,"
                " q('#finished-rows .state-succeeded').length];")
            seen.update(float(v) for v in values)
            if running and not (shots / "2-overview-running.png").exists():
                driver.save_screenshot(str(shots / "2-overview-running.png"))
            return done
        wait_until(progressed, 300, lambda: f"the job to succeed (progress seen: {sorted(seen)})", every=0.3)
        assert driver.execute_script("return window.notReloaded") is True  # live, no reload
        assert any(0 < v < 1 for v in seen) or len(seen) > 1, seen
        wait_until(lambda: driver.execute_script(
            "return document.getElementById('upload-message').textContent") == "", 10, "the upload message to go")
        legend = driver.execute_script("return document.getElementById('chart-legend').textContent")
        assert "sample.wav (" in legend, legend  # the worker's line is named by its job
        driver.save_screenshot(str(shots / "3-overview-done.png"))
        widths = {}
        for width, theme in ((400, "light"), (400, "dark"), (1280, "dark")):
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
                "features": [{"name": "prefers-color-scheme", "value": theme}]})
            driver.set_window_size(width, 900)
            driver.refresh()
            wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#finished-rows tr[data-job]"), 30, "rows")
            inner, scroll = driver.execute_script(
                "return [window.innerWidth, document.documentElement.scrollWidth]")
            widths[f"{width}-{theme}"] = (inner, scroll)
            driver.save_screenshot(str(shots / f"3-overview-{width}-{theme}.png"))
            assert scroll <= inner, f"at {width} px ({theme}) the page is {scroll} px wide"
        background = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(20, 23, 29)", background  # the dark theme is in force
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        driver.set_window_size(1280, 1000)
        print("overview widths (inner, scroll):", widths)

        # find it among 50 by a word it said: 49 more finished jobs, talking of other things
        from bench.search_scale import fill
        from diarized.store import open_store

        writer = open_store(daemon.store_location)
        fill(writer, 49)
        writer.close()
        said = json.loads((daemon.outbox / "sample/final_transcription.json").read_text())["segments"][0]["text"]
        word = max(re.findall(r"\w+", said), key=len)
        driver.find_element(By.ID, "jobs-link").click()
        wait_until(lambda: driver.find_elements(By.ID, "search-q"), 30, "the jobs page")
        assert driver.execute_script("return document.querySelectorAll('#results tr[data-job]').length") == 50
        driver.find_element(By.ID, "search-q").send_keys(word + Keys.ENTER)
        wait_until(lambda: driver.execute_script(
            "return document.querySelectorAll('#results tr[data-job]').length") == 1, 30, f"one job saying {word!r}")
        driver.save_screenshot(str(shots / "3-search.png"))
        driver.find_element(By.CSS_SELECTOR, "#results td.file a").click()
        wait_until(lambda: driver.find_elements(By.ID, "transcript-link"), 30, "the found job's page")
        assert "sample.wav" in driver.find_element(By.TAG_NAME, "h1").text
        driver.get(api.url + "/ui/")
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#finished-rows a"), 30, "the overview again")

        driver.execute_script(
            "Array.from(document.querySelectorAll('#finished-rows td.file a')).find(a => a.textContent === 'sample.wav')"
            ".click()")  # by script: no stale reference
        wait_until(lambda: driver.find_elements(By.ID, "transcript-link"), 30, "the job page")
        driver.save_screenshot(str(shots / "4-job.png"))
        job_id = driver.current_url.rsplit("/", 1)[1]
        driver.find_element(By.ID, "download-all").click()
        zipped = wait_until(lambda: list((tmp_path / "downloads").glob("sample-*.zip")), 30, "the zip download")
        wait_until(lambda: zipfile.is_zipfile(zipped[0]) and "sample-" in zipfile.ZipFile(zipped[0]).namelist()[0],
                   30, "a complete zip")
        doc = json.loads((daemon.outbox / "sample/final_transcription.json").read_text())
        driver.find_element(By.ID, "transcript-link").click()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#paragraphs .para"), 30, "the transcript")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#lanes g.lane")) == len(doc["speakers"]) == 2
        wait_until(lambda: driver.execute_script("return document.getElementById('player').readyState") >= 1,
                   30, "the audio's metadata")
        second = driver.find_elements(By.CSS_SELECTOR, "#paragraphs .para")[1]
        start = float(second.get_attribute("data-start"))
        second.click()
        moved = wait_until(lambda: abs(driver.execute_script(
            "return document.getElementById('player').currentTime") - start) < 0.75 or None, 15,
            f"currentTime to reach {start}")
        assert moved
        driver.save_screenshot(str(shots / "5-transcript.png"))
        driver.set_window_size(400, 900)  # the transcript and its lanes on a phone
        inner, scroll = driver.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]")
        driver.save_screenshot(str(shots / "5-transcript-400.png"))
        assert scroll <= inner, f"the transcript is {scroll} px wide at {inner}"
        driver.set_window_size(1280, 1000)

        field = driver.find_element(By.ID, "rename-SPEAKER_00")
        field.clear()
        field.send_keys("Ana")
        driver.find_element(By.ID, "rename-button").click()
        # read by script: during the form's redirect the old page's elements go stale
        wait_until(lambda: "Ana" in driver.execute_script(
            "const p = document.getElementById('paragraphs'); return p ? p.textContent : '';"), 30, "the new name")
        assert driver.find_element(By.ID, "rename-saved").is_displayed()  # the save says so
        driver.save_screenshot(str(shots / "6-renamed.png"))
        with api.client(SUBMIT) as client:
            srt = client.get(f"/jobs/{job_id}/outputs/transcription.srt").text
        assert "Ana: " in srt and "SPEAKER_00" not in srt
        saved = json.loads((daemon.outbox / "sample/final_transcription.json").read_text())
        assert "SPEAKER_00" in {s["speaker_label"] for s in saved["segments"]}

        # correct a word with the keyboard: Enter opens the editor, Enter saves
        first = driver.find_element(By.CSS_SELECTOR, "#paragraphs .para[data-index='0']")
        words = first.find_element(By.CSS_SELECTOR, ".text").text.split()
        first.send_keys(Keys.ENTER)
        editor = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#paragraphs textarea.editor"), 10,
                            "the editor")[0]
        editor.clear()
        editor.send_keys(" ".join(["Zanzibar"] + words[1:]))
        driver.save_screenshot(str(shots / "7-editing.png"))
        editor.send_keys(Keys.ENTER)
        wait_until(lambda: "Saved: paragraph 1: words" in driver.execute_script(
            "const m = document.getElementById('edit-message'); return m ? m.textContent : '';"), 30, "the save")
        driver.save_screenshot(str(shots / "8-edited.png"))
        with api.client(SUBMIT) as client:
            assert "Zanzibar" in client.get(f"/jobs/{job_id}/outputs/transcription.srt").text
        # give the second paragraph to the other speaker, then undo it
        second_speaker = driver.execute_script(
            "return document.querySelector(\"#paragraphs .para[data-index='1'] .who\").textContent")
        other = "Ana" if second_speaker != "Ana" else "SPEAKER_01"
        Select(driver.find_element(By.CSS_SELECTOR, "#paragraphs .para[data-index='1'] select.move")).select_by_value(other)
        wait_until(lambda: "→ " + other in driver.execute_script(
            "const m = document.getElementById('edit-message'); return m ? m.textContent : '';"), 30, "the move")
        driver.save_screenshot(str(shots / "9-moved.png"))
        assert driver.execute_script(
            "return document.querySelector(\"#paragraphs .para[data-index='1'] .who\").textContent") == other
        driver.find_element(By.ID, "undo-button").click()
        wait_until(lambda: "undid" in driver.execute_script(
            "const m = document.getElementById('edit-message'); return m ? m.textContent : '';"), 30, "the undo")
        assert driver.execute_script(
            "return document.querySelector(\"#paragraphs .para[data-index='1'] .who\").textContent") == second_speaker
        edited = json.loads((daemon.outbox / "sample/final_transcription.json").read_text())
        assert edited["version"] == 3 and edited["machine_segments"][0]["text"] != edited["segments"][0]["text"]

        driver.get(api.url + f"/ui/jobs/{job_id}")
        driver.find_element(By.ID, "delete-button").click()
        wait_until(lambda: driver.find_elements(By.ID, "confirm-delete"), 30, "the confirmation page")
        driver.save_screenshot(str(shots / "10-delete.png"))
        driver.find_element(By.ID, "confirm-delete").click()
        driver.switch_to.alert.accept()  # the script asks once more
        wait_until(lambda: "sample.wav was deleted." in driver.page_source, 30, "the overview after the delete")
        driver.save_screenshot(str(shots / "11-deleted.png"))
    finally:
        driver.quit()
    assert job_id not in {j.id for j in daemon.jobs()} and not (daemon.outbox / "sample").exists()
    print("screenshots:", shots, sorted(p.name for p in shots.iterdir()))
    assert len(list(shots.glob("*.png"))) >= 16
