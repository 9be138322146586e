"""A classical anchor for rate-distortion figures: Opus (libopus, through the ffmpeg command line).

:func:`opus_round_trip` codes a mono clip at a target bitrate with libopus (its default VBR and "audio"
application), decodes it back to the clip's rate and length, and returns the bitrate it really used: the
sum of the Opus packet sizes over the clip's duration (the Ogg container's overhead left out, as the
`.vrvq` header is left out of the codec's coded rate).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["OPUS_KBPS_RANGE", "OpusUnavailableError", "check_opus_targets", "opus_available", "opus_round_trip"]

OPUS_KBPS_RANGE = (6.0, 256.0)  # what libopus accepts for one channel


class OpusUnavailableError(RuntimeError):
    """The ffmpeg / ffprobe command line with the libopus encoder is not installed."""


@functools.cache
def opus_available() -> bool:
    """True when `ffmpeg` (with the libopus encoder) and `ffprobe` are on the PATH."""
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        return False
    listing = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=False)
    return " libopus " in listing.stdout


def check_opus_targets(kbps: Sequence[float]) -> None:
    """Raises ValueError for a target outside what libopus codes, OpusUnavailableError without ffmpeg."""
    low, high = OPUS_KBPS_RANGE
    bad = [float(k) for k in kbps if not low <= float(k) <= high]
    if bad:
        raise ValueError(
            f"Opus target bitrates must be in {low:g}..{high:g} kbps (libopus codes one channel at {low:g} to "
            f"{high:g} kbps, got {', '.join(f'{k:g}' for k in bad)})"
        )
    if not opus_available():
        raise OpusUnavailableError(
            "the Opus anchor needs the ffmpeg and ffprobe command lines with libopus (e.g. apt-get install ffmpeg)"
        )


def _run(command: list[str]) -> bytes:
    done = subprocess.run(command, capture_output=True, check=False, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({' '.join(command[:4])} ...): {done.stderr.decode()[-300:]}")
    return done.stdout


def opus_round_trip(audio: np.ndarray, sampling_rate: int, kbps: float) -> tuple[np.ndarray, float]:
    """Mono float audio (T,) coded with libopus at a target of `kbps` and decoded -> (decoded (T,) float32
    at `sampling_rate`, the kbps of the Opus packets actually written)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"opus_round_trip takes mono audio of shape (samples,), got {audio.shape}")
    check_opus_targets([kbps])
    import soundfile

    with tempfile.TemporaryDirectory(prefix="vrvq_opus_") as folder:
        source, coded = Path(folder) / "in.wav", Path(folder) / "coded.opus"
        soundfile.write(source, audio, sampling_rate, subtype="FLOAT")
        _run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(source), "-c:a", "libopus",
              "-b:a", str(int(round(float(kbps) * 1000))), str(coded)])
        sizes = _run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "packet=size",
                      "-of", "default=noprint_wrappers=1:nokey=1", str(coded)])
        raw = _run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(coded), "-f", "f32le", "-ac", "1",
                    "-ar", str(sampling_rate), "-"])
    payload_bits = 8 * sum(int(line) for line in sizes.decode().split())
    decoded = np.frombuffer(raw, dtype="<f4")[: audio.size]
    decoded = np.pad(decoded, (0, audio.size - decoded.size))  # the decoder trims to the granule position
    return decoded, payload_bits / (audio.size / sampling_rate) / 1000.0
