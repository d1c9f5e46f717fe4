"""Who spoke when: pyannote.audio's SpeakerDiarization, fully offline.

Segmentation-3.0 finds up to three local speakers per 10-s window; CAM++
embeddings (campplus.py) and agglomerative clustering link them across the
file. The audio comes in as an in-memory waveform (decoded once by media.py),
so pyannote never opens the file itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from pyannote.audio.core.plda import PLDA
from pyannote.audio.pipelines import SpeakerDiarization
from pyannote.core import Annotation

# pyannote's telemetry is switched off in diarized/__init__.py, which always runs first.
from diarized.models import DiarizationWeights
from diarized.pipeline.campplus import CamPlusPlus
from diarized.pipeline.media import SAMPLE_RATE

Progress = Callable[[str, float], None]  # (step, fraction of that step)


@dataclass(frozen=True)
class DiarizeOptions:
    """Knobs of the diarization stage; the defaults live in config.Settings (runner.diarize_options)."""

    num_speakers: int
    min_speakers: int
    max_speakers: int
    min_speaker_duration: float
    segmentation_step: float  # share of the 10-s window
    threshold: float  # centroid linkage, cosine distance
    min_cluster_size: int
    embedding_batch_size: int
    exclude_overlap: bool
    cpu_threads: int
    segmentation_batch_size: int = 32
    clustering: str = "agglomerative"  # or "spectral" (pipeline/clustering.py)


class NoPLDA(PLDA):
    """SpeakerDiarization's constructor always loads a PLDA, which needs hub files.

    Agglomerative clustering never uses it, so this stands in and loads nothing.
    """

    def __init__(self) -> None:  # noqa: D107 - deliberately skips PLDA.__init__
        self.lda_dimension = 0


def build_pipeline(weights: DiarizationWeights, options: DiarizeOptions) -> SpeakerDiarization:
    from pyannote.audio import Model

    torch.set_num_threads(options.cpu_threads)
    segmentation = Model.from_pretrained(str(weights.segmentation))
    pipeline = SpeakerDiarization(
        segmentation=segmentation,
        segmentation_step=options.segmentation_step,
        embedding=CamPlusPlus(weights.embedding),
        embedding_exclude_overlap=options.exclude_overlap,
        plda=NoPLDA(),
        clustering="AgglomerativeClustering",
        embedding_batch_size=options.embedding_batch_size,
        segmentation_batch_size=options.segmentation_batch_size,
    )
    pipeline.instantiate({
        "segmentation": {"min_duration_off": 0.0},
        "clustering": {"method": "centroid", "threshold": options.threshold,
                       "min_cluster_size": options.min_cluster_size},
    })
    if options.clustering == "spectral":
        from diarized.pipeline.clustering import SpectralClustering

        pipeline.clustering = SpectralClustering()
    return pipeline


def _hook(progress: Progress | None):
    def hook(step, artefact, file=None, total=None, completed=None):
        if progress is not None and total:
            progress(step, completed / total)
    return hook


def speaker_hints(options: DiarizeOptions) -> dict:
    if options.num_speakers:
        return {"num_speakers": options.num_speakers}
    hints = {"max_speakers": options.max_speakers or None}
    if options.min_speakers:
        hints["min_speakers"] = options.min_speakers
    return hints


def drop_rare_speakers(annotation: Annotation, min_duration: float, floor: int = 0) -> Annotation:
    """Remove speakers with less than `min_duration` s of speech in the whole file.

    Their words are then given to the nearest remaining speaker by merge.py; a
    "speaker" heard for half a second is almost always a clustering artefact. The
    `floor` (num_speakers or min_speakers, when the operator gave one) is never
    undercut: a hint means what it says, so the longest speakers up to it stay.
    """
    if min_duration <= 0:
        return annotation
    by_length = sorted(annotation.labels(), key=annotation.label_duration, reverse=True)
    keep = [label for label in by_length if annotation.label_duration(label) >= min_duration]
    keep += [label for label in by_length if label not in keep][: max(0, floor - len(keep))]
    if not keep:  # never drop everyone: keep the single longest speaker
        keep = by_length[:1]
    return annotation.subset(keep)


def diarize(pipeline: SpeakerDiarization, audio: np.ndarray, options: DiarizeOptions,
            progress: Progress | None = None) -> list[dict]:
    """Speaker turns [{speaker, start, end}] sorted by start, labels as pyannote gave."""
    waveform = torch.from_numpy(audio).unsqueeze(0)  # shares memory with the memmap
    file = {"waveform": waveform, "sample_rate": SAMPLE_RATE, "uri": "audio"}
    output = pipeline(file, hook=_hook(progress), **speaker_hints(options))
    floor = options.num_speakers or options.min_speakers
    annotation = drop_rare_speakers(output.speaker_diarization, options.min_speaker_duration, floor)
    turns = [
        {"speaker": str(label), "start": round(seg.start, 3), "end": round(seg.end, 3)}
        for seg, _, label in annotation.itertracks(yield_label=True)
    ]
    return sorted(turns, key=lambda t: (t["start"], t["end"]))
