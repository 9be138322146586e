"""Grow a trained model's decoder without changing what it computes (Net2WiderNet, Chen et al. 2016).

`widen_decoder(model, width)` returns a copy of `model` whose decoder has `decoder_hidden_size = width`
(every decoder layer wider by the same factor) and, before any further training, decodes as `model` does
(to float rounding): new channel j of a layer with C old channels copies old channel j mod C (its filters,
bias and Snake alpha), and the layer that reads a copied channel divides that channel's input weights
between the copies. So that the copies do not stay identical under training, the division is uneven:
zero-sum noise within each group of copies leaves every sum, and so the output, unchanged while giving
the copies different gradients. Encoder, quantizer and importance subnet are copied as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from ..configuration_vrvq import VRVQConfig
from ..modeling_vrvq import VRVQModel


def channel_map(old: int, new: int) -> torch.Tensor:
    """Which old channel each of `new` channels copies: (new,) long, j -> j mod old."""
    if new < old:
        raise ValueError(f"cannot widen {old} channels to {new}: the new width must be at least the old one")
    return torch.arange(new) % old


def split_inputs(
    weight: torch.Tensor, new: int, dim: int, noise: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Widens input dimension `dim` of `weight` to `new` channels: each old channel's weights are divided
    between its copies, plus zero-sum noise within each group (std `noise` x the weight's std)."""
    old = weight.shape[dim]
    source = channel_map(old, new)
    counts = torch.bincount(source, minlength=old).to(weight.dtype)
    moved = weight.movedim(dim, 0)
    widened = moved[source] / counts[source].view(-1, *[1] * (moved.dim() - 1))
    if noise > 0:
        draw = torch.randn(widened.shape, generator=generator, dtype=weight.dtype) * (noise * float(weight.std(correction=0)))
        group_mean = torch.zeros_like(moved).index_add_(0, source, draw) / counts.view(-1, *[1] * (moved.dim() - 1))
        widened = widened + draw - group_mean[source]
    return widened.movedim(0, dim)


def _input_dim(module: nn.Module, name: str) -> int | None:
    """The input-channel dimension of a parameter (None for biases and Snake alphas)."""
    if not name.endswith("weight"):
        return None
    return 0 if isinstance(module, nn.ConvTranspose1d) else 1


def widen_decoder(model: VRVQModel, decoder_hidden_size: int, noise: float = 1e-2, seed: int = 0) -> VRVQModel:
    """A new model (plain weights, eval mode) equal to `model` but with a decoder of `decoder_hidden_size`
    channels that computes the same output; `model` is left untouched.

    decoder_hidden_size: the new width of the first decoder convolution (at least the old one and, as
        `VRVQConfig` requires, a multiple of 2**len(upsampling_ratios)). noise: std of the zero-sum split
        noise relative to each weight's std (0: the copies stay identical). seed: seeds that noise.
    """
    old_width = model.config.decoder_hidden_size
    if decoder_hidden_size < old_width:
        raise ValueError(f"decoder_hidden_size must be at least the model's {old_width}, got {decoder_hidden_size}")
    source = model.folded_copy()
    settings = source.config.to_dict()
    settings["decoder_hidden_size"] = decoder_hidden_size
    wider = VRVQModel(VRVQConfig.from_dict(settings))
    generator = torch.Generator().manual_seed(seed)
    old_parameters = dict(source.named_parameters())
    modules = dict(wider.named_modules())
    with torch.no_grad():
        for name, parameter in wider.named_parameters():
            value = old_parameters[name].detach()
            module = modules[name.rpartition(".")[0]]
            in_dim = _input_dim(module, name)
            for dim, (old, new) in enumerate(zip(value.shape, parameter.shape)):
                if old == new:
                    continue
                if dim == in_dim:
                    value = split_inputs(value, new, dim, noise, generator)
                else:
                    value = value.index_select(dim, channel_map(old, new))
            parameter.copy_(value)
        for name, buffer in source.named_buffers():  # none are in the decoder
            wider.get_buffer(name).copy_(buffer)
    return wider.eval()
