"""Who spoke when: pyannote.audio's SpeakerDiarization, fully offline.

Segmentation-3.0 finds up to three local speakers per 10-s window; CAM++
embeddings (campplus.py) and agglomerative clustering link them across the
file. The audio comes in as an in-memory waveform (decoded once by media.py),
so pyannote never opens the file itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from pyannote.audio.core.plda import PLDA
from pyannote.audio.pipelines import SpeakerDiarization
from pyannote.core import Annotation

# pyannote's telemetry is switched off in diarized/__init__.py, which always runs first.
from diarized.models import DiarizationWeights
from diarized.pipeline.campplus import BLOCK_FRAMES, FRAME_SAMPLES, CamPlusPlus, network_frames
from diarized.pipeline.precision import lower_segmentation, network_dtype
from diarized.pipeline.media import SAMPLE_RATE
from diarized.pipeline.speakers import SpeakerRule, decide, drop_short

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
    segmentation_batch_size: int = 16  # 32 held ~270 MiB more at the same speed (SincNet's first layer)
    clustering: str = "agglomerative"  # or "spectral" (pipeline/clustering.py)
    embedding_pass: str = "shared"  # one CAM++ pass over the audio; "window": one per 10-s window
    short_speaker_seconds: float = 0.0  # the speaker decision (speakers.py); 0: off
    speaker_margin: float = 0.0
    one_voice_distance: float = 0.0
    precision: str = "float32"  # of the networks: float32, bfloat16 or auto (precision.network_dtype)


class SharedPassDiarization(SpeakerDiarization):
    """pyannote's SpeakerDiarization with one CAM++ pass over the audio instead of one per window.

    get_embeddings gives the same (chunks, local speakers, dimension) array pyannote's own
    does, pooled from frames computed once (campplus.py, SharedFrames). The frames are made
    block by block as the windows move forward and dropped once no window needs them, so
    memory does not grow with the length of the file.
    """

    def __init__(self, campplus: CamPlusPlus, **kwargs):
        super().__init__(embedding=campplus, **kwargs)
        self.campplus = campplus

    def get_embeddings(self, file, binary_segmentations, exclude_overlap: bool = False, hook=None) -> np.ndarray:
        window = binary_segmentations.sliding_window
        chunks, _, speakers = binary_segmentations.data.shape
        masks = self._masks(binary_segmentations.data, exclude_overlap)
        waveform = file["waveform"][0]
        span = network_frames(int(round(window.duration * SAMPLE_RATE)))
        total = network_frames(int(round(window[chunks - 1].end * SAMPLE_RATE)))
        embeddings = np.zeros((chunks, speakers, self.campplus.dimension), dtype=np.float32)
        frames, first_held = None, 0
        if hook is not None:
            hook("embeddings", None, total=chunks, completed=0)
        with torch.inference_mode():
            for c in range(chunks):
                first = int(round(window[c].start * SAMPLE_RATE / FRAME_SAMPLES))
                frames, first_held = self._hold(frames, first_held, first, first + span, waveform, total)
                x = frames[:, first - first_held: first - first_held + span]
                embeddings[c] = self.campplus.embed(x.unsqueeze(0).expand(speakers, -1, -1),
                                                    torch.from_numpy(masks[c].T)).numpy()
                if hook is not None and (c % 64 == 63 or c == chunks - 1):
                    hook("embeddings", None, total=chunks, completed=c + 1)
        return embeddings

    def _hold(self, frames, first_held: int, first: int, stop: int, waveform, total: int):
        """Frames [first, stop) in hand: the older ones dropped, new blocks computed as needed."""
        if frames is None:
            frames, first_held = self.campplus.shared_frames(waveform, first, min(BLOCK_FRAMES, total - first),
                                                             total), first
        if first > first_held:
            frames, first_held = frames[:, first - first_held:], first
        while first_held + frames.shape[1] < stop:
            after = first_held + frames.shape[1]
            block = self.campplus.shared_frames(waveform, after, min(BLOCK_FRAMES, total - after), total)
            frames = torch.cat([frames, block], dim=1)
        return frames, first_held

    def reconstruct(self, segmentations, hard_clusters: np.ndarray, count):
        """pyannote's reconstruct and to_diarization without their whole-file arrays: the same diarization.

        pyannote builds (chunks, frames, clusters) scores, `nan * zeros` in float64, then sums
        them over the chunks into (file frames, clusters), then sorts every frame's clusters:
        for two hours and 35 clusters about 950 MiB at the end of a job, its peak. Here each
        chunk's cluster scores are added into the file's frames as they are made (the values
        are 0 or 1, so float32 sums them exactly) and the frames are ranked in blocks.
        """
        from pyannote.core import SlidingWindowFeature

        activations = self._cluster_activations(segmentations, hard_clusters, count.sliding_window)
        speakers = activations.data.shape[1]
        most = int(np.max(count.data))
        if speakers < most:
            activations.data = np.pad(activations.data, ((0, 0), (0, most - speakers)))
        extent = activations.extent & count.extent
        activations = activations.crop(extent, return_data=False)
        count = count.crop(extent, return_data=False)
        return SlidingWindowFeature(_top_speakers(activations.data, count.data[:, 0]), activations.sliding_window)

    @staticmethod
    def _cluster_activations(segmentations, hard_clusters: np.ndarray, frame):
        """Inference.aggregate(clustered scores, skip_average=True, missing=0) of pyannote's
        to_diarization, summed chunk by chunk: frame f of cluster k counts the chunks where k
        is active at f (a cluster's local speakers joined by max)."""
        from pyannote.core import SlidingWindow, SlidingWindowFeature

        chunks = segmentations.sliding_window
        num_chunks, num_frames, _ = segmentations.data.shape
        frames = SlidingWindow(start=chunks.start, duration=frame.duration, step=frame.step)
        total = frames.closest_frame(chunks.start + chunks.duration + (num_chunks - 1) * chunks.step
                                     + 0.5 * frames.duration) + 1
        summed = np.zeros((total, np.max(hard_clusters) + 1), dtype=np.float32)
        for c, (cluster, (chunk, segmentation)) in enumerate(zip(hard_clusters, segmentations)):
            first = frames.closest_frame(chunk.start + 0.5 * frames.duration)
            for k in np.unique(cluster):
                if k != -2:  # -2: an inactive local speaker
                    active = np.nan_to_num(np.max(segmentation[:, cluster == k], axis=1), nan=0.0)
                    summed[first: first + num_frames, k] += active[: total - first]
        return SlidingWindowFeature(summed, frames)

    def _masks(self, data: np.ndarray, exclude_overlap: bool) -> np.ndarray:
        """Each (chunk, speaker)'s mask, as pyannote's get_embeddings chooses it: without overlapped
        frames when exclude_overlap and enough of them remain."""
        masks = np.nan_to_num(data, nan=0.0).astype(np.float32)
        if not exclude_overlap:
            return masks
        clean = masks * (masks.sum(axis=2, keepdims=True) < 2)
        num_frames = masks.shape[1]
        duration = self._segmentation.model.specifications.duration
        minimum = math.ceil(num_frames * self._embedding.min_num_samples / (duration * SAMPLE_RATE))
        enough = clean.sum(axis=1, keepdims=True) > minimum
        return np.where(enough, clean, masks)


RANK_BLOCK = 65536  # frames ranked at once (18 minutes): the ranks of a whole file were 120 MiB at two hours


def _top_speakers(activations: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """1 where a cluster is among the `counts[t]` most active at frame t, as pyannote's to_diarization
    marks them (the same argsort per frame, so ties fall the same way), block by block."""
    binary = np.zeros_like(activations)
    frames, speakers = min(len(activations), len(counts)), activations.shape[1]
    for start in range(0, frames, RANK_BLOCK):
        stop = min(frames, start + RANK_BLOCK)
        order = np.argsort(-activations[start:stop], axis=-1)
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(speakers)[None, :], axis=-1)  # broadcast over frames
        binary[start:stop] = ranks < counts[start:stop, None]
    return binary


class NoPLDA(PLDA):
    """SpeakerDiarization's constructor always loads a PLDA, which needs hub files.

    Agglomerative clustering never uses it, so this stands in and loads nothing.
    """

    def __init__(self) -> None:  # noqa: D107 - deliberately skips PLDA.__init__
        self.lda_dimension = 0


def build_pipeline(weights: DiarizationWeights, options: DiarizeOptions) -> SpeakerDiarization:
    from pyannote.audio import Model

    torch.set_num_threads(options.cpu_threads)
    dtype = network_dtype(options.precision)
    segmentation = lower_segmentation(Model.from_pretrained(str(weights.segmentation)), dtype)
    campplus = CamPlusPlus(weights.embedding, precision=dtype)
    shared = {"campplus": campplus} if options.embedding_pass == "shared" else {"embedding": campplus}
    pipeline = (SharedPassDiarization if options.embedding_pass == "shared" else SpeakerDiarization)(
        **shared,
        segmentation=segmentation,
        segmentation_step=options.segmentation_step,
        embedding_exclude_overlap=options.exclude_overlap,
        plda=NoPLDA(),
        clustering="AgglomerativeClustering",
        embedding_batch_size=options.embedding_batch_size,
        segmentation_batch_size=options.segmentation_batch_size,
    )
    agglomerative = {"method": "centroid", "threshold": options.threshold, "min_cluster_size": options.min_cluster_size}
    pipeline.instantiate({"segmentation": {"min_duration_off": 0.0}, "clustering": agglomerative})
    from diarized.pipeline.clustering import LinearMemoryAgglomerative, SpectralClustering

    if options.clustering == "spectral":
        pipeline.clustering = SpectralClustering()
    else:  # the same clustering, its dendrogram in linear memory (clustering.py)
        pipeline.clustering = LinearMemoryAgglomerative(metric="cosine")
        pipeline.clustering.instantiate(agglomerative)
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


def speaker_rule(options: DiarizeOptions) -> SpeakerRule:
    return SpeakerRule(short_seconds=options.short_speaker_seconds, margin=options.speaker_margin,
                       one_voice=options.one_voice_distance, min_seconds=options.min_speaker_duration)


def decide_speakers(output, options: DiarizeOptions) -> Annotation:
    """Clusters to speakers (speakers.py); a num_speakers hint is taken as it is, short ones aside."""
    rule = speaker_rule(options)
    if options.num_speakers:
        return drop_short(output.speaker_diarization, rule.min_seconds, options.num_speakers)
    return decide(output.speaker_diarization, output.speaker_embeddings, rule, options.min_speakers)


def diarize(pipeline: SpeakerDiarization, audio: np.ndarray, options: DiarizeOptions,
            progress: Progress | None = None) -> list[dict]:
    """Speaker turns [{speaker, start, end}] sorted by start, labels as pyannote gave."""
    waveform = torch.from_numpy(audio).unsqueeze(0)  # shares memory with the memmap
    file = {"waveform": waveform, "sample_rate": SAMPLE_RATE, "uri": "audio"}
    output = pipeline(file, hook=_hook(progress), **speaker_hints(options))
    annotation = decide_speakers(output, options)
    turns = [
        {"speaker": str(label), "start": round(seg.start, 3), "end": round(seg.end, 3)}
        for seg, _, label in annotation.itertracks(yield_label=True)
    ]
    return sorted(turns, key=lambda t: (t["start"], t["end"]))
