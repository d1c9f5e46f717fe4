"""The ETA from stage rates, on a job timeline shaped like a real one (bench: decode, transcribe, diarize)."""

from __future__ import annotations

from diarized.eta import StageClock, StageRates

# (stage, its share of the job fraction, its seconds): as `python -m bench --minutes 30` measured
TIMELINE = [("decode", 0.03, 3.0), ("transcribe", 0.55, 95.0), ("diarize", 0.39, 45.0), ("write", 0.03, 1.0)]


STAGES = tuple(stage for stage, *_ in TIMELINE)
AUDIO_SECONDS = 1800.0


def reports(every: float = 0.5, resume_at: float = 0.0, slower: float = 1.0):
    """(now, stage, stage fraction, job fraction, true remaining seconds) as a worker would report them."""
    timeline = [(stage, weight, seconds * slower) for stage, weight, seconds in TIMELINE]
    total = sum(s for *_, s in timeline)
    now, base, spent = 0.0, 0.0, 0.0
    for stage, weight, seconds in timeline:
        steps = max(1, int(seconds / every))
        for step in range(steps + 1):
            fraction = step / steps
            job = base + weight * fraction
            if job >= resume_at:
                yield now, stage, fraction, job, total - spent - seconds * fraction
            if step < steps:
                now += seconds / steps
        base, spent = base + weight, spent + seconds


def whole_job_average(started: float, now: float, first: float, job: float) -> float | None:
    """The old estimate: elapsed × remaining / done over the whole job."""
    done = job - first
    return (now - started) * (1 - job) / done if done > 0.02 else None


def run(clock: StageClock, slower: float = 1.0) -> tuple[list[float], list[float], float | None]:
    """Relative errors of the clock and of the old estimate after the first 10 s; asserts no jumps."""
    errors, old_errors, previous, eta = [], [], None, None
    for now, stage, fraction, job, truth in reports(slower=slower):
        eta = clock.update(now, stage, fraction, job)
        old = whole_job_average(0.0, now, 0.0, job)
        if eta is not None and now > 10:
            errors.append(abs(eta - truth) / max(truth, 10))
            old_errors.append(abs(old - truth) / max(truth, 10))
        if eta is not None and previous is not None and job < 1.0:
            step = eta - (previous[1] - (now - previous[0]))  # against the last one counted down
            assert abs(step) <= 0.2 * truth + 2, (stage, fraction, eta, previous)
        previous = (now, eta) if eta is not None else previous
    return errors, old_errors, eta


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_the_eta_follows_the_truth_and_never_jumps(tmp_path):
    """With no history the stages to come go at the rate measured so far: better than the old
    whole-job average, but the transcribe/diarize speeds differ from their weights."""
    errors, old_errors, last = run(StageClock(STAGES))
    assert last == 0.0
    print(f"no history: mean relative error {mean(errors):.3f} (whole-job average {mean(old_errors):.3f}), "
          f"worst {max(errors):.3f}")
    assert mean(errors) < mean(old_errors)

    rates = StageRates(tmp_path / "stage-rates.json")  # one finished job teaches this machine's rates
    rates.learn("base", AUDIO_SECONDS, {stage: seconds for stage, _, seconds in TIMELINE})
    for slower in (1.0, 1.6):  # the same machine, then busier: every stage 1.6 times as long
        clock = StageClock(STAGES)
        clock.expect(rates.expected("base", AUDIO_SECONDS))
        errors, old_errors, last = run(clock, slower)
        print(f"with history, {slower}x slower: mean relative error {mean(errors):.3f} "
              f"(whole-job average {mean(old_errors):.3f}), worst {max(errors):.3f}")
        assert last == 0.0 and mean(errors) < 0.08 and max(errors) < 0.35
        assert mean(errors) < mean(old_errors) / 3


def test_stage_rates_are_a_moving_average_per_model_and_survive_a_bad_file(tmp_path):
    rates = StageRates(tmp_path / "stage-rates.json")
    assert rates.expected("base", 600) == {}
    rates.learn("base", 600, {"transcribe": 60.0})
    rates.learn("base", 600, {"transcribe": 120.0})
    rates.learn("tiny.en", 60, {"transcribe": 3.0})
    assert rates.expected("base", 600)["transcribe"] == 0.3 * 120 + 0.7 * 60
    assert rates.expected("tiny.en", 100) == {"transcribe": 5.0}
    rates.path.write_text("{torn")
    assert rates.expected("base", 600) == {}
    rates.learn("base", 600, {"transcribe": 60.0})  # starts again rather than failing a job
    assert rates.expected("base", 600) == {"transcribe": 60.0}


def test_a_resumed_job_waits_for_a_rate_then_goes_by_history(tmp_path):
    """Resumed at 30 % (transcription checkpoints): the first report says nothing about speed."""
    rates = StageRates(tmp_path / "stage-rates.json")
    rates.learn("base", AUDIO_SECONDS, {stage: seconds * 0.8 for stage, _, seconds in TIMELINE})  # quieter then
    clock = StageClock(STAGES)
    clock.expect(rates.expected("base", AUDIO_SECONDS))
    seen = [(clock.update(now, stage, fraction, job), truth) for now, stage, fraction, job, truth
            in reports(resume_at=0.3)]
    assert seen[0][0] is not None and abs(seen[0][0] - seen[0][1]) < 0.25 * seen[0][1]  # history, unscaled
    later = [(eta, truth) for eta, truth in seen[10:] if truth > 10]
    assert all(abs(eta - truth) < 0.1 * truth for eta, truth in later), later[:5]
    fresh = StageClock(STAGES)  # no history: nothing until this run has a rate
    assert fresh.update(50.0, "transcribe", 0.5, 0.3) is None
