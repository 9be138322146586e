"""Where a codec's quality gap is: in the spectral magnitudes or in the phase.

Two hybrids are built from a reconstruction and its reference on one STFT grid (Hann window):

- `reference_phase`: the reconstruction's magnitudes under the reference's phase;
- `reference_magnitude`: the reference's magnitudes under the reconstruction's phase.

A metric that rises a lot under `reference_phase` says the codec's phase holds that much of the gap; one
that rises under `reference_magnitude` says the magnitudes do. Neither hybrid is a codec output: each uses
half of the reference, so they bound what fixing one half alone could gain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..spectral import stft_complex
from .metrics import compute_metrics
from .sweep import code_and_decode  # the sweep's encode/decode path, so figures match its tables

__all__ = ["HYBRIDS", "PhaseSwapResult", "phase_magnitude_swap", "phase_swap_metrics"]

HYBRIDS = ("codec", "reference_phase", "reference_magnitude")


def phase_magnitude_swap(
    reconstruction: torch.Tensor, reference: torch.Tensor, n_fft: int = 512, hop_length: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """reconstruction, reference: (samples,) of equal length -> (reference_phase, reference_magnitude),
    each (samples,): the two hybrids described in the module docstring."""
    if reconstruction.dim() != 1 or reconstruction.shape != reference.shape:
        raise ValueError(
            "reconstruction and reference must be mono waveforms (samples,) of equal length, got shapes "
            f"{tuple(reconstruction.shape)} and {tuple(reference.shape)}"
        )
    if reference.numel() < n_fft:
        raise ValueError(f"signals must have at least n_fft = {n_fft} samples, got {reference.numel()}")
    window = torch.hann_window(n_fft, dtype=reference.dtype, device=reference.device)

    def stft(signal: torch.Tensor) -> torch.Tensor:
        return stft_complex(signal[None], window, hop_length)[0]

    def istft(spectrum: torch.Tensor) -> torch.Tensor:
        return torch.istft(spectrum, n_fft, hop_length, window=window, length=reference.numel())

    coded, original = stft(reconstruction), stft(reference)
    reference_phase = istft(coded.abs() * torch.exp(1j * original.angle()))
    reference_magnitude = istft(original.abs() * torch.exp(1j * coded.angle()))
    return reference_phase, reference_magnitude


@dataclass
class PhaseSwapResult:
    """Mean of each metric over the clips for the codec's output and the two hybrids:
    `means[hybrid][metric]`, hybrid one of [`HYBRIDS`]; `clips` clips were measured."""

    means: dict[str, dict[str, float]]
    clips: int
    n_quantizers: int

    def as_dict(self) -> dict[str, object]:
        return {"clips": self.clips, "n_quantizers": self.n_quantizers, "means": self.means}


@torch.no_grad()
def phase_swap_metrics(
    model,
    clips: Iterable[torch.Tensor],
    metrics: Sequence[str] = ("stoi", "pesq"),
    n_quantizers: int | None = None,
    speech: bool = True,
    n_fft: int = 512,
    hop_length: int = 128,
) -> PhaseSwapResult:
    """clips: mono waveforms (samples,) at the model's rate. Codes each clip with `n_quantizers` codebooks
    on every frame (default: all), decodes it and measures `metrics` (keys of `METRICS`) on the codec's
    output and on both hybrids of [`phase_magnitude_swap`]. A metric that fails on a pair is NaN there and
    left out of its mean."""
    count = model.config.n_codebooks if n_quantizers is None else n_quantizers
    values: dict[str, dict[str, list[float]]] = {hybrid: {name: [] for name in metrics} for hybrid in HYBRIDS}
    measured = 0
    for clip in clips:
        if clip.dim() != 1 or clip.numel() == 0:
            raise ValueError(f"each clip must be a non-empty mono waveform (samples,), got shape {tuple(clip.shape)}")
        reference = clip.double()
        decoded, _ = code_and_decode(model, clip.float()[None, None], None, count)
        decoded = torch.from_numpy(decoded)
        hybrids = dict(zip(HYBRIDS, (decoded, *phase_magnitude_swap(decoded, reference, n_fft, hop_length))))
        for hybrid, signal in hybrids.items():
            scores = compute_metrics(signal.numpy(), reference.numpy(), model.config.sampling_rate, list(metrics), speech)
            for name, value in scores.items():
                values[hybrid][name].append(value)
        measured += 1
    if measured == 0:
        raise ValueError("no clips were given")
    means = {
        hybrid: {name: _mean_of_finite(scores) for name, scores in by_metric.items()}
        for hybrid, by_metric in values.items()
    }
    return PhaseSwapResult(means=means, clips=measured, n_quantizers=count)


def _mean_of_finite(values: list[float]) -> float:
    finite = [value for value in values if np.isfinite(value)]
    return float(np.mean(finite)) if finite else float("nan")
