"""Options given with one file: checked at submit time, stored with the job, run by its worker."""

from __future__ import annotations

import json

import pytest

from diarized import Client, JobOptions, OptionError
from diarized.options import apply, offered_models, parse
from diarized.store import Job
from tests.harness import wait_until


def test_a_job_may_name_only_models_this_server_has(make_settings, tmp_path):
    models = tmp_path / "models"
    (models / "pt-small").mkdir(parents=True)
    for name in ("model.bin", "config.json"):
        (models / "pt-small" / name).write_text("x")
    (models / "not-a-model").mkdir()
    settings = make_settings(models_dir=models)
    assert offered_models(settings) == ["base", "tiny.en", "pt-small"]
    assert parse({"model": "pt-small", "language": "pt"}, settings).model == "pt-small"
    for name in ("not-a-model", "/etc", "../models/pt-small", "large-v3"):
        with pytest.raises(OptionError, match="is not available on this server; it has base, tiny.en, pt-small"):
            parse({"model": name}, settings)


@pytest.mark.parametrize("values, words", [
    ({"language": "klingon"}, "language must be auto or a Whisper language code"),
    ({"language": "pt", "model": "tiny.en"}, "model tiny.en understands English only"),
    ({"formats": "json,pdf"}, "formats must be one or more of json, srt, vtt, txt, rttm, csv, tsv, docx; not pdf"),
    ({"formats": ["json", 3]}, "formats must be a list of names"),
    ({"initial_prompt": "x" * 1001}, "initial_prompt must be at most 1000 characters"),
    ({"hotwords": 7}, "hotwords must be text"),
])
def test_bad_options_are_refused_with_what_is_allowed(make_settings, values, words):
    with pytest.raises(OptionError, match=words):
        parse(values, make_settings())


def test_options_become_the_workers_settings(make_settings):
    settings = make_settings(model="base")
    options = parse({"language": " pt ", "formats": "json, docx,json", "hotwords": "", "initial_prompt": "Ana"},
                    settings)
    assert options == JobOptions(language="pt", formats=("json", "docx"), initial_prompt="Ana")
    row = {f: None for f in Job.__dataclass_fields__} | {"state": "queued", "options": options.to_json(),
                                                         "min_speakers": 2}
    ran = apply(settings, Job(**row))
    assert (ran.language, ran.formats, ran.initial_prompt, ran.model, ran.min_speakers) == \
        ("pt", ("json", "docx"), "Ana", "base", 2)


def test_the_api_and_the_cli_take_options_and_refuse_bad_ones_before_keeping_anything(make_daemon, make_api,
                                                                                         tmp_path):
    from click.testing import CliRunner

    from diarized.api.auth import new_token
    from diarized.cli.ctl import cli

    token, entry = new_token("ana", "submit")
    daemon = make_daemon(fake_workers=True)
    api = make_api([entry])
    with api.client(token) as client:
        refused = client.post("/jobs", files={"file": ("a.wav", b"one")}, data={"model": "large-v9"})
        assert refused.status_code == 400 and "it has base, tiny.en" in refused.json()["error"]["message"]
        assert list((api.root / "state/uploads").iterdir()) == [] and daemon.jobs() == []
        made = client.post("/jobs", files={"file": ("a.wav", b"one")},
                           data={"language": "pt", "model": "base", "formats": "json,csv", "hotwords": "Ana"})
        assert made.status_code == 202, made.text
        assert made.json()["options"] == {"language": "pt", "model": "base", "formats": ["json", "csv"],
                                          "hotwords": "Ana"}
        assert client.get("/system").json()["models"] == ["base", "tiny.en"]
        wait_until(lambda: daemon.store.get(made.json()["id"]).model == "base", 30, "the worker to run with base")
    (tmp_path / "b.wav").write_bytes(b"two")
    run = CliRunner().invoke(cli, ["--state-dir", str(daemon.root), "submit", str(tmp_path / "b.wav"),
                                   "--language", "en", "--formats", "json,docx"], env={"DIARIZED_CONFIG": ""})
    assert run.exit_code == 0, run.output
    job = next(j for j in daemon.jobs() if j.source_name == "b.wav")
    assert job.options == {"language": "en", "formats": ["json", "docx"]}
    shown = CliRunner().invoke(cli, ["--state-dir", str(daemon.root), "show", job.id], env={"DIARIZED_CONFIG": ""})
    assert "formats" in shown.stdout and "json,docx" in shown.stdout
    bad = CliRunner().invoke(cli, ["--state-dir", str(daemon.root), "submit", str(tmp_path / "b.wav"),
                                   "--language", "pt", "--model", "tiny.en"], env={"DIARIZED_CONFIG": ""})
    assert bad.exit_code == 2 and "understands English only" in bad.output


@pytest.mark.slow
def test_a_job_runs_with_its_own_formats_language_and_prompt(make_daemon, data):
    """The real worker: tiny.en by default, this job asks for csv and docx only, language en."""
    daemon = make_daemon()
    with Client(state_dir=daemon.root) as client:
        job = client.submit(data / "en-jfk/jfk.flac", options=JobOptions(
            language="en", formats=("json", "csv", "docx"), initial_prompt="President Kennedy, inaugural address."))
        done = client.wait(job.id, timeout=300)
        assert sorted(n for n in client.outputs(done.id) if "/" not in n) == [
            "diarization_results.json", "final_transcription.json", "job.json", "transcription.csv",
            "transcription.docx", "whisper_results.json"]
        doc = json.loads(client.outputs(done.id)["final_transcription.json"].read_text())
        assert doc["language"] == "en" and "ask not" in " ".join(s["text"] for s in doc["segments"]).lower()
