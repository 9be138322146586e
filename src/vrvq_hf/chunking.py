"""Encoding and decoding audio of any length in bounded memory, with overlapping windows.

Encode (`encode_chunked`): the file's F frames are cut into chunks of `chunk_frames` frames. Each chunk
is run through the encoder, the importance subnet and all Nq quantizer stages (`model.encode` with every
codebook on) together with `context` frames of audio on each side (fewer at the file's ends); only the
chunk's own frames are kept: the codes of all stages and the importance map. The inference mode is then
applied ONCE to the whole file with `model.select_num_codebooks`, so a `target_kbps` is met over the
whole file (not window by window) and a `level` gives the same counts as whole-file encoding.

Decode (`decode_chunked`, `iter_decode_chunked`): windows of codes with decoder context frames on each
side; only the chunk's own samples are kept.

Why the result matches whole-file processing: every layer is a convolution (or pointwise), so an output
frame depends only on the input inside its receptive field. `receptive_field` reads the kernel sizes,
dilations, strides and paddings from the model's modules and returns, in frames, how far each side an
encoder output (latent and importance) and a decoded sample reach. The default context equals that
reach, windows start on frame boundaries (every stride divides the hop) and a window that reaches the
end of the file is cut where the file ends (so the end is masked exactly as in `model.encode`). The kept
frames therefore see exactly the input they see in whole-file processing; what differs is floating-point
rounding (convolutions of different lengths may sum in another order). Measured tolerance:

- tiny model (tests/test_chunking.py, 0.02 to 3 s, chunks of 64 frames, all modes): 100% identical codes
  and counts; decoded audio bit-identical up to 1 s, max abs difference 5e-7 (SNR 126 dB) at 3 s. The
  tests assert >= 99.9% identical codes and counts, max abs difference <= 1e-5 and SNR >= 80 dB;
- full-size random model (scripts/benchmark_long_audio.py, 10 s and 60 s at 44.1 kHz, 5 s chunks):
  100% identical codes and counts; decoded audio max abs difference 2e-7 (SNR 164 dB) at 10 s,
  8e-7 (SNR 125 dB) at 60 s. Peak memory there: 0.7 GB chunked at 10 s and 60 s, against 1.0 GB and
  5.1 GB whole-file.
  A code could only differ where two codes tie to within float rounding (~1e-7 relative).

A smaller `context_frames` is allowed (faster, approximate).

Memory: the working memory is that of one window (`chunk_frames + 2 * context` frames), whatever the
duration. What grows with the duration is only the data itself: the input waveform (4 bytes/sample),
the output waveform (4 bytes/sample; `iter_decode_chunked` yields it piece by piece instead), the codes
(8 bytes per codebook and frame), the importance map and counts, and the padding mask (1 byte/sample:
it is returned as a bool tensor rather than long, unlike `model.encode`).

Limits: batch size 1 (one file at a time; a padding mask may trim its right padding). The returned
`VRVQEncoderOutput.quantized_representation` is None (the full latent would grow with the duration;
decode from the codes). Outputs are on the CPU; windows run on the model's device.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import nn

from .importance import bitrate_kbps, prefix_mask
from .modeling_vrvq import VRVQDecoderOutput, VRVQEncoderOutput, VRVQModel

DEFAULT_CHUNK_SECONDS = 5.0
"""Default chunk length: about 5 s of audio (431 frames for the 44.1 kHz model). With the exact context
of the full-size model (about 14 frames each side to encode, 11 to decode) that costs ~6% extra compute."""


@dataclass(frozen=True)
class ReceptiveField:
    """How many frames an output reaches on each side of its own frame.

    encoder_left/right: input frames an encoded frame (latent and importance) depends on beyond itself.
    decoder_left/right: code frames a decoded sample depends on beyond its own frame.
    """

    encoder_left: int
    encoder_right: int
    decoder_left: int
    decoder_right: int


@dataclass(frozen=True)
class Window:
    """One window of a chunked pass, in frames: the model sees [start, stop) and keeps [keep_start, keep_stop)."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


# ------------------------------------------------------------------------------------ receptive field
def _conv_reach(conv: nn.Conv1d, resolution: int | Fraction) -> tuple[int | Fraction, int | Fraction]:
    """(left, right) reach of a Conv1d whose input steps are `resolution` units apart: output step j reads
    input steps j*stride - padding ... j*stride - padding + dilation*(kernel-1)."""
    k, d, p = conv.kernel_size[0], conv.dilation[0], conv.padding[0]
    return p * resolution, (d * (k - 1) - p) * resolution


def _transposed_reach(conv: nn.ConvTranspose1d, resolution: Fraction) -> tuple[Fraction, Fraction]:
    """(left, right) reach of a ConvTranspose1d, in units of its input steps' spacing `resolution`:
    output step o = i*stride - padding + kk reads inputs i in [(o + p - k + 1) / s, (o + p) / s]."""
    k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    return Fraction(k - 1 - p, s) * resolution, Fraction(p, s) * resolution


def receptive_field(model: VRVQModel) -> ReceptiveField:
    """The exact reach of the model's encoder (+ importance subnet) and decoder, in frames (rounded up)."""
    hop = model.config.hop_length
    left = right = 0  # encoder, in samples
    resolution = 1
    encoder = model.encoder

    def add(reach: tuple) -> None:
        nonlocal left, right
        left, right = left + reach[0], right + reach[1]

    add(_conv_reach(encoder.input_conv, resolution))
    for block in encoder.blocks:
        for unit in block.residual_units:  # x + branch(x): the branch's reach
            add(_conv_reach(unit.conv1, resolution))
            add(_conv_reach(unit.conv2, resolution))
        add(_conv_reach(block.downsample, resolution))
        resolution *= block.stride
    latent = tuple(a + b for a, b in zip((left, right), _conv_reach(encoder.output_conv, resolution)))
    importance = (left, right)
    if model.importance_subnet is not None:
        for block in model.importance_subnet.blocks:
            importance = tuple(a + b for a, b in zip(importance, _conv_reach(block["conv"], resolution)))
    enc_left, enc_right = (max(latent[i], importance[i]) for i in (0, 1))

    decoder = model.decoder
    dec = [Fraction(0), Fraction(0)]  # in frames
    resolution = Fraction(1)

    def add_dec(reach: tuple) -> None:
        dec[0], dec[1] = dec[0] + reach[0], dec[1] + reach[1]

    add_dec(_conv_reach(decoder.input_conv, resolution))
    for block in decoder.blocks:
        add_dec(_transposed_reach(block.upsample, resolution))
        resolution /= block.stride
        for unit in block.residual_units:
            add_dec(_conv_reach(unit.conv1, resolution))
            add_dec(_conv_reach(unit.conv2, resolution))
    add_dec(_conv_reach(decoder.output_conv, resolution))
    return ReceptiveField(
        encoder_left=math.ceil(enc_left / hop),
        encoder_right=math.ceil(enc_right / hop),
        decoder_left=math.ceil(dec[0]),
        decoder_right=math.ceil(dec[1]),
    )


def default_chunk_frames(config) -> int:
    """Frames per chunk for about `DEFAULT_CHUNK_SECONDS` of audio (at least 1)."""
    return max(1, round(DEFAULT_CHUNK_SECONDS * config.frame_rate))


def plan_windows(num_frames: int, chunk_frames: int, left_context: int, right_context: int) -> list[Window]:
    """Chunks of `chunk_frames` frames covering [0, num_frames), each with up to the given context."""
    for name, value, low in (
        ("num_frames", num_frames, 0), ("chunk_frames", chunk_frames, 1),
        ("left_context", left_context, 0), ("right_context", right_context, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return [
        Window(max(0, s - left_context), min(num_frames, s + chunk_frames + right_context), s,
               min(s + chunk_frames, num_frames))
        for s in range(0, num_frames, chunk_frames)
    ]


def _contexts(context_frames: int | tuple[int, int] | None, default: tuple[int, int]) -> tuple[int, int]:
    if context_frames is None:
        return default
    if isinstance(context_frames, int):
        return context_frames, context_frames
    left, right = context_frames
    return int(left), int(right)


def _progress(windows: list[Window], enabled: bool, desc: str):
    if not enabled:
        return windows
    from tqdm.auto import tqdm

    return tqdm(windows, desc=desc, unit="chunk", file=sys.stderr, leave=False)


# ---------------------------------------------------------------------------------------------- encode
def _single_item(input_values: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """(1, 1, T) float (or (T,), (1, T)) -> (1, 1, valid T) on the CPU."""
    if not isinstance(input_values, torch.Tensor):
        raise TypeError(f"input_values must be a torch.Tensor of shape (1, 1, samples), got {type(input_values)}")
    x = input_values
    if x.dim() == 1:
        x = x[None, None]
    elif x.dim() == 2 and x.shape[0] == 1:
        x = x[None]
    if x.dim() != 3 or x.shape[:2] != (1, 1):
        raise ValueError(
            f"chunked processing takes one mono item: input_values of shape (1, 1, samples), got "
            f"{tuple(input_values.shape)}; loop over the items of a batch"
        )
    if not x.is_floating_point():
        raise ValueError(f"input_values must be floating point in [-1, 1], got dtype {x.dtype}")
    if padding_mask is not None:
        mask = torch.as_tensor(padding_mask).reshape(-1).bool()
        if mask.numel() != x.shape[-1]:
            raise ValueError(f"padding_mask must have {x.shape[-1]} entries (1, samples), got {tuple(padding_mask.shape)}")
        length = int(mask.sum())
        if length == 0 or not bool(mask[:length].all()):
            raise ValueError("padding_mask must be 1 on a non-empty prefix and 0 after it (right padding only)")
        x = x[..., :length]
    if x.shape[-1] == 0:
        raise ValueError("input_values is empty (0 samples)")
    return x


def _check_mode(model: VRVQModel, level, n_quantizers, target_kbps) -> None:
    """Fail before the (long) window loop on a bad mode: the rule run on a one-frame dummy map."""
    dummy = None if model.importance_subnet is None else torch.full((1, 1), 0.5)
    model.select_num_codebooks(dummy, torch.ones(1, 1, dtype=torch.bool), level, n_quantizers, target_kbps)


def encode_chunked(
    model: VRVQModel,
    input_values: torch.Tensor,
    padding_mask: torch.Tensor | None = None,
    *,
    level: float | None = None,
    n_quantizers: int | None = None,
    target_kbps: float | None = None,
    chunk_frames: int | None = None,
    context_frames: int | tuple[int, int] | None = None,
    progress: bool = False,
) -> VRVQEncoderOutput:
    """`model.encode` of one long item in bounded memory (module docstring: method and tolerance).

    input_values (1, 1, T) float; padding_mask (1, T), optional. Mode: at most one of level, n_quantizers,
    target_kbps (none: all codebooks), applied to the whole file. chunk_frames: frames kept per window
    (default `default_chunk_frames`); context_frames: int or (left, right) (default: the exact receptive
    field). Returns a `VRVQEncoderOutput` on the CPU: audio_codes (1, Nq, F) masked, codebook_mask
    (1, Nq, F), num_codebooks (1, F), importance_map (1, F) or None, quantized_representation None,
    bitrate_kbps (1,), level (1,) or None, padding_mask (1, F * hop) bool.
    """
    config = model.config
    waveform = _single_item(input_values, padding_mask)
    _check_mode(model, level, n_quantizers, target_kbps)
    hop, n_codebooks, samples = config.hop_length, config.n_codebooks, waveform.shape[-1]
    num_frames = math.ceil(samples / hop)
    field = receptive_field(model)
    left, right = _contexts(context_frames, (field.encoder_left, field.encoder_right))
    chunk = default_chunk_frames(config) if chunk_frames is None else chunk_frames
    windows = plan_windows(num_frames, chunk, left, right)
    device = next(model.parameters()).device

    codes = torch.zeros((1, n_codebooks, num_frames), dtype=torch.long)
    importance = None if model.importance_subnet is None else torch.zeros((1, num_frames))
    with torch.inference_mode():
        for w in _progress(windows, progress, "encoding"):
            piece = waveform[..., w.start * hop : min(w.stop * hop, samples)].to(device)
            out = model.encode(piece, return_dict=True)  # every codebook on: the codes of all stages
            a, b = w.keep_start - w.start, w.keep_stop - w.start
            codes[..., w.keep_start : w.keep_stop] = out.audio_codes[..., a:b].cpu()
            if importance is not None:
                importance[:, w.keep_start : w.keep_stop] = out.importance_map[:, a:b].float().cpu()
        frame_valid = torch.ones((1, num_frames), dtype=torch.bool)
        counts, used_level = model.select_num_codebooks(importance, frame_valid, level, n_quantizers, target_kbps)
        mask = prefix_mask(counts, n_codebooks)
        return VRVQEncoderOutput(
            audio_codes=codes * mask,
            codebook_mask=mask,
            num_codebooks=counts,
            importance_map=importance,
            quantized_representation=None,
            bitrate_kbps=bitrate_kbps(counts, config.bits_per_code, config.side_info_bits, config.frame_rate),
            level=None if used_level is None else used_level.cpu(),
            padding_mask=(torch.arange(num_frames * hop) < samples)[None],
        )


# ---------------------------------------------------------------------------------------------- decode
def _decoding_inputs(
    model: VRVQModel, audio_codes: torch.Tensor, codebook_mask: torch.Tensor | None, num_codebooks: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (1, n, F') and a prefix mask (1, n, F') cut to the valid frames, on the CPU."""
    if not isinstance(audio_codes, torch.Tensor):
        audio_codes = torch.as_tensor(audio_codes)
    if audio_codes.dim() == 2:
        audio_codes = audio_codes[None]
    if audio_codes.dim() != 3 or audio_codes.shape[0] != 1:
        raise ValueError(
            f"chunked decoding takes one item: audio_codes of shape (1, n, frames), got {tuple(audio_codes.shape)}"
        )
    if codebook_mask is not None and num_codebooks is not None:
        raise ValueError("give at most one of codebook_mask and num_codebooks")
    codes = audio_codes.cpu()
    n, frames = codes.shape[1], codes.shape[2]
    if num_codebooks is not None:
        counts = torch.as_tensor(num_codebooks).cpu().reshape(1, -1)
        if counts.shape[1] != frames:
            raise ValueError(f"num_codebooks must have shape (1, {frames}), got {tuple(torch.as_tensor(num_codebooks).shape)}")
        mask = prefix_mask(counts.long(), n)
    elif codebook_mask is not None:
        mask = torch.as_tensor(codebook_mask).cpu().bool().reshape(codes.shape)
    else:
        mask = torch.ones_like(codes, dtype=torch.bool)
    valid = int(mask.any(dim=1).sum())
    if not bool(mask[..., :valid].any(dim=1).all()):
        raise ValueError("frames without any active codebook (padding) may only come at the end of an item")
    return codes[..., :valid], mask[..., :valid]


def iter_decode_chunked(
    model: VRVQModel,
    audio_codes: torch.Tensor,
    codebook_mask: torch.Tensor | None = None,
    num_codebooks: torch.Tensor | None = None,
    num_samples: int | None = None,
    *,
    chunk_frames: int | None = None,
    context_frames: int | tuple[int, int] | None = None,
    progress: bool = False,
) -> Iterator[torch.Tensor]:
    """Decode one item window by window, yielding consecutive pieces of audio (1, 1, n) on the CPU.

    audio_codes (1, n, F) with codebook_mask (1, n, F) or num_codebooks (1, F) (as `model.decode`);
    num_samples: stop after this many samples (default: all F' * hop samples of the valid frames F').
    Write the pieces to a file as they come to keep even the output out of memory.
    """
    codes, mask = _decoding_inputs(model, audio_codes, codebook_mask, num_codebooks)
    hop = model.config.hop_length
    frames = codes.shape[-1]
    total = frames * hop if num_samples is None else int(num_samples)
    if not 0 <= total <= frames * hop:
        raise ValueError(f"num_samples must be in 0..{frames * hop} for {frames} frames, got {num_samples}")
    field = receptive_field(model)
    left, right = _contexts(context_frames, (field.decoder_left, field.decoder_right))
    chunk = default_chunk_frames(model.config) if chunk_frames is None else chunk_frames
    device = next(model.parameters()).device
    with torch.inference_mode():
        for w in _progress(plan_windows(frames, chunk, left, right), progress, "decoding"):
            if w.keep_start * hop >= total:
                break
            audio = model.decode(
                codes[..., w.start : w.stop].to(device), codebook_mask=mask[..., w.start : w.stop].to(device),
                return_dict=True,
            ).audio_values
            a = (w.keep_start - w.start) * hop
            b = a + min(w.keep_stop * hop, total) - w.keep_start * hop
            yield audio[..., a:b].cpu()


def decode_chunked(
    model: VRVQModel,
    audio_codes: torch.Tensor,
    codebook_mask: torch.Tensor | None = None,
    num_codebooks: torch.Tensor | None = None,
    padding_mask: torch.Tensor | None = None,
    *,
    chunk_frames: int | None = None,
    context_frames: int | tuple[int, int] | None = None,
    progress: bool = False,
) -> VRVQDecoderOutput:
    """`model.decode` of one long item in bounded working memory -> audio_values (1, 1, T) on the CPU.

    Arguments as `model.decode` (batch of one); padding_mask (1, T) trims the output to T valid samples
    (as returned by `encode_chunked` or `model.encode`); without it all valid frames are decoded.
    """
    num_samples = None if padding_mask is None else int(torch.as_tensor(padding_mask).bool().sum())
    codes, mask = _decoding_inputs(model, audio_codes, codebook_mask, num_codebooks)
    total = codes.shape[-1] * model.config.hop_length if num_samples is None else num_samples
    audio = torch.empty((1, 1, total))
    position = 0
    for piece in iter_decode_chunked(
        model, codes, codebook_mask=mask, num_samples=num_samples, chunk_frames=chunk_frames,
        context_frames=context_frames, progress=progress,
    ):
        audio[..., position : position + piece.shape[-1]] = piece
        position += piece.shape[-1]
    return VRVQDecoderOutput(audio_values=audio)


__all__ = [
    "DEFAULT_CHUNK_SECONDS",
    "ReceptiveField",
    "Window",
    "decode_chunked",
    "default_chunk_frames",
    "encode_chunked",
    "iter_decode_chunked",
    "plan_windows",
    "receptive_field",
]
