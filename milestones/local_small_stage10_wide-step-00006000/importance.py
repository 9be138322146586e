"""The importance subnet, the level -> codebook-mask rule, its straight-through gradient, and the
bitrate accounting (SPEC sections 3, 4 and 6)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import Snake1d, mask_beyond

_LN2 = math.log(2.0)


class ImportanceSubnet(nn.Module):
    """(Snake, Conv1d k=3) blocks then a sigmoid: encoder features (B, C, F) -> importance p (B, F) in (0, 1)."""

    def __init__(self, in_channels: int, channels: list[int]):
        super().__init__()
        widths = [in_channels, *channels]
        self.blocks = nn.ModuleList(
            [
                nn.ModuleDict({"act": Snake1d(c_in), "conv": nn.Conv1d(c_in, c_out, kernel_size=3, padding=1)})
                for c_in, c_out in zip(widths[:-1], widths[1:])
            ]
        )

    def forward(self, features: torch.Tensor, frame_lengths: torch.Tensor | None = None) -> torch.Tensor:
        hidden = features
        for block in self.blocks:
            hidden = mask_beyond(block["conv"](block["act"](hidden)), frame_lengths)
        return mask_beyond(torch.sigmoid(hidden), frame_lengths).squeeze(1)


def silent_frames(waveform: torch.Tensor, hop_length: int, threshold_db: float) -> torch.Tensor:
    """Frames whose samples, and those of both neighbouring frames, have an RMS below `threshold_db` dBFS:
    waveform (B, 1, F * hop_length) -> bool (B, F). Zero padding after an item never makes a frame loud,
    so the answer for a clip does not depend on the batch it is in."""
    batch = waveform.shape[0]
    power = waveform.reshape(batch, -1, hop_length).pow(2).mean(dim=-1)  # (B, F) mean square per frame
    loudest = nn.functional.max_pool1d(power[:, None], kernel_size=3, stride=1, padding=1)[:, 0]
    return loudest < 10.0 ** (threshold_db / 10.0)


def log_cosh(values: torch.Tensor) -> torch.Tensor:
    """ln cosh(y) computed without overflow: |y| + log1p(exp(-2|y|)) - ln 2."""
    magnitude = values.abs()
    return magnitude + torch.log1p(torch.exp(-2 * magnitude)) - _LN2


def surrogate(kind: str, t: torch.Tensor, alpha: float) -> torch.Tensor:
    """Smooth stand-in s(t) for the step 1[t >= 0], used for the backward pass only.

    logcosh: 1/(2 alpha) ln(cosh(alpha (t + 1/2)) / cosh(alpha (t - 1/2))) + 1/2  (-> clip(t + 1/2, 0, 1))
    square:  clamp(t, 0, 1)
    sigmoid: sigmoid(alpha t)
    """
    if kind == "logcosh":
        return (log_cosh(alpha * (t + 0.5)) - log_cosh(alpha * (t - 0.5))) / (2 * alpha) + 0.5
    if kind == "square":
        return t.clamp(0.0, 1.0)
    if kind == "sigmoid":
        return torch.sigmoid(alpha * t)
    raise ValueError(f"unknown surrogate {kind!r}; expected 'logcosh', 'square' or 'sigmoid'")


def scaled_importance(importance: torch.Tensor, level: torch.Tensor, n_codebooks: int) -> torch.Tensor:
    """x = Nq * l * p: importance (B, F), level (B,) -> (B, F)."""
    return n_codebooks * level[:, None].to(importance.dtype) * importance


def hard_codebook_mask(scaled: torch.Tensor, n_codebooks: int) -> torch.Tensor:
    """m_i = 1[x - i >= 0] for i = 0..Nq-1: scaled (B, F) -> bool (B, Nq, F). Codebook 0 is always on."""
    stage = torch.arange(n_codebooks, device=scaled.device, dtype=scaled.dtype)
    return (scaled[:, None, :] - stage[None, :, None]) >= 0


def straight_through_mask(scaled: torch.Tensor, n_codebooks: int, kind: str, alpha: float) -> torch.Tensor:
    """Hard mask forward, surrogate gradient backward: s(x - i) + sg(hard_i - s(x - i)), float (B, Nq, F)."""
    stage = torch.arange(n_codebooks, device=scaled.device, dtype=scaled.dtype)
    t = scaled[:, None, :] - stage[None, :, None]
    soft = surrogate(kind, t, alpha)
    return soft + ((t >= 0).to(soft.dtype) - soft).detach()


def prefix_mask(counts: torch.Tensor, n_codebooks: int) -> torch.Tensor:
    """Active counts (B, F) -> bool mask (B, Nq, F) with the first counts[b, f] codebooks on."""
    stage = torch.arange(n_codebooks, device=counts.device)
    return stage[None, :, None] < counts[:, None, :]


def bitrate_kbps(
    num_codebooks: torch.Tensor, bits_per_code: int, side_info_bits: int, frame_rate: float
) -> torch.Tensor:
    """Counted bitrate per item (B,): mean over valid frames (count > 0) of n * bits + side bits, per second."""
    valid = num_codebooks > 0
    bits = (num_codebooks * bits_per_code + side_info_bits) * valid
    frames = valid.sum(dim=1).clamp(min=1)
    return bits.sum(dim=1).to(torch.float64) / frames * frame_rate / 1000


def level_for_bitrate(
    importance: torch.Tensor,
    frame_valid: torch.Tensor,
    target_kbps: float,
    n_codebooks: int,
    bits_per_code: int,
    side_info_bits: int,
    frame_rate: float,
) -> torch.Tensor:
    """Per item, the level whose counted bitrate comes closest to `target_kbps` without exceeding it.

    importance (B, F), frame_valid (B, F) bool -> level (B,). Exact: the count of frame t rises by one at
    each breakpoint l = k / (Nq p_t), k = 1..Nq-1, so the bitrate is a step function of l whose steps are
    the sorted breakpoints; we take the largest admissible number of steps and a level strictly between
    two breakpoints, then re-check the count with the same arithmetic the encoder uses.
    """
    levels = []
    for p, valid in zip(importance, frame_valid):
        p = p[valid]
        n_frames = p.numel()
        budget_bits = target_kbps * 1000 / frame_rate * n_frames
        base_bits = n_frames * (bits_per_code + side_info_bits)
        if base_bits > budget_bits * (1 + 1e-12):
            minimum = (bits_per_code + side_info_bits) * frame_rate / 1000
            raise ValueError(
                f"target_kbps={target_kbps} is below this model's minimum of {minimum:.4f} kbps "
                "(one codebook per frame plus side information)"
            )
        steps = torch.arange(1, n_codebooks, device=p.device, dtype=torch.float64)
        breakpoints = (steps[None, :] / (n_codebooks * p.to(torch.float64)[:, None])).flatten().sort().values
        allowed = min(int((budget_bits - base_bits) // bits_per_code), breakpoints.numel())
        while True:
            level = _level_between(breakpoints, allowed)
            counts = hard_codebook_mask(
                scaled_importance(p[None], torch.tensor([level], device=p.device), n_codebooks), n_codebooks
            ).sum(dim=1)
            used = float((counts * bits_per_code + side_info_bits).sum())
            if used <= budget_bits * (1 + 1e-12) or allowed == 0:
                break
            allowed -= 1
        levels.append(level)
    return torch.tensor(levels, dtype=torch.float32, device=importance.device)


def _level_between(breakpoints: torch.Tensor, steps: int) -> float:
    """A level at which exactly the first `steps` breakpoints are passed (fewer where breakpoints tie)."""
    total = breakpoints.numel()
    finite = breakpoints[torch.isfinite(breakpoints)]
    while 0 < steps < total and breakpoints[steps - 1] == breakpoints[steps]:
        steps -= 1
    if total == 0 or finite.numel() == 0 or steps == 0:
        first = float(finite[0]) if finite.numel() else 1.0
        return first / 2
    if steps >= finite.numel():
        return float(finite[-1]) * 2
    return float((breakpoints[steps - 1] + breakpoints[steps]) / 2)
