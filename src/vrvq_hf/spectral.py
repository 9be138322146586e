"""Spectral representations, losses and distances shared by training and evaluation.

Everything here is plain ``torch`` (no torchaudio): ``torch.stft`` and a Slaney-style mel
filterbank computed in closed form.

* :func:`mel_filterbank` -- triangular mel filters, Slaney mel scale and area normalisation
  (the default of ``librosa.filters.mel``).
* :class:`MultiScaleMelLoss` -- L1 between log10 mel spectrograms at several resolutions
  (the codec's reconstruction loss, SPEC section 5).
* :class:`MultiScaleSTFTLoss` -- L1 between log and linear STFT magnitudes at several resolutions.
* :class:`MultiScaleComplexSTFTLoss` -- distance between magnitude-compressed complex spectra at
  several resolutions (sees the phase).
* :func:`mel_distance`, :func:`stft_distance` -- per-item evaluation metrics built on the classes.

Signals are ``(B, C, T)`` (the codec uses ``C = 1``) or ``(B, T)``; losses are averaged over
channels, so ``reduction="none"`` always returns ``(B,)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "DAC_EVAL_MEL_KWARGS",
    "MultiScaleComplexSTFTLoss",
    "MultiScaleMelLoss",
    "MultiScaleSTFTLoss",
    "hz_to_mel",
    "mel_distance",
    "mel_filterbank",
    "mel_to_hz",
    "stft_complex",
    "stft_distance",
    "stft_magnitude",
]

# Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above
# (27 mels per factor 6.4 in frequency).
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = math.log(6.4) / 27.0

# Settings of the mel distance in DAC's evaluation script (its loss-class defaults: two
# scales, power 2, plus a linear-magnitude term). Pass as ``mel_distance(..., **DAC_EVAL_MEL_KWARGS)``
# to report numbers on that scale; the default of :func:`mel_distance` is the training loss.
DAC_EVAL_MEL_KWARGS: dict[str, Any] = {
    "n_mels": (150, 80),
    "window_lengths": (2048, 512),
    "power": 2.0,
    "mag_weight": 1.0,
}


def hz_to_mel(frequencies: torch.Tensor) -> torch.Tensor:
    """Hz -> Slaney mel (elementwise, any shape)."""
    frequencies = torch.as_tensor(frequencies, dtype=torch.float64)
    linear = frequencies / _F_SP
    log_part = _MIN_LOG_MEL + torch.log(frequencies.clamp(min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return torch.where(frequencies >= _MIN_LOG_HZ, log_part, linear)


def mel_to_hz(mels: torch.Tensor) -> torch.Tensor:
    """Slaney mel -> Hz (elementwise, any shape); inverse of :func:`hz_to_mel`."""
    mels = torch.as_tensor(mels, dtype=torch.float64)
    linear = mels * _F_SP
    log_part = _MIN_LOG_HZ * torch.exp(_LOG_STEP * (mels.clamp(min=_MIN_LOG_MEL) - _MIN_LOG_MEL))
    return torch.where(mels >= _MIN_LOG_MEL, log_part, linear)


def mel_filterbank(
    sampling_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> torch.Tensor:
    """Triangular mel filters on the Slaney scale with Slaney (unit-area) normalisation.

    Matches ``librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min,
    fmax=f_max)`` (its defaults ``htk=False, norm="slaney"``).

    Returns:
        float32 tensor ``(n_mels, n_fft // 2 + 1)``; ``mel = filters @ magnitude``.
    """
    if sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
    if n_fft < 2:
        raise ValueError(f"n_fft must be >= 2, got {n_fft}")
    if n_mels < 1:
        raise ValueError(f"n_mels must be >= 1, got {n_mels}")
    nyquist = sampling_rate / 2.0
    f_max = nyquist if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= nyquist:
        raise ValueError(
            f"need 0 <= f_min < f_max <= sampling_rate / 2 = {nyquist}, got f_min={f_min}, f_max={f_max}"
        )
    fft_freqs = torch.linspace(0.0, nyquist, n_fft // 2 + 1, dtype=torch.float64)
    mel_points = torch.linspace(
        float(hz_to_mel(torch.tensor(f_min))),
        float(hz_to_mel(torch.tensor(f_max))),
        n_mels + 2,
        dtype=torch.float64,
    )
    hz_points = mel_to_hz(mel_points)  # (n_mels + 2,) edges and centres of the triangles
    widths = hz_points.diff()  # (n_mels + 1,)
    offsets = hz_points[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_bins)
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    filters = torch.minimum(rising, falling).clamp(min=0.0)
    filters = filters * (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]
    return filters.float()


def _check_pair(estimate: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Validate a pair of signals and fold channels into the batch: -> (B*C, T), (B*C, T), B."""
    for name, x in (("estimate", estimate), ("reference", reference)):
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor of shape (B, C, T) or (B, T)")
        if x.dim() not in (2, 3):
            raise ValueError(f"{name} must have shape (B, C, T) or (B, T), got {tuple(x.shape)}")
    if estimate.shape != reference.shape:
        raise ValueError(
            f"estimate and reference must have the same shape, got {tuple(estimate.shape)} "
            f"and {tuple(reference.shape)}"
        )
    if estimate.shape[-1] < 2:
        raise ValueError(f"signals need at least 2 samples, got T={estimate.shape[-1]}")
    batch = estimate.shape[0]
    # Spectra are computed in float32 even under autocast / half-precision inputs.
    return (
        estimate.reshape(-1, estimate.shape[-1]).float(),
        reference.reshape(-1, reference.shape[-1]).float(),
        batch,
    )


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "none"):
        raise ValueError(f'reduction must be "mean" or "none", got {reduction!r}')


def stft_complex(
    signal: torch.Tensor, window: torch.Tensor, hop_length: int, n_fft: int | None = None
) -> torch.Tensor:
    """Centred complex STFT of ``signal`` ``(N, T)`` -> ``(N, n_fft // 2 + 1, frames)``.

    Reflect padding of ``n_fft // 2`` on both sides (zero padding when the signal is too short
    to reflect), ``frames = T // hop_length + 1``.
    """
    n_fft = window.shape[-1] if n_fft is None else n_fft
    pad_mode = "reflect" if signal.shape[-1] > n_fft // 2 else "constant"
    return torch.stft(
        signal,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=window.shape[-1],
        window=window,
        center=True,
        pad_mode=pad_mode,
        return_complex=True,
    )


def stft_magnitude(
    signal: torch.Tensor, window: torch.Tensor, hop_length: int, n_fft: int | None = None
) -> torch.Tensor:
    """``|stft_complex(...)|``: centred STFT magnitude ``(N, n_fft // 2 + 1, frames)``."""
    return stft_complex(signal, window, hop_length, n_fft).abs()


def _log_magnitude(magnitude: torch.Tensor, clamp_eps: float, power: float) -> torch.Tensor:
    """``log10(clamp(magnitude, clamp_eps) ** power)``: the compressed log the magnitude losses compare."""
    return magnitude.clamp(min=clamp_eps).pow(power).log10()


def _log_and_linear_l1(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    clamp_eps: float,
    power: float,
    log_weight: float,
    mag_weight: float,
) -> Iterator[torch.Tensor]:
    """The weighted L1 terms ``(N,)`` between two magnitude spectra ``(N, bins, frames)``: of their
    compressed logs (:func:`_log_magnitude`) and of the magnitudes themselves; a zero weight's term is
    left out."""
    if log_weight:
        difference = _log_magnitude(estimate, clamp_eps, power) - _log_magnitude(reference, clamp_eps, power)
        yield log_weight * difference.abs().mean(dim=(1, 2))
    if mag_weight:
        yield mag_weight * (estimate - reference).abs().mean(dim=(1, 2))


def _as_tuple(value: Any, length: int, name: str) -> tuple:
    """Broadcast a scalar to ``length`` entries, or check a sequence has that many."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != length:
            raise ValueError(f"{name} needs {length} entries (one per scale), got {len(value)}")
        return tuple(value)
    return (value,) * length


class _SpectralLoss(nn.Module):
    """A loss summed over STFT scales. Subclasses give `_scale_terms` (the weighted per-item terms of one
    scale); this class checks the pair, sums the terms over scales, reduces, and holds the per-scale
    constant tensors as buffers, handing out copies per device."""

    def __init__(self) -> None:
        super().__init__()
        self._device_cache: dict[tuple[str, torch.device], torch.Tensor] = {}

    def _register_windows(self, window_lengths: Sequence[int]) -> None:
        """Checks the window lengths and registers a Hann window per scale (hop = window / 4)."""
        if len(window_lengths) == 0 or any(int(w) < 4 for w in window_lengths):
            raise ValueError(f"need at least one window length, each >= 4, got {tuple(window_lengths)}")
        self.window_lengths = tuple(int(w) for w in window_lengths)
        self.hop_lengths = tuple(w // 4 for w in self.window_lengths)
        for k, w in enumerate(self.window_lengths):
            self.register_buffer(f"window_{k}", torch.hann_window(w), persistent=False)

    def _constant(self, name: str, device: torch.device) -> torch.Tensor:
        """Buffer ``name`` on ``device`` (moved once, then cached)."""
        buffer = getattr(self, name)
        if buffer.device == device:
            return buffer
        key = (name, device)
        cached = self._device_cache.get(key)
        if cached is None or cached.device != device:
            cached = buffer.to(device)
            self._device_cache[key] = cached
        return cached

    def _apply(self, fn, recurse: bool = True):  # noqa: D401 - torch hook
        # Buffers moved by .to()/.cuda(): drop stale device copies.
        self._device_cache = {}
        return super()._apply(fn, recurse)

    @staticmethod
    def _reduce(per_item: torch.Tensor, batch: int, reduction: str) -> torch.Tensor:
        """(B*C,) -> (B,) channel mean, then optional batch mean."""
        per_item = per_item.reshape(batch, -1).mean(dim=1)
        return per_item.mean() if reduction == "mean" else per_item

    def _scale_terms(self, estimate: torch.Tensor, reference: torch.Tensor, scale: int) -> Iterator[torch.Tensor]:
        """The weighted terms ``(N,)`` of one scale for signals ``(N, T)``."""
        raise NotImplementedError

    def forward(
        self, estimate: torch.Tensor, reference: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        """Loss between ``estimate`` and ``reference`` ``(B, C, T)`` (or ``(B, T)``).

        Returns a scalar (``reduction="mean"``) or per-item values ``(B,)`` (``"none"``).
        """
        _check_reduction(reduction)
        est, ref, batch = _check_pair(estimate, reference)
        total = est.new_zeros(est.shape[0])
        for scale in range(len(self.window_lengths)):
            for term in self._scale_terms(est, ref, scale):
                total = total + term
        return self._reduce(total, batch, reduction)


class MultiScaleMelLoss(_SpectralLoss):
    """Multi-resolution log-mel L1 loss (DAC's reconstruction loss, SPEC section 5).

    For each scale ``k``: Hann window of ``window_lengths[k]`` samples, hop ``window / 4``,
    magnitude STFT, ``n_mels[k]`` Slaney mel filters, then
    ``log_weight * L1(log10(clamp(mel, eps) ** power)) + mag_weight * L1(mel)``;
    the per-scale means are summed over scales.

    Args:
        sampling_rate: sample rate of the signals (sets the mel filters).
        n_mels: mel bands per scale.
        window_lengths: STFT window (= FFT size) per scale.
        clamp_eps: floor on the mel magnitude before the log.
        power: exponent on the clamped mel magnitude inside the log.
        log_weight: weight of the log-mel term.
        mag_weight: weight of the linear mel-magnitude term (0 in the VRVQ / DAC recipe).
        f_min, f_max: mel range in Hz, a scalar or one per scale (``None`` = Nyquist).
    """

    def __init__(
        self,
        sampling_rate: int = 44100,
        n_mels: Sequence[int] = (5, 10, 20, 40, 80, 160, 320),
        window_lengths: Sequence[int] = (32, 64, 128, 256, 512, 1024, 2048),
        clamp_eps: float = 1e-5,
        power: float = 1.0,
        log_weight: float = 1.0,
        mag_weight: float = 0.0,
        f_min: float | Sequence[float] = 0.0,
        f_max: float | None | Sequence[float | None] = None,
    ) -> None:
        super().__init__()
        if len(n_mels) != len(window_lengths) or len(n_mels) == 0:
            raise ValueError(
                f"n_mels and window_lengths need the same non-zero length, got {len(n_mels)} "
                f"and {len(window_lengths)}"
            )
        self._register_windows(window_lengths)
        self.sampling_rate = int(sampling_rate)
        self.n_mels = tuple(int(n) for n in n_mels)
        self.clamp_eps = float(clamp_eps)
        self.power = float(power)
        self.log_weight = float(log_weight)
        self.mag_weight = float(mag_weight)
        f_mins = _as_tuple(f_min, len(self.n_mels), "f_min")
        f_maxs = _as_tuple(f_max, len(self.n_mels), "f_max")
        for k, (n, w, lo, hi) in enumerate(zip(self.n_mels, self.window_lengths, f_mins, f_maxs)):
            self.register_buffer(
                f"filters_{k}", mel_filterbank(self.sampling_rate, w, n, lo, hi), persistent=False
            )

    def log_mel(self, signal: torch.Tensor, scale: int) -> torch.Tensor:
        """``log10(clamp(mel, eps) ** power)`` of ``signal`` ``(N, T)`` at scale ``scale``
        -> ``(N, n_mels[scale], frames)``."""
        return _log_magnitude(self.mel(signal, scale), self.clamp_eps, self.power)

    def mel(self, signal: torch.Tensor, scale: int) -> torch.Tensor:
        """Mel magnitude of ``signal`` ``(N, T)`` -> ``(N, n_mels[scale], frames)``."""
        window = self._constant(f"window_{scale}", signal.device)
        filters = self._constant(f"filters_{scale}", signal.device)
        magnitude = stft_magnitude(signal.float(), window, self.hop_lengths[scale])
        return torch.matmul(filters, magnitude)

    def _scale_terms(self, estimate: torch.Tensor, reference: torch.Tensor, scale: int) -> Iterator[torch.Tensor]:
        yield from _log_and_linear_l1(
            self.mel(estimate, scale), self.mel(reference, scale),
            self.clamp_eps, self.power, self.log_weight, self.mag_weight,
        )


class MultiScaleSTFTLoss(_SpectralLoss):
    """Multi-resolution STFT loss (DAC style).

    For each window length: Hann window, hop ``window / 4``, magnitude ``|X|``, then
    ``log_weight * L1(log10(clamp(|X|, eps) ** power)) + mag_weight * L1(|X|)``, summed over
    scales. Defaults are DAC's: windows (2048, 512), power 2, both weights 1.
    """

    def __init__(
        self,
        window_lengths: Sequence[int] = (2048, 512),
        clamp_eps: float = 1e-5,
        power: float = 2.0,
        log_weight: float = 1.0,
        mag_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self._register_windows(window_lengths)
        self.clamp_eps = float(clamp_eps)
        self.power = float(power)
        self.log_weight = float(log_weight)
        self.mag_weight = float(mag_weight)

    def magnitude(self, signal: torch.Tensor, scale: int) -> torch.Tensor:
        """``|STFT|`` of ``signal`` ``(N, T)`` -> ``(N, window // 2 + 1, frames)``."""
        window = self._constant(f"window_{scale}", signal.device)
        return stft_magnitude(signal.float(), window, self.hop_lengths[scale])

    def _scale_terms(self, estimate: torch.Tensor, reference: torch.Tensor, scale: int) -> Iterator[torch.Tensor]:
        yield from _log_and_linear_l1(
            self.magnitude(estimate, scale), self.magnitude(reference, scale),
            self.clamp_eps, self.power, self.log_weight, self.mag_weight,
        )


class MultiScaleComplexSTFTLoss(_SpectralLoss):
    """Multi-resolution loss on magnitude-compressed complex spectra: it sees the phase, which the mel
    and magnitude losses do not.

    For each window length: Hann window, hop ``window / 4``, complex STFT ``X``, compressed to
    ``c(X) = |X| ** power * X / |X|`` (``|X|`` floored at ``clamp_eps`` so the gradient stays finite),
    then the mean of ``|c(X_est) - c(X_ref)|`` over bins and frames, summed over scales. The compression
    (``power`` 0.3, as in speech enhancement) keeps loud bins from drowning quiet ones.
    """

    def __init__(
        self, window_lengths: Sequence[int] = (256, 512, 1024), power: float = 0.3, clamp_eps: float = 1e-5
    ) -> None:
        super().__init__()
        if not 0.0 < power <= 1.0:
            raise ValueError(f"power must be in (0, 1], got {power}")
        self._register_windows(window_lengths)
        self.power = float(power)
        self.clamp_eps = float(clamp_eps)

    def compressed(self, signal: torch.Tensor, scale: int) -> torch.Tensor:
        """``c(STFT)`` of ``signal`` ``(N, T)`` -> complex ``(N, window // 2 + 1, frames)``."""
        window = self._constant(f"window_{scale}", signal.device)
        spectrum = stft_complex(signal.float(), window, self.hop_lengths[scale])
        return spectrum * spectrum.abs().clamp(min=self.clamp_eps).pow(self.power - 1.0)

    def _scale_terms(self, estimate: torch.Tensor, reference: torch.Tensor, scale: int) -> Iterator[torch.Tensor]:
        yield (self.compressed(estimate, scale) - self.compressed(reference, scale)).abs().mean(dim=(1, 2))


_METRIC_CACHE: dict[tuple, nn.Module] = {}
_METRIC_CACHE_SIZE = 16


def _cached(cls: type[nn.Module], **kwargs: Any) -> nn.Module:
    """One loss module per distinct settings (filterbanks are built once)."""
    key = (cls.__name__, tuple(sorted((k, _hashable(v)) for k, v in kwargs.items())))
    module = _METRIC_CACHE.get(key)
    if module is None:
        if len(_METRIC_CACHE) >= _METRIC_CACHE_SIZE:
            _METRIC_CACHE.pop(next(iter(_METRIC_CACHE)))
        module = cls(**kwargs)
        _METRIC_CACHE[key] = module
    return module


def _hashable(value: Any) -> Any:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(_hashable(v) for v in value)
    return value


def mel_distance(
    estimate: torch.Tensor, reference: torch.Tensor, sampling_rate: int, **loss_kwargs: Any
) -> torch.Tensor:
    """Per-item multi-scale mel distance ``(B,)`` between ``(B, C, T)`` (or ``(B, T)``) signals.

    Defaults are the training loss (:class:`MultiScaleMelLoss` defaults). Extra keyword
    arguments go to :class:`MultiScaleMelLoss`, e.g. ``**DAC_EVAL_MEL_KWARGS``.
    """
    loss = _cached(MultiScaleMelLoss, sampling_rate=int(sampling_rate), **loss_kwargs)
    return loss(estimate, reference, reduction="none")


def stft_distance(
    estimate: torch.Tensor, reference: torch.Tensor, sampling_rate: int | None = None, **loss_kwargs: Any
) -> torch.Tensor:
    """Per-item multi-scale STFT distance ``(B,)`` (:class:`MultiScaleSTFTLoss`, DAC defaults).

    ``sampling_rate`` is accepted for symmetry with :func:`mel_distance`; the STFT distance
    does not depend on it (window lengths are in samples).
    """
    del sampling_rate
    loss = _cached(MultiScaleSTFTLoss, **loss_kwargs)
    return loss(estimate, reference, reduction="none")
