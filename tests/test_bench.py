"""The benchmark runs end to end and writes the numbers it promises (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_runs_and_writes_results(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--minutes", "0.5", "--model", "tiny.en",
                           "--out", str(out), "--results", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["input"]["duration_s"] == pytest.approx(30.0, abs=0.5)
    for run in (result["bare"]["faster_whisper"], result["bare"]["pyannote"], result["oneshot"]):
        assert run["wall_s"] > 0 and run["peak_rss_mib"] > 100
        assert 0 < run["peak_anon_mib"] < run["peak_rss_mib"]
    assert set(result["oneshot"]["stages_s"]) >= {"decode", "transcribe", "diarize", "merge", "write"}
    assert result["daemon_one"]["states"] == ["succeeded"]
    assert result["daemon_two"]["states"] == ["succeeded", "succeeded"]
    assert len(result["daemon_two"]["peak_rss_mib_per_worker"]) == 2
    for peaks, total in zip(result["daemon_two"]["peak_rss_mib_by_stage"], result["daemon_two"]["peak_rss_mib_per_worker"]):
        assert {"transcribe", "diarize"} & set(peaks) and max(peaks.values()) <= total + 1
    assert result["daemon_one"]["worker_threads"] == [result["machine"]["cpus"]]  # alone: every core
    assert len(result["daemon_two"]["worker_threads"]) == 2 and min(result["daemon_two"]["worker_threads"]) >= 1
    assert Path(result["plot"]).stat().st_size > 10_000
    assert "ours / bare sum (wall)" in proc.stdout and "two at once / one at a time" in proc.stdout


def run_bench(module: str, out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`python -m bench.<module> ... --out out`, which must succeed; its output and its JSON."""
    proc = subprocess.run([sys.executable, "-m", f"bench.{module}", *args, "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_the_api_load_bench_writes_its_numbers(tmp_path):
    proc, result = run_bench("api_load", tmp_path / "api.json", "--jobs", "30", "--requests", "60",
                             "--concurrency", "3")
    assert set(result["routes"]) == {"GET /healthz", "GET /jobs/{id}", "GET /jobs?limit=50"}
    for route in result["routes"].values():
        assert route["requests"] == 60 and route["errors"] == 0 and route["rps"] > 0
    assert "| GET /jobs/{id} |" in proc.stdout


def test_the_search_scale_bench_times_every_page_and_explains_its_plans_on_both_stores(tmp_path):
    _, result = run_bench("search_scale", tmp_path / "search.json", "--jobs", "400", "--requests", "3")
    assert set(result["backends"]) == {"sqlite", "postgresql"}
    for found in result["backends"].values():
        assert len(found["pages"]) == 6 and all(p["p95_ms"] > 0 for p in found["pages"].values())
        assert found["plans"]["search, a rare word"]  # the EXPLAIN output is kept
    assert any("job_text" in line for line in result["backends"]["sqlite"]["plans"]["search, a rare word"])
    assert any("CTE hits" in line for line in result["backends"]["postgresql"]["plans"]["search, a rare word"])


def test_the_capacity_model_answers_and_more_volume_never_needs_fewer_nodes(tmp_path):
    proc, report = run_bench("capacity", tmp_path / "capacity.json", "--days", "4", "--volumes", "50,300,900")
    for pattern, items in report["results"].items():
        needed = [item["nodes_needed"] for item in items]
        assert all(needed) and needed == sorted(needed), (pattern, needed)
        for item in items:
            p95 = [r["p95_wait_s"] for r in item["rows"]]
            assert p95[-1] < 3600 and p95[-1] <= p95[0]
    assert Path(report["plot"]).stat().st_size > 10_000
    assert "| working day | 900 |" in proc.stdout
    day, work = (next(i["storage"] for i in report["results"][p] if i["volume_hours_per_day"] == 900)
                 for p in ("all day", "working day"))
    # originals cross three times: 900 h x 1 GB x 3 = 2,700 GB, plus decoded audio and outputs
    assert day["mb_per_day"]["originals"] == 2_700_000 and day["gb_per_day"] == work["gb_per_day"] > 2_700
    assert work["mb_per_s"] == pytest.approx(day["mb_per_s"] * 24 / 10, abs=0.2)  # the same bytes in 10 hours


def test_the_asr_speed_knobs_are_judged_on_english_conversation_too():
    """Each AMI mixture speaker cut out by its own reference turns, with that speaker's words, and
    the sample in time order: the clips that showed greedy decoding's cost (README, Accuracy)."""
    from bench.asr_variants import conversation_clips
    from bench.devset import case_texts, rttm_turns
    from bench.scoring import DATA

    sample, *speakers = conversation_clips()
    assert sample[1].startswith("Hello? Hello? Oh, hello. I didn't know you were there.")
    assert len(sample[0]) == 30 * 16000
    folder = DATA / "ami-mixture-4spk"
    texts, turns = case_texts(folder / "mixture.wav"), rttm_turns(folder / "mixture.rttm")
    assert [text for _, text, _ in speakers] == [texts[s] for s in sorted(texts)]
    for (audio, _, language), speaker in zip(speakers, sorted(texts)):
        own = [(s, e) for s, e, spk in turns if spk == speaker]
        assert language == "en"
        assert len(audio) == sum(int(e * 16000) - int(s * 16000) + 8000 for s, e in own)  # turns + pauses
