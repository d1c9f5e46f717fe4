"""A job's remaining time from the rates its stages are measured at, not from the whole job's average.

Stages run at very different speeds (decoding a file takes seconds, transcription
minutes), so elapsed × remaining / done over the whole job swung between 0 and
9 s on a short file. Here the current stage's remaining part is timed at its own
rate once it has run long enough to have one. The stages still to come are timed
from what they took on this machine before: each successful job leaves its
stages' seconds per second of audio in state/stage-rates.json (StageRates, a
moving average per model), scaled by how fast this job has run against those
same rates so far (a busy machine is slower for every stage). Before any job has
finished, the stages to come go at the rate of everything measured so far. Each
new estimate is blended with the last one counted down by the time since, so
one noisy reading moves it only part way.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from diarized.files import write_json

log = logging.getLogger("diarized.eta")

MIN_STAGE_SECONDS = 1.0  # a stage's own rate is trusted after this long ...
MIN_STAGE_FRACTION = 0.03  # ... and this much of it done
BLEND = 0.35  # weight of a new estimate against the last one counted down
LEARN = 0.3  # weight of the newest job in a stage's moving average
SPEED_LIMITS = (0.25, 4.0)  # this job against the history: clamped, a first second says little


@dataclass
class StageClock:
    """Feed it (now, stage, stage_fraction, job_fraction) as reports come; it answers the ETA in seconds
    (None until there is a rate to go by). `expect` gives each stage's seconds from history."""

    stages: tuple[str, ...] = ()
    expected: dict[str, float] = field(default_factory=dict)  # stage -> seconds, for this job's audio
    stage: str = ""
    started: float = 0.0  # when the current stage's first report came
    stage0: float = 0.0  # its stage fraction then (a resumed stage starts part-way)
    job0: float = 0.0  # the job fraction then
    finished_seconds: float = 0.0  # time spent in the stages finished since this clock began
    finished_fraction: float = 0.0  # the job fraction they covered
    finished_expected: float = 0.0  # what history expected of those same stages
    last: tuple[float, float] | None = None  # (when, eta) of the last estimate

    def expect(self, expected: dict[str, float]) -> None:
        self.expected = dict(expected)

    def update(self, now: float, stage: str, stage_fraction: float, job_fraction: float) -> float | None:
        if stage != self.stage:
            if self.stage:
                self.finished_seconds += now - self.started
                self.finished_fraction += max(0.0, job_fraction - self.job0)
                self.finished_expected += self.expected.get(self.stage, 0.0) * (1.0 - self.stage0)
            self.stage, self.started, self.stage0, self.job0 = stage, now, stage_fraction, job_fraction
        if job_fraction >= 1.0:
            self.last = (now, 0.0)
            return 0.0
        estimate = self._estimate(now, stage_fraction, job_fraction)
        previous = self._counted_down(now)
        if estimate is None:
            return None if previous is None else round(previous, 1)
        if previous is not None:
            estimate = BLEND * estimate + (1 - BLEND) * previous
        self.last = (now, estimate)
        return round(estimate, 1)

    def _estimate(self, now: float, stage_fraction: float, job_fraction: float) -> float | None:
        in_stage, stage_done = now - self.started, stage_fraction - self.stage0
        own = in_stage / stage_done if in_stage >= MIN_STAGE_SECONDS and stage_done >= MIN_STAGE_FRACTION else None
        if self.stage in self.expected and self.stage in self.stages:
            return self._from_history(in_stage, stage_fraction, own)
        if stage_done <= 0:
            return None
        weight = (job_fraction - self.job0) / stage_done  # the stage's share of the whole job
        after = max(0.0, 1.0 - job_fraction - (1.0 - stage_fraction) * weight)  # the stages still to come
        measured = self.finished_fraction + (job_fraction - self.job0 if own is not None else 0.0)
        if measured <= 0.02:
            return None
        # the stages to come at the rate of all measured so far (the current one included once it has a
        # rate): a light first stage (decoding) alone would make the heavy ones look quick
        per_job = (self.finished_seconds + (in_stage if own is not None else 0.0)) / measured
        here = (1.0 - stage_fraction) * (own if own is not None else weight * per_job)
        return here + after * per_job

    def _from_history(self, in_stage: float, stage_fraction: float, own: float | None) -> float:
        """The stages to come as long as they took before, times this job's speed against history."""
        expected_here = self.expected[self.stage]
        spent = self.finished_seconds + in_stage
        spent_expected = self.finished_expected + expected_here * max(0.0, stage_fraction - self.stage0)
        speed = spent / spent_expected if spent_expected >= 1.0 and spent >= MIN_STAGE_SECONDS else 1.0
        speed = min(max(speed, SPEED_LIMITS[0]), SPEED_LIMITS[1])
        later = sum(self.expected.get(s, 0.0) for s in self.stages[self.stages.index(self.stage) + 1:])
        here = (1.0 - stage_fraction) * own if own is not None else (1.0 - stage_fraction) * expected_here * speed
        return here + later * speed

    def _counted_down(self, now: float) -> float | None:
        if self.last is None:
            return None
        when, eta = self.last
        return max(0.0, eta - (now - when))


@dataclass
class StageRates:
    """Seconds per second of audio of each stage, per model, as this machine has run them (a moving
    average over successful jobs), in one small JSON file beside the job store."""

    path: Path

    def load(self) -> dict[str, dict[str, float]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def expected(self, model: str, audio_seconds: float) -> dict[str, float]:
        rates = self.load().get(model, {})
        return {stage: float(rate) * audio_seconds for stage, rate in rates.items()
                if isinstance(rate, (int, float))}

    def learn(self, model: str, audio_seconds: float, stage_seconds: dict[str, float]) -> None:
        """Fold one successful job in; a failure to write is logged, never the job's problem."""
        if audio_seconds <= 0:
            return
        data = self.load()
        rates = data.setdefault(model, {})
        for stage, seconds in stage_seconds.items():
            rate = seconds / audio_seconds
            old = rates.get(stage)
            rates[stage] = round(rate if not isinstance(old, (int, float)) else LEARN * rate + (1 - LEARN) * old, 5)
        try:
            write_json(self.path, data)
        except OSError as exc:
            log.warning("stage rates not saved to %s: %s", self.path, exc)
