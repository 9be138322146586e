"""Reading audio files: soundfile for WAV/FLAC/OGG, FFmpeg for the rest; soxr for resampling."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np


class AudioLoadError(ValueError):
    """A file could not be read as audio."""


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resamples (samples,) or (channels, samples) float audio with soxr (high quality)."""
    if orig_sr == target_sr:
        return audio
    import soxr

    if audio.ndim == 1:
        return soxr.resample(audio, orig_sr, target_sr).astype(np.float32)
    return soxr.resample(audio.T, orig_sr, target_sr).T.astype(np.float32)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Reads a file as float32 (channels, samples) in [-1, 1] and its sampling rate."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioLoadError(f"no such audio file: {path}")
    import soundfile

    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
        return np.ascontiguousarray(data.T), int(rate)
    except Exception as soundfile_error:  # not a format libsndfile knows: try FFmpeg
        if shutil.which("ffmpeg") is None:
            raise AudioLoadError(f"cannot read {path}: {soundfile_error} (and FFmpeg is not installed)") from None
    return _read_with_ffmpeg(path)


def _read_with_ffmpeg(path: str) -> tuple[np.ndarray, int]:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels",
         "-of", "csv=p=0", path],
        capture_output=True, text=True, timeout=60,
    )
    fields = probe.stdout.strip().split(",")
    if probe.returncode != 0 or len(fields) < 2 or not all(f.strip().isdigit() for f in fields[:2]):
        raise AudioLoadError(f"cannot read {path}: not an audio file FFmpeg understands ({probe.stderr.strip()[:200]})")
    rate, channels = int(fields[0]), int(fields[1])
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", path, "-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-"],
        capture_output=True, timeout=600,
    )
    if decoded.returncode != 0:
        raise AudioLoadError(f"cannot decode {path}: {decoded.stderr.decode(errors='replace').strip()[:200]}")
    samples = np.frombuffer(decoded.stdout, dtype=np.float32)
    return np.ascontiguousarray(samples.reshape(-1, channels).T), rate


def load_audio(
    path: str | os.PathLike, sampling_rate: int | None = None, downmix: bool = False
) -> np.ndarray:
    """Reads an audio file as float32 in [-1, 1].

    sampling_rate: resample to this rate (soxr) when the file differs; None keeps the file's rate.
    downmix: average the channels to mono. Returns (samples,) for mono (or downmixed) audio, otherwise
    (channels, samples). Raises AudioLoadError (a ValueError) for missing or unreadable files.
    """
    audio, rate = read_audio(path)
    if audio.shape[1] == 0:
        raise AudioLoadError(f"{os.fspath(path)} holds no audio samples")
    if downmix or audio.shape[0] == 1:
        audio = audio.mean(axis=0)
    if sampling_rate is not None:
        audio = resample(audio, rate, sampling_rate)
    return audio
