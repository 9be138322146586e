"""GAN discriminators for codec training (SPEC section 5).

* :class:`PeriodDiscriminator` / :class:`MultiPeriodDiscriminator`: the waveform is folded into
  ``(T / p, p)`` for periods 2, 3, 5, 7, 11 and scanned by 2-D convolutions along time.
* :class:`BandSTFTDiscriminator` / :class:`MultiBandSTFTDiscriminator`: complex STFT (real and
  imaginary parts as two channels) at FFT sizes 2048, 1024, 512, split along frequency into bands
  with edges (0, .1, .25, .5, .75, 1); each band has its own conv stack, the band outputs are
  concatenated along frequency and scored by a shared final conv.
* :class:`Discriminator` combines both. ``discriminator(x)`` returns one list per
  sub-discriminator (5 + 3 of them by default); each list holds that sub-discriminator's feature
  maps, the last element being its logit map (no sigmoid; least-squares GAN).

All convolutions are weight-normalised (``torch.nn.utils.parametrizations.weight_norm``) and
followed by LeakyReLU(0.1), except each final logit conv.

Size: ``width`` multiplies every hidden conv width. ``width=1.0`` is the DAC-size discriminator
(about 41 M + 0.3 M parameters for the default periods and FFT sizes); for CPU runs use e.g.
``Discriminator(width=0.125)`` or ``Discriminator.small()`` (see
``scripts/benchmark_discriminators.py`` for measured cost).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = [
    "DEFAULT_BANDS",
    "BandSTFTDiscriminator",
    "Discriminator",
    "MultiBandSTFTDiscriminator",
    "MultiPeriodDiscriminator",
    "PeriodDiscriminator",
]

DEFAULT_PERIODS: tuple[int, ...] = (2, 3, 5, 7, 11)
DEFAULT_FFT_SIZES: tuple[int, ...] = (2048, 1024, 512)
DEFAULT_BANDS: tuple[tuple[float, float], ...] = (
    (0.0, 0.1),
    (0.1, 0.25),
    (0.25, 0.5),
    (0.5, 0.75),
    (0.75, 1.0),
)
# Hidden widths of the DAC-size sub-discriminators (scaled by ``width``).
PERIOD_CHANNELS: tuple[int, ...] = (32, 128, 512, 1024, 1024)
BAND_CHANNELS: int = 32
LEAKY_SLOPE = 0.1

FeatureMaps = list[torch.Tensor]


def _scaled(channels: int, width: float) -> int:
    """Conv width ``channels * width``, rounded, at least 1."""
    return max(1, round(channels * width))


def _check_audio(x: torch.Tensor) -> None:
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError("discriminator input must be a floating-point torch.Tensor of shape (B, 1, T)")
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError(f"discriminator input must have shape (B, 1, T), got {tuple(x.shape)}")


def _pad_right(x: torch.Tensor, amount: int) -> torch.Tensor:
    """Reflect-pad the last axis on the right by ``amount`` (zeros where too short to reflect)."""
    if amount <= 0:
        return x
    mode = "reflect" if x.shape[-1] > amount else "constant"
    return F.pad(x, (0, amount), mode=mode)


def _pad_both(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Reflect-pad the last axis of ``(B, C, T)`` (zeros where too short to reflect)."""
    if left == 0 and right == 0:
        return x
    mode = "reflect" if x.shape[-1] > max(left, right) else "constant"
    return F.pad(x, (left, right), mode=mode)


class _ConvAct(nn.Module):
    """Weight-normalised convolution followed by LeakyReLU (or no activation)."""

    def __init__(self, conv: nn.Module, activation: bool = True) -> None:
        super().__init__()
        self.conv = weight_norm(conv)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return F.leaky_relu(x, LEAKY_SLOPE) if self.activation else x


class PeriodDiscriminator(nn.Module):
    """Scores the waveform folded by one period.

    ``(B, 1, T)`` -> right-pad T to a multiple of ``period`` -> ``(B, 1, T / period, period)``
    -> five convs with kernel (5, 1) and time stride (3, 3, 3, 3, 1) -> logit conv (3, 1).
    Returns 6 feature maps ``(B, C_i, frames_i, period)``; the last is the logit map (C = 1).
    """

    def __init__(self, period: int, channels: Sequence[int] = PERIOD_CHANNELS) -> None:
        super().__init__()
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        if len(channels) == 0:
            raise ValueError("channels needs at least one width")
        self.period = int(period)
        widths = [1, *channels]
        strides = [3] * (len(channels) - 1) + [1]
        self.convs = nn.ModuleList(
            _ConvAct(nn.Conv2d(c_in, c_out, (5, 1), (s, 1), padding=(2, 0)))
            for c_in, c_out, s in zip(widths[:-1], widths[1:], strides)
        )
        self.conv_post = _ConvAct(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)), activation=False)

    def forward(self, x: torch.Tensor) -> FeatureMaps:
        """``x`` (B, 1, T) -> feature maps, last = logits ``(B, 1, frames, period)``."""
        _check_audio(x)
        x = _pad_right(x, -x.shape[-1] % self.period)
        x = x.reshape(x.shape[0], 1, x.shape[-1] // self.period, self.period)
        features: FeatureMaps = []
        for conv in self.convs:
            x = conv(x)
            features.append(x)
        features.append(self.conv_post(x))
        return features


class BandSTFTDiscriminator(nn.Module):
    """Scores the complex STFT at one resolution, band by band.

    STFT: Hann window ``fft_size``, hop ``fft_size * hop_factor``; the signal is reflect-padded so
    that there are ``ceil(T / hop)`` frames, centred like a ``center=True`` STFT.
    Input to the convs: ``(B, 2, frames, bins)`` (real, imaginary), split along ``bins`` at
    ``int(edge * (fft_size // 2 + 1))`` for each band edge. Per band: convs with kernels
    (3, 9) x 4 (frequency strides 1, 2, 2, 2) and (3, 3); then all bands are concatenated along
    frequency and a (3, 3) conv gives the logit map.
    Returns ``5 * n_bands + 1`` feature maps; the last is the logits ``(B, 1, frames, bins')``.
    """

    def __init__(
        self,
        fft_size: int,
        channels: int = BAND_CHANNELS,
        bands: Sequence[tuple[float, float]] = DEFAULT_BANDS,
        hop_factor: float = 0.25,
    ) -> None:
        super().__init__()
        if fft_size < 16:
            raise ValueError(f"fft_size must be >= 16, got {fft_size}")
        if not 0.0 < hop_factor <= 1.0:
            raise ValueError(f"hop_factor must be in (0, 1], got {hop_factor}")
        self.fft_size = int(fft_size)
        self.hop_length = max(1, int(fft_size * hop_factor))
        n_bins = self.fft_size // 2 + 1
        self.band_bins = _band_bins(bands, n_bins)
        self.register_buffer("window", torch.hann_window(self.fft_size), persistent=False)

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                [
                    _ConvAct(nn.Conv2d(2, channels, (3, 9), (1, 1), padding=(1, 4))),
                    _ConvAct(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))),
                    _ConvAct(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))),
                    _ConvAct(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))),
                    _ConvAct(nn.Conv2d(channels, channels, (3, 3), (1, 1), padding=(1, 1))),
                ]
            )

        self.band_convs = nn.ModuleList(stack() for _ in self.band_bins)
        self.conv_post = _ConvAct(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)), activation=False)

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 1, T) -> ``(B, 2, ceil(T / hop), fft_size // 2 + 1)`` (real, imag)."""
        hop = self.hop_length
        n_frames = -(-x.shape[-1] // hop)
        side = (self.fft_size - hop) // 2
        right_extra = n_frames * hop - x.shape[-1]
        padded = _pad_both(x.float(), side, side + right_extra).squeeze(1)
        # Frames needed by center=False: (len - fft) // hop + 1 = n_frames; pad any shortfall.
        needed = (n_frames - 1) * hop + self.fft_size
        if padded.shape[-1] < needed:
            padded = F.pad(padded, (0, needed - padded.shape[-1]))
        window = self.window if self.window.device == x.device else self.window.to(x.device)
        spec = torch.stft(
            padded,
            n_fft=self.fft_size,
            hop_length=hop,
            window=window,
            center=False,
            return_complex=True,
        )[..., :n_frames]  # (B, bins, frames)
        return torch.view_as_real(spec).permute(0, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> FeatureMaps:
        """``x`` (B, 1, T) -> feature maps, last = logits."""
        _check_audio(x)
        spec = self.spectrogram(x).to(x.dtype)
        features: FeatureMaps = []
        outputs = []
        for (lo, hi), stack in zip(self.band_bins, self.band_convs):
            band = spec[..., lo:hi]
            for conv in stack:
                band = conv(band)
                features.append(band)
            outputs.append(band)
        features.append(self.conv_post(torch.cat(outputs, dim=-1)))
        return features


def _band_bins(bands: Sequence[tuple[float, float]], n_bins: int) -> list[tuple[int, int]]:
    """Fractional band edges -> bin index ranges; rejects empty or out-of-range bands."""
    if len(bands) == 0:
        raise ValueError("need at least one band")
    result = []
    for lo, hi in bands:
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"band edges must satisfy 0 <= lo < hi <= 1, got ({lo}, {hi})")
        start, stop = int(lo * n_bins), int(hi * n_bins)
        if stop <= start:
            raise ValueError(f"band ({lo}, {hi}) holds no frequency bin out of {n_bins}; use a larger FFT")
        result.append((start, stop))
    return result


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period; returns a list of their feature-map lists."""

    def __init__(self, periods: Sequence[int] = DEFAULT_PERIODS, width: float = 1.0) -> None:
        super().__init__()
        channels = [_scaled(c, width) for c in PERIOD_CHANNELS]
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, x: torch.Tensor) -> list[FeatureMaps]:
        return [d(x) for d in self.discriminators]


class MultiBandSTFTDiscriminator(nn.Module):
    """One :class:`BandSTFTDiscriminator` per FFT size; returns a list of their feature-map lists."""

    def __init__(
        self,
        fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
        width: float = 1.0,
        bands: Sequence[tuple[float, float]] = DEFAULT_BANDS,
    ) -> None:
        super().__init__()
        channels = _scaled(BAND_CHANNELS, width)
        self.discriminators = nn.ModuleList(BandSTFTDiscriminator(n, channels, bands) for n in fft_sizes)

    def forward(self, x: torch.Tensor) -> list[FeatureMaps]:
        return [d(x) for d in self.discriminators]


class Discriminator(nn.Module):
    """Multi-period + multi-band multi-scale STFT discriminator (DAC / VRVQ recipe).

    Args:
        periods: periods of the waveform discriminators (empty tuple disables them).
        fft_sizes: FFT sizes of the STFT discriminators (empty tuple disables them).
        bands: fractional frequency band edges of the STFT discriminators.
        width: multiplier on all hidden conv widths; 1.0 = DAC size, 0.125 = the small
            CPU variant (:meth:`small`).
        normalize_input: remove the DC offset and peak-normalise each item to 0.8 before
            scoring (a later DAC variant does this; off by default).

    ``forward(x (B, 1, T))`` -> ``list[list[Tensor]]``: first the period discriminators in
    ``periods`` order, then the STFT discriminators in ``fft_sizes`` order; in each list the
    last tensor is the logit map. Any ``T >= 2`` is accepted (padding is internal).
    """

    def __init__(
        self,
        periods: Sequence[int] = DEFAULT_PERIODS,
        fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
        bands: Sequence[tuple[float, float]] = DEFAULT_BANDS,
        width: float = 1.0,
        normalize_input: bool = False,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        if len(periods) + len(fft_sizes) == 0:
            raise ValueError("need at least one period or one FFT size")
        self.periods = tuple(int(p) for p in periods)
        self.fft_sizes = tuple(int(n) for n in fft_sizes)
        self.width = float(width)
        self.normalize_input = bool(normalize_input)
        self.mpd = MultiPeriodDiscriminator(self.periods, width)
        self.mrd = MultiBandSTFTDiscriminator(self.fft_sizes, width, bands)

    @classmethod
    def small(cls, **kwargs) -> Discriminator:
        """CPU-friendly variant: all widths divided by 8 (about 1/60 of the parameters)."""
        kwargs.setdefault("width", 0.125)
        return cls(**kwargs)

    @property
    def num_discriminators(self) -> int:
        return len(self.periods) + len(self.fft_sizes)

    def forward(self, x: torch.Tensor) -> list[FeatureMaps]:
        """``x`` (B, 1, T) -> one feature-map list per sub-discriminator (last = logits)."""
        _check_audio(x)
        if x.shape[-1] < 2:
            raise ValueError(f"discriminator input needs at least 2 samples, got T={x.shape[-1]}")
        if self.normalize_input:
            x = x - x.mean(dim=-1, keepdim=True)
            x = 0.8 * x / (x.abs().amax(dim=-1, keepdim=True) + 1e-9)
        return self.mpd(x) + self.mrd(x)
