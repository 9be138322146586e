"""Building blocks of the DAC-style encoder and decoder.

Every block takes an optional `lengths` tensor (B,): the number of valid time steps of each item at the
block's input resolution. When it is given, activations beyond each item's valid length are zeroed after
every layer that mixes time steps, so an item's output on its valid part does not depend on how much
padding the batch adds (the batch-invariance that transformers' DAC, EnCodec and Mimi lack). With
`lengths=None` nothing is masked and the computation is exactly DAC's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Gain of the "scale_preserving" initialisation, read by `VRVQPreTrainedModel._init_weights`.
INIT_GAIN_ATTR = "vrvq_init_gain"


def with_init_gain(module: nn.Module, gain: float) -> nn.Module:
    """Tags a convolution with the gain the scale-preserving initialisation gives it."""
    setattr(module, INIT_GAIN_ATTR, gain)
    return module


def mask_beyond(hidden: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Zeroes `hidden` (B, C, T) at time steps t >= lengths[b]; a no-op when `lengths` is None."""
    if lengths is None:
        return hidden
    steps = torch.arange(hidden.shape[-1], device=hidden.device)
    return hidden * (steps[None, :] < lengths[:, None]).unsqueeze(1).to(hidden.dtype)


def downsampled_lengths(lengths: torch.Tensor | None, stride: int) -> torch.Tensor | None:
    """Valid steps after a stride-`stride` downsampling: ceil(lengths / stride)."""
    return None if lengths is None else torch.div(lengths + stride - 1, stride, rounding_mode="floor")


class Snake1d(nn.Module):
    """Snake activation x + sin^2(alpha x) / alpha with one learnt alpha per channel; Snake(0) = 0."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * hidden).pow(2)


class ResidualUnit(nn.Module):
    """x + Conv1x1(Snake(DilatedConv7(Snake(x)))): shape (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.act1 = Snake1d(channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=7, dilation=dilation, padding=3 * dilation)
        self.act2 = Snake1d(channels)
        self.conv2 = with_init_gain(nn.Conv1d(channels, channels, kernel_size=1), 0.1)

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        branch = self.conv2(self.act2(self.conv1(self.act1(hidden))))
        return mask_beyond(hidden + branch, lengths)


class EncoderBlock(nn.Module):
    """Three residual units (dilations 1, 3, 9), Snake, then a strided conv that doubles the channels.

    (B, C, T) -> (B, 2C, T / stride)
    """

    def __init__(self, in_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.residual_units = nn.ModuleList([ResidualUnit(in_channels, d) for d in (1, 3, 9)])
        self.act = Snake1d(in_channels)
        self.downsample = nn.Conv1d(
            in_channels, 2 * in_channels, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
        )

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        for unit in self.residual_units:
            hidden = unit(hidden, lengths)
        hidden = self.downsample(self.act(hidden))
        return mask_beyond(hidden, downsampled_lengths(lengths, self.stride))


class DecoderBlock(nn.Module):
    """Snake, a transposed conv that upsamples by `stride` and halves the channels, three residual units.

    (B, C, F) -> (B, C/2, F * stride)
    """

    def __init__(self, in_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        out_channels = in_channels // 2
        self.act = Snake1d(in_channels)
        # output_padding makes the output exactly stride x longer for odd strides too (DAC loses a sample
        # there); for even strides it is 0 and this is DAC's layer.
        self.upsample = nn.ConvTranspose1d(
            in_channels, out_channels, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2),
            output_padding=stride % 2,
        )
        self.residual_units = nn.ModuleList([ResidualUnit(out_channels, d) for d in (1, 3, 9)])

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        lengths = None if lengths is None else lengths * self.stride
        hidden = mask_beyond(self.upsample(self.act(hidden)), lengths)
        for unit in self.residual_units:
            hidden = unit(hidden, lengths)
        return hidden


class Encoder(nn.Module):
    """Waveform (B, 1, T) -> latent (B, hidden_size, T / hop_length).

    Also returns the output of the last encoder block (before the final Snake and conv), which is the
    input of the importance subnet.
    """

    def __init__(self, base_channels: int, strides: list[int], latent_channels: int):
        super().__init__()
        self.strides = list(strides)
        self.input_conv = nn.Conv1d(1, base_channels, kernel_size=7, padding=3)
        channels = [base_channels * 2**i for i in range(len(strides))]
        self.blocks = nn.ModuleList([EncoderBlock(c, s) for c, s in zip(channels, strides)])
        top = base_channels * 2 ** len(strides)
        self.output_act = Snake1d(top)
        self.output_conv = nn.Conv1d(top, latent_channels, kernel_size=3, padding=1)

    def forward(
        self, waveform: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """lengths: valid samples per item (B,) or None. Returns (latent, last_block_output)."""
        hidden = mask_beyond(self.input_conv(waveform), lengths)
        for block, stride in zip(self.blocks, self.strides):
            hidden = block(hidden, lengths)
            lengths = downsampled_lengths(lengths, stride)
        latent = mask_beyond(self.output_conv(self.output_act(hidden)), lengths)
        return latent, hidden


class Decoder(nn.Module):
    """Latent (B, hidden_size, F) -> waveform (B, 1, F * hop_length) in [-1, 1]."""

    def __init__(self, latent_channels: int, base_channels: int, strides: list[int]):
        super().__init__()
        self.input_conv = nn.Conv1d(latent_channels, base_channels, kernel_size=7, padding=3)
        channels = [base_channels // 2**i for i in range(len(strides))]
        self.blocks = nn.ModuleList([DecoderBlock(c, s) for c, s in zip(channels, strides)])
        bottom = base_channels // 2 ** len(strides)
        self.output_act = Snake1d(bottom)
        self.output_conv = with_init_gain(nn.Conv1d(bottom, 1, kernel_size=7, padding=3), 0.1)

    def forward(self, latent: torch.Tensor, frame_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """frame_lengths: valid frames per item (B,) or None."""
        lengths = frame_lengths
        hidden = mask_beyond(self.input_conv(latent), lengths)
        for block in self.blocks:
            hidden = block(hidden, lengths)
            lengths = None if lengths is None else lengths * block.stride
        return mask_beyond(torch.tanh(self.output_conv(self.output_act(hidden))), lengths)
