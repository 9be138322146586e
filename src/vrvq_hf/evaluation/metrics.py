"""Objective audio-quality metrics on one pair of mono signals.

Every metric is a small function ``metric(estimate, reference, sampling_rate) -> float`` on 1-D signals
(numpy arrays or torch tensors; shapes ``(T,)``, ``(1, T)`` or ``(1, 1, T)`` are accepted). Both signals
must have the same length and the same sampling rate; a mismatch raises ``ValueError``.

| name     | function            | better | needs                                                      |
| -------- | ------------------- | ------ | ---------------------------------------------------------- |
| mel      | :func:`mel_distance`  | lower  | ``vrvq_hf.spectral`` (multi-scale log-mel L1)              |
| stft     | :func:`stft_distance` | lower  | ``vrvq_hf.spectral`` (multi-scale STFT distance)           |
| sisdr    | :func:`si_sdr`        | higher | -- (dB)                                                    |
| l1       | :func:`l1_distance`   | lower  | -- (mean absolute waveform error)                          |
| visqol   | :func:`visqol`        | higher | ``visqol-python``; audio mode at 48 kHz, speech at 16 kHz  |
| pesq     | :func:`pesq_wb`       | higher | ``pesq``; wide-band, at 16 kHz                             |
| stoi     | :func:`stoi`          | higher | ``pystoi``                                                 |
| estoi    | :func:`estoi`         | higher | ``pystoi`` (extended STOI)                                 |

ViSQOL, PESQ and STOI resample both signals to the rate the metric is defined at (soxr, high quality);
optional packages are imported on first use with a message that names the package to install.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "METRICS",
    "MetricInfo",
    "as_mono_array",
    "compute_metrics",
    "estoi",
    "l1_distance",
    "mel_distance",
    "pesq_wb",
    "si_sdr",
    "stft_distance",
    "stoi",
    "visqol",
]

VISQOL_RATES = {"audio": 48000, "speech": 16000}
PESQ_RATE = 16000


def _require(module: str, package: str, metric: str) -> Any:
    """Imports an optional dependency or says which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"the {metric} metric needs the `{package}` package: pip install {package} "
            "(or pip install 'vrvq-hf[eval]')"
        ) from error


def as_mono_array(signal: np.ndarray | torch.Tensor, name: str = "signal") -> np.ndarray:
    """(T,), (1, T) or (1, 1, T) numpy array or torch tensor -> float64 numpy array (T,)."""
    if isinstance(signal, torch.Tensor):
        signal = signal.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(signal)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim > 1 and all(s == 1 for s in array.shape[:-1]):
        array = array.reshape(-1)
    if array.ndim != 1:
        raise ValueError(f"{name} must be mono, shape (T,), (1, T) or (1, 1, T); got {tuple(array.shape)}")
    if array.size < 2:
        raise ValueError(f"{name} needs at least 2 samples, got {array.size}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite samples")
    return array


def _pair(
    estimate: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    sampling_rate: int,
    reference_sampling_rate: int | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Checks a pair of mono signals: same length, same (positive, integer) rate -> (est, ref, rate)."""
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive int (Hz), got {sampling_rate!r}")
    if reference_sampling_rate is not None and int(reference_sampling_rate) != int(sampling_rate):
        raise ValueError(
            f"estimate is at {sampling_rate} Hz but reference at {reference_sampling_rate} Hz: "
            "resample one of them first (vrvq_hf.audio_io.resample)"
        )
    est = as_mono_array(estimate, "estimate")
    ref = as_mono_array(reference, "reference")
    if est.size != ref.size:
        raise ValueError(
            f"estimate and reference must have the same length, got {est.size} and {ref.size} samples; "
            "trim the decoded audio to the input length"
        )
    return est, ref, int(sampling_rate)


def _resample(signal: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return signal
    soxr = _require("soxr", "soxr", "resampling")
    return soxr.resample(signal, rate, target, quality="VHQ")


def _torch_pair(est: np.ndarray, ref: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(est).float().view(1, 1, -1),
        torch.from_numpy(ref).float().view(1, 1, -1),
    )


# ------------------------------------------------------------------------------------------ cheap metrics
def si_sdr(
    estimate: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    sampling_rate: int = 1,
    reference_sampling_rate: int | None = None,
    eps: float = 1e-12,
) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (higher is better; identical signals give +inf
    clipped to ``10 log10(1 / eps)``). Both signals are made zero-mean first; the reference must not be
    silent. ``sampling_rate`` only serves the rate check."""
    est, ref, _ = _pair(estimate, reference, sampling_rate, reference_sampling_rate)
    est = est - est.mean()
    ref = ref - ref.mean()
    ref_energy = float(np.dot(ref, ref))
    if ref_energy <= eps:
        raise ValueError("SI-SDR is undefined for a silent (constant) reference")
    target = (float(np.dot(est, ref)) / ref_energy) * ref
    noise = est - target
    ratio = (float(np.dot(target, target)) + eps) / (float(np.dot(noise, noise)) + eps)
    return 10.0 * math.log10(ratio)


def l1_distance(
    estimate: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    sampling_rate: int = 1,
    reference_sampling_rate: int | None = None,
) -> float:
    """Mean absolute waveform difference (lower is better; 0 for identical signals)."""
    est, ref, _ = _pair(estimate, reference, sampling_rate, reference_sampling_rate)
    return float(np.mean(np.abs(est - ref)))


def mel_distance(
    estimate: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    sampling_rate: int,
    reference_sampling_rate: int | None = None,
    **loss_kwargs: Any,
) -> float:
    """Multi-scale log-mel L1 distance of ``vrvq_hf.spectral.mel_distance`` (the training loss's scales;
    lower is better, 0 for identical signals). ``loss_kwargs`` go to ``MultiScaleMelLoss``."""
    from .. import spectral

    est, ref, rate = _pair(estimate, reference, sampling_rate, reference_sampling_rate)
    with torch.no_grad():
        return float(spectral.mel_distance(*_torch_pair(est, ref), sampling_rate=rate, **loss_kwargs)[0])


def stft_distance(
    estimate: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    sampling_rate: int,
    reference_sampling_rate: int | None = None,
    **loss_kwargs: Any,
) -> float:
    """Multi-scale STFT distance of ``vrvq_hf.spectral.stft_distance`` (DAC's settings; lower is better)."""
    from .. import spectral

    est, ref, rate = _pair(estimate, reference, sampling_rate, reference_sampling_rate)
    with torch.no_grad():
        return float(spectral.stft_distance(*_torch_pair(est, ref), sampling_rate=rate, **loss_kwargs)[0])


# ------------------------------------------------------------------------------------ perceptual metrics
_VISQOL_APIS: dict[tuple[str, bool | None], Any] = {}


def _visqol_api(mode: str, lattice: bool | None) -> Any:
    key = (mode, lattice)
    if key not in _VISQOL_APIS:
        module = _require("visqol", "visqol-python", "ViSQOL")
        api = module.VisqolApi()
        kwargs = {"use_lattice_model": lattice} if mode == "speech" else {}
        api.create(mode=mode, **kwargs)
        _VISQOL_APIS[key] = api
    return _VISQOL_APIS[key]


def visqol(
    estimate: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    sampling_rate: int,
    mode: str = "audio",
    reference_sampling_rate: int | None = None,
    speech_lattice: bool | None = False,
) -> float:
    """ViSQOL MOS-LQO (1..5, higher is better) with the ``visqol-python`` port of ViSQOL v3.3.3.

    mode: ``"audio"`` (music / general sound; signals resampled to 48 kHz; ceiling about 4.73) or
        ``"speech"`` (signals resampled to 16 kHz; ceiling 5.0).
    speech_lattice: speech mode's MOS mapper. ``False`` (default, reproducible everywhere): the polynomial
        mapping; ``True``: the deep-lattice mapper of the C++ release (needs ``ai-edge-litert``); ``None``:
        lattice when installed. The polynomial mapping can read 1-2 points higher than the lattice one, so
        compare speech-mode numbers only within one setting.
    About 8 s of CPU per 10 s clip in audio mode. Raises ``ValueError`` for input it cannot score: too short
    (under 0.5 s, or in speech mode too little voiced reference to form one patch) or a rate below 16 kHz.
    """
    if mode not in VISQOL_RATES:
        raise ValueError(f"ViSQOL mode must be 'audio' or 'speech', got {mode!r}")
    est, ref, rate = _pair(estimate, reference, sampling_rate, reference_sampling_rate)
    target = VISQOL_RATES[mode]
    if mode == "speech" and rate < target:
        raise ValueError(f"ViSQOL speech mode needs audio at >= {target} Hz, got {rate} Hz")
    if rate < 16000:
        raise ValueError(f"ViSQOL needs audio at >= 16000 Hz, got {rate} Hz")
    if est.size / rate < 0.5:
        raise ValueError(f"ViSQOL needs at least 0.5 s of audio, got {est.size / rate:.3f} s")
    api = _visqol_api(mode, speech_lattice if mode == "speech" else None)
    try:
        result = api.measure_from_arrays(_resample(ref, rate, target), _resample(est, rate, target), target)
    except IndexError as error:  # the port's patch selector, when the reference yields no patch to compare
        raise ValueError(
            f"ViSQOL ({mode} mode) found no reference patch to compare in {est.size / rate:.2f} s of audio "
            "(speech mode needs about 0.7 s or more of voiced reference)"
        ) from error
    return float(result.moslqo)


def pesq_wb(
    estimate: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    sampling_rate: int,
    reference_sampling_rate: int | None = None,
) -> float:
    """Wide-band PESQ (ITU-T P.862.2) MOS-LQO, about 1.04..4.64, higher is better (``pesq`` package).

    Signals are resampled to 16 kHz; audio below 16 kHz is refused (wide-band needs the 8 kHz band).
    Raises ``ValueError`` when PESQ finds no speech (e.g. silence or pure noise).
    """
    est, ref, rate = _pair(estimate, reference, sampling_rate, reference_sampling_rate)
    if rate < PESQ_RATE:
        raise ValueError(f"wide-band PESQ needs audio at >= {PESQ_RATE} Hz, got {rate} Hz")
    module = _require("pesq", "pesq", "PESQ")
    ref16 = _resample(ref, rate, PESQ_RATE)
    est16 = _resample(est, rate, PESQ_RATE)
    try:
        return float(module.pesq(PESQ_RATE, ref16, est16, "wb"))
    except Exception as error:  # the package raises its own error classes (NoUtterancesError, ...)
        raise ValueError(f"PESQ failed: {type(error).__name__}: {error}") from error


def _stoi(estimate, reference, sampling_rate, reference_sampling_rate, extended: bool) -> float:
    est, ref, rate = _pair(estimate, reference, sampling_rate, reference_sampling_rate)
    if rate < 10000:
        raise ValueError(f"STOI works on audio at >= 10000 Hz (it resamples to 10 kHz), got {rate} Hz")
    module = _require("pystoi", "pystoi", "STOI")
    if est.size / rate < 0.4:
        raise ValueError(f"STOI needs at least 0.4 s of audio, got {est.size / rate:.3f} s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pystoi warns on short signals; we check length above
        return float(module.stoi(ref, est, rate, extended=extended))


def stoi(
    estimate: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    sampling_rate: int,
    reference_sampling_rate: int | None = None,
) -> float:
    """Short-time objective intelligibility (0..1, higher is better; ``pystoi``)."""
    return _stoi(estimate, reference, sampling_rate, reference_sampling_rate, extended=False)


def estoi(
    estimate: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    sampling_rate: int,
    reference_sampling_rate: int | None = None,
) -> float:
    """Extended STOI (about -0.1..1, higher is better; ``pystoi``)."""
    return _stoi(estimate, reference, sampling_rate, reference_sampling_rate, extended=True)


# ---------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class MetricInfo:
    """A metric, its direction and when the sweep computes it."""

    name: str
    function: Callable[..., float]
    higher_is_better: bool
    label: str
    speech_only: bool = False
    expensive: bool = False


METRICS: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo("mel", mel_distance, False, "mel distance"),
        MetricInfo("stft", stft_distance, False, "STFT distance"),
        MetricInfo("sisdr", si_sdr, True, "SI-SDR (dB)"),
        MetricInfo("l1", l1_distance, False, "waveform L1"),
        MetricInfo("visqol", visqol, True, "ViSQOL (MOS-LQO)", expensive=True),
        MetricInfo("pesq", pesq_wb, True, "PESQ-WB", speech_only=True),
        MetricInfo("stoi", stoi, True, "STOI", speech_only=True),
        MetricInfo("estoi", estoi, True, "ESTOI", speech_only=True),
    )
}


def compute_metrics(
    estimate: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    sampling_rate: int,
    names: list[str] | tuple[str, ...],
    speech: bool = False,
) -> dict[str, float]:
    """Computes the named metrics (keys of :data:`METRICS`) on one pair; ``speech`` selects ViSQOL's speech
    mode. A metric that fails on this pair (e.g. PESQ finding no speech) gives NaN with a warning."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {sorted(METRICS)}")
    est, ref, rate = _pair(estimate, reference, sampling_rate)
    values: dict[str, float] = {}
    for name in names:
        kwargs = {"mode": "speech" if speech else "audio"} if name == "visqol" else {}
        try:
            values[name] = METRICS[name].function(est, ref, rate, **kwargs)
        except ImportError:
            raise
        except ValueError as error:
            warnings.warn(f"{name}: {error}; recorded as NaN", stacklevel=2)
            values[name] = float("nan")
    return values
