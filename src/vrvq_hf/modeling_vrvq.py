"""VRVQ: a DAC-style codec whose importance subnet chooses, frame by frame, how many residual codebooks
to spend (Chae et al., "Variable Bitrate Residual Vector Quantization for Audio Coding", ICASSP 2025)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize
from transformers import initialization as init
from transformers.modeling_utils import PreTrainedAudioTokenizerBase
from transformers.utils import ModelOutput

from .configuration_vrvq import VRVQConfig
from .importance import (
    ImportanceSubnet,
    bitrate_kbps,
    hard_codebook_mask,
    level_for_bitrate,
    prefix_mask,
    scaled_importance,
    silent_frames,
    straight_through_mask,
)
from .layers import INIT_GAIN_ATTR, Decoder, Encoder, Snake1d
from .quantizer import ResidualVectorQuantizer


@dataclass
class VRVQEncoderOutput(ModelOutput):
    r"""
    audio_codes (`torch.LongTensor` of shape `(batch_size, n_codebooks, frames)`):
        Code of every codebook on every frame; 0 where `codebook_mask` is off (not transmitted).
    codebook_mask (`torch.BoolTensor` of shape `(batch_size, n_codebooks, frames)`):
        Which codes are transmitted: on each frame the first `num_codebooks` codebooks.
    num_codebooks (`torch.LongTensor` of shape `(batch_size, frames)`):
        Active codebooks per frame, 1..n_codebooks on valid frames and 0 on padded frames.
    importance_map (`torch.FloatTensor` of shape `(batch_size, frames)`, *optional*):
        The importance subnet's output p in (0, 1); 0 on padded frames. `None` for a constant-bitrate model.
    quantized_representation (`torch.FloatTensor` of shape `(batch_size, hidden_size, frames)`):
        The quantized latent the decoder consumes.
    bitrate_kbps (`torch.DoubleTensor` of shape `(batch_size,)`):
        Counted bitrate of each item over its valid frames, side information included.
    level (`torch.FloatTensor` of shape `(batch_size,)`, *optional*):
        The level used for each item (given, or found for `target_kbps`); `None` in constant-bitrate mode.
    padding_mask (`torch.LongTensor` of shape `(batch_size, padded_samples)`):
        1 on valid input samples; pass it to `decode` to trim the output to each item's length.
    """

    audio_codes: torch.LongTensor | None = None
    codebook_mask: torch.BoolTensor | None = None
    num_codebooks: torch.LongTensor | None = None
    importance_map: torch.FloatTensor | None = None
    quantized_representation: torch.FloatTensor | None = None
    bitrate_kbps: torch.Tensor | None = None
    level: torch.FloatTensor | None = None
    padding_mask: torch.LongTensor | None = None


@dataclass
class VRVQDecoderOutput(ModelOutput):
    r"""
    audio_values (`torch.FloatTensor` of shape `(batch_size, 1, samples)`):
        Decoded audio; with a padding mask, trimmed to the longest item and zero beyond each item's length.
    """

    audio_values: torch.FloatTensor | None = None


@dataclass
class VRVQOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`):
        commitment_loss_weight * commitment + codebook_loss_weight * codebook + rate_loss_weight * rate
        + latent_loss_weight * latent.
    audio_values (`torch.FloatTensor` of shape `(batch_size, 1, samples)`):
        Reconstruction, as long as the input.
    commitment_loss, codebook_loss (`torch.FloatTensor` of shape `()`):
        Per-frame VQ losses weighted by the (detached) codebook mask, summed over codebooks, averaged over
        items and valid frames.
    rate_loss (`torch.FloatTensor` of shape `()`):
        Mean importance over the valid frames of the items that used the importance mask (0 if none).
    audio_codes, codebook_mask, num_codebooks, importance_map, quantized_representation, bitrate_kbps, level:
        As in [`VRVQEncoderOutput`] (in training mode `level` is the sampled level, also for the items that
        used all codebooks, and `codebook_mask` the forward value of the straight-through mask).
    latent_loss (`torch.FloatTensor` of shape `()`):
        Squared distance between the sum of the first n stage outputs and the encoder latent, divided by the
        item's mean latent energy over its valid frames, averaged over n = 1..Nq, items and valid frames
        (computed only when `latent_loss_weight` > 0, else 0). It does not depend on the codebook mask, so
        it never pushes the importance subnet.
    """

    loss: torch.FloatTensor | None = None
    audio_values: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    rate_loss: torch.FloatTensor | None = None
    audio_codes: torch.LongTensor | None = None
    codebook_mask: torch.BoolTensor | None = None
    num_codebooks: torch.LongTensor | None = None
    importance_map: torch.FloatTensor | None = None
    quantized_representation: torch.FloatTensor | None = None
    bitrate_kbps: torch.Tensor | None = None
    level: torch.FloatTensor | None = None
    latent_loss: torch.FloatTensor | None = None


@dataclass
class _Frames:
    """Input bookkeeping: the zero-padded waveform and where each item's valid part ends."""

    waveform: torch.Tensor  # (B, 1, T_padded), T_padded a multiple of hop_length
    sample_lengths: torch.Tensor  # (B,) valid samples
    frame_lengths: torch.Tensor  # (B,) valid frames = ceil(sample_lengths / hop_length)
    n_frames: int  # F = T_padded / hop_length
    needs_mask: bool  # False when every item fills the padded length: no masking, DAC's exact computation

    @property
    def frame_valid(self) -> torch.Tensor:
        """(B, F) bool: frame f of item b holds valid audio."""
        steps = torch.arange(self.n_frames, device=self.waveform.device)
        return steps[None, :] < self.frame_lengths[:, None]

    def padding_mask(self) -> torch.Tensor:
        """(B, T_padded) long: 1 on valid samples."""
        steps = torch.arange(self.waveform.shape[-1], device=self.waveform.device)
        return (steps[None, :] < self.sample_lengths[:, None]).long()


class VRVQPreTrainedModel(PreTrainedAudioTokenizerBase):
    config_class = VRVQConfig
    base_model_prefix = "vrvq"
    main_input_name = "input_values"
    input_modalities = "audio"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
            self._init_conv(module)
        elif isinstance(module, Snake1d):
            init.ones_(module.alpha)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=1.0)

    def _init_conv(self, module: nn.Conv1d | nn.ConvTranspose1d) -> None:
        weight_normed = parametrize.is_parametrized(module, "weight")
        weight = module.parametrizations.weight.original1 if weight_normed else module.weight
        if self.config.initializer == "scale_preserving":
            fan_in = module.in_channels * module.kernel_size[0]
            if isinstance(module, nn.ConvTranspose1d):
                fan_in = fan_in / module.stride[0]  # each output sees in_channels * kernel / stride inputs
            gain = getattr(module, INIT_GAIN_ATTR, 1.0)
            init.normal_(weight, mean=0.0, std=gain / math.sqrt(fan_in))
        elif isinstance(module, nn.ConvTranspose1d):  # DAC leaves transposed convs at PyTorch's default
            init.kaiming_uniform_(weight, a=math.sqrt(5))
        else:
            init.trunc_normal_(weight, std=self.config.initializer_range)
        if weight_normed:
            init.copy_(module.parametrizations.weight.original0, _weight_norm_magnitude(weight))
        if module.bias is not None:
            init.zeros_(module.bias)


def _weight_norm_magnitude(weight: torch.Tensor) -> torch.Tensor:
    """The g of weight norm along dim 0: ||weight[i]|| shaped (out, 1, 1)."""
    return torch.linalg.vector_norm(weight, dim=tuple(range(1, weight.dim())), keepdim=True)


class VRVQModel(VRVQPreTrainedModel):
    """The VRVQ codec: encoder, importance subnet, masked residual VQ, decoder.

    Inference modes of `encode` (at most one argument): `level=l` (variable bitrate), `n_quantizers=n`
    (constant bitrate: the first n codebooks on every frame), `target_kbps=k` (per item, the level whose
    counted bitrate is closest to k without exceeding it); none of them: every codebook on every frame.
    """

    def __init__(self, config: VRVQConfig):
        super().__init__(config)
        self.encoder = Encoder(config.encoder_hidden_size, config.downsampling_ratios, config.hidden_size)
        self.importance_subnet = (
            ImportanceSubnet(config.hidden_size, config.importance_channels) if config.use_importance_subnet else None
        )
        self.quantizer = ResidualVectorQuantizer(
            config.hidden_size, config.n_codebooks, config.codebook_size, config.codebook_dim
        )
        self.decoder = Decoder(config.hidden_size, config.decoder_hidden_size, config.upsampling_ratios)
        if config.use_weight_norm:
            for conv in self._convolutions():
                parametrizations.weight_norm(conv)
        self.post_init()

    # ----------------------------------------------------------------------------------------- weight norm
    def _convolutions(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]

    def fold_weight_norm(self) -> VRVQModel:
        """Replaces every weight-normalised convolution by a plain one with the same weight (export form).
        Outputs are unchanged; `config.use_weight_norm` becomes False so a saved model reloads as plain."""
        for conv in self._convolutions():
            if parametrize.is_parametrized(conv, "weight"):
                parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
        self.config.use_weight_norm = False
        return self

    def folded_copy(self) -> VRVQModel:
        """A new model with plain (weight-norm folded) weights equal to this one's, in eval mode; this model
        is left untouched. (Folding a `copy.deepcopy` instead would break this model: the parametrized
        classes are shared between copies.) The global random state is left untouched too: the new model's
        throwaway initialisation runs on a forked generator, so exporting mid-training does not change the
        rest of the run."""
        config = copy.deepcopy(self.config)
        config.use_weight_norm = False
        with torch.random.fork_rng(devices=[]):  # built on the CPU, so only the CPU generator is drawn from
            plain = VRVQModel(config)
        modules = dict(self.named_modules())
        parameters = dict(self.named_parameters())
        with torch.no_grad():
            for name, parameter in plain.named_parameters():
                if name in parameters:
                    parameter.copy_(parameters[name])
            for name, module in plain.named_modules():
                if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                    module.weight.copy_(modules[name].weight)  # the parametrized weight, computed
        return plain.to(next(self.parameters()).device).eval()

    def apply_weight_norm(self) -> VRVQModel:
        """Weight-normalises every convolution (training form); inverse of `fold_weight_norm`."""
        for conv in self._convolutions():
            if not parametrize.is_parametrized(conv, "weight"):
                parametrizations.weight_norm(conv)
        self.config.use_weight_norm = True
        return self

    # ---------------------------------------------------------------------------------------------- inputs
    def _frames(self, input_values: torch.Tensor, padding_mask: torch.Tensor | None) -> _Frames:
        if not isinstance(input_values, torch.Tensor):
            raise TypeError(f"input_values must be a torch.Tensor of shape (batch, 1, samples), got {type(input_values)}")
        if input_values.dim() != 3 or input_values.shape[1] != 1:
            raise ValueError(
                f"input_values must have shape (batch, 1, samples) (mono), got {tuple(input_values.shape)}; "
                "use VRVQFeatureExtractor to batch and pad raw audio"
            )
        if not input_values.is_floating_point():
            raise ValueError(f"input_values must be floating point in [-1, 1], got dtype {input_values.dtype}")
        batch, _, samples = input_values.shape
        if samples == 0:
            raise ValueError("input_values is empty (0 samples)")
        if padding_mask is None:
            lengths = torch.full((batch,), samples, dtype=torch.long, device=input_values.device)
        else:
            lengths = _lengths_from_padding_mask(padding_mask, batch, samples).to(input_values.device)
        hop = self.config.hop_length
        padded = math.ceil(samples / hop) * hop
        waveform = nn.functional.pad(input_values, (0, padded - samples))
        if padding_mask is not None:  # whatever the caller put in the padding (NaN too), the model sees zeros
            steps = torch.arange(padded, device=waveform.device)
            waveform = waveform.masked_fill(steps[None, None, :] >= lengths[:, None, None], 0.0)
        if not torch.isfinite(waveform).all():
            raise ValueError("input_values contains NaN or Inf on real (unpadded) samples; expected finite audio in [-1, 1]")
        frames = _Frames(
            waveform=waveform,
            sample_lengths=lengths,
            frame_lengths=torch.div(lengths + hop - 1, hop, rounding_mode="floor"),
            n_frames=padded // hop,
            needs_mask=bool((lengths < padded).any()),
        )
        return frames

    def _importance(self, features: torch.Tensor, frames: _Frames) -> torch.Tensor | None:
        if self.importance_subnet is None:
            return None
        if self.config.detach_importance_input:
            features = features.detach()
        importance = self.importance_subnet(features, frames.frame_lengths if frames.needs_mask else None)
        threshold = self.config.silence_threshold_db
        if threshold is not None:
            importance = importance.masked_fill(silent_frames(frames.waveform, self.config.hop_length, threshold), 0.0)
        return importance

    def select_num_codebooks(
        self,
        importance: torch.Tensor | None,
        frame_valid: torch.Tensor,
        level: float | torch.Tensor | None = None,
        n_quantizers: int | None = None,
        target_kbps: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The inference rule: active codebooks per frame (B, F), 0 where `frame_valid` (B, F) is False, and
        the level per item (or None), from an importance map (B, F) and one of level / n_quantizers /
        target_kbps (none: all codebooks). `encode` uses it; chunked encoders apply it to a whole file."""
        config = self.config
        given = [name for name, v in (("level", level), ("n_quantizers", n_quantizers), ("target_kbps", target_kbps)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of level, n_quantizers, target_kbps; got {', '.join(given)}")
        batch = frame_valid.shape[0]
        if n_quantizers is not None:
            if isinstance(n_quantizers, bool) or not isinstance(n_quantizers, int) or not 1 <= n_quantizers <= config.n_codebooks:
                raise ValueError(f"n_quantizers must be an int in 1..{config.n_codebooks}, got {n_quantizers!r}")
            return n_quantizers * frame_valid.long(), None
        if level is None and target_kbps is None:
            return config.n_codebooks * frame_valid.long(), None
        if importance is None:
            raise ValueError(
                "this model has no importance subnet (use_importance_subnet=False): it is constant-bitrate; "
                "use n_quantizers instead of level or target_kbps"
            )
        if target_kbps is not None:
            if not math.isfinite(float(target_kbps)) or float(target_kbps) <= 0:
                raise ValueError(f"target_kbps must be a positive number, got {target_kbps!r}")
            level = level_for_bitrate(
                importance, frame_valid, float(target_kbps), config.n_codebooks, config.bits_per_code,
                config.side_info_bits, config.frame_rate,
            )
        level = torch.as_tensor(level, dtype=torch.float32, device=importance.device)
        if level.dim() == 0:
            level = level.expand(batch)
        if level.shape != (batch,) or not torch.isfinite(level).all() or (level < 0).any():
            raise ValueError(f"level must be a finite number >= 0 or a tensor of shape ({batch},), got {level}")
        scaled = scaled_importance(importance, level, config.n_codebooks)
        counts = hard_codebook_mask(scaled, config.n_codebooks).sum(dim=1)
        return counts * frame_valid.long(), level

    # --------------------------------------------------------------------------------------------- encode
    def encode(
        self,
        input_values: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        level: float | torch.Tensor | None = None,
        n_quantizers: int | None = None,
        target_kbps: float | None = None,
        return_dict: bool | None = None,
    ) -> VRVQEncoderOutput | tuple:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch_size, 1, samples)`): audio in [-1, 1] at
            `config.sampling_rate`; any length (padded internally to a multiple of `hop_length`).
        padding_mask (`torch.Tensor` of shape `(batch_size, samples)`, *optional*): 1 on valid samples, 0 on
            right padding. Codes of the valid frames do not depend on the padding.
        level (`float` or `torch.Tensor` of shape `(batch_size,)`, *optional*): variable-bitrate level l.
        n_quantizers (`int`, *optional*): constant bitrate with this many codebooks.
        target_kbps (`float`, *optional*): find per item the level meeting this bitrate without exceeding it.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        frames = self._frames(input_values, padding_mask)
        frame_valid = frames.frame_valid
        latent, features = self.encoder(frames.waveform, frames.sample_lengths if frames.needs_mask else None)
        importance = self._importance(features, frames)
        counts, used_level = self.select_num_codebooks(importance, frame_valid, level, n_quantizers, target_kbps)
        mask = prefix_mask(counts, self.config.n_codebooks)
        quantized = self.quantizer(latent, mask.to(latent.dtype))
        output = VRVQEncoderOutput(
            audio_codes=quantized.codes * mask,
            codebook_mask=mask,
            num_codebooks=counts,
            importance_map=importance,
            quantized_representation=quantized.quantized,
            bitrate_kbps=self._bitrate(counts),
            level=used_level,
            padding_mask=frames.padding_mask(),
        )
        return output if return_dict else output.to_tuple()

    def _bitrate(self, counts: torch.Tensor) -> torch.Tensor:
        c = self.config
        return bitrate_kbps(counts, c.bits_per_code, c.side_info_bits, c.frame_rate)

    # --------------------------------------------------------------------------------------------- decode
    def decode(
        self,
        audio_codes: torch.Tensor | None = None,
        codebook_mask: torch.Tensor | None = None,
        num_codebooks: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        quantized_representation: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> VRVQDecoderOutput | tuple:
        r"""
        audio_codes (`torch.LongTensor` of shape `(batch_size, n, frames)`, n <= n_codebooks): codes to decode.
        codebook_mask (`torch.BoolTensor` of shape `(batch_size, n, frames)`, *optional*): which codes count.
        num_codebooks (`torch.LongTensor` of shape `(batch_size, frames)`, *optional*): active codebooks per
            frame (the first ones); 0 marks a padded frame. Give at most one of the two; none: all codes count.
        padding_mask (`torch.Tensor` of shape `(batch_size, samples)`, *optional*): trims the output of each
            item to its valid length (as returned by `encode`).
        quantized_representation (`torch.FloatTensor` of shape `(batch_size, hidden_size, frames)`, *optional*):
            decode a quantized latent instead of codes.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if (audio_codes is None) == (quantized_representation is None):
            raise ValueError("give exactly one of audio_codes or quantized_representation")
        if audio_codes is not None:
            mask = self._decoding_mask(audio_codes, codebook_mask, num_codebooks)
            frame_valid = mask.any(dim=1)
            codes = audio_codes.masked_fill(~mask, 0)
            latent = self.quantizer.from_codes(codes, mask)
        else:
            latent = quantized_representation
            frame_valid = torch.ones(latent.shape[0], latent.shape[-1], dtype=torch.bool, device=latent.device)
        frame_lengths = frame_valid.sum(dim=1)
        if not torch.equal(frame_valid, torch.arange(frame_valid.shape[1], device=frame_valid.device)[None] < frame_lengths[:, None]):
            raise ValueError("frames without any active codebook (padding) may only come at the end of an item")
        full = bool((frame_lengths == frame_valid.shape[1]).all())
        audio = self.decoder(latent, None if full else frame_lengths)
        if padding_mask is not None:
            lengths = _lengths_from_padding_mask(padding_mask, audio.shape[0], padding_mask.shape[-1]).to(audio.device)
            if (lengths > audio.shape[-1]).any():
                raise ValueError(
                    f"padding_mask marks up to {int(lengths.max())} valid samples but the codes decode to "
                    f"{audio.shape[-1]}"
                )
            steps = torch.arange(int(lengths.max()), device=audio.device)
            audio = audio[..., : steps.numel()] * (steps[None, :] < lengths[:, None]).unsqueeze(1).to(audio.dtype)
        output = VRVQDecoderOutput(audio_values=audio)
        return output if return_dict else output.to_tuple()

    def _decoding_mask(
        self, audio_codes: torch.Tensor, codebook_mask: torch.Tensor | None, num_codebooks: torch.Tensor | None
    ) -> torch.Tensor:
        config = self.config
        if audio_codes.dim() != 3 or not 1 <= audio_codes.shape[1] <= config.n_codebooks:
            raise ValueError(
                f"audio_codes must have shape (batch, n <= {config.n_codebooks}, frames), got {tuple(audio_codes.shape)}"
            )
        if audio_codes.is_floating_point():
            raise ValueError(f"audio_codes must be integer codes, got dtype {audio_codes.dtype}")
        if codebook_mask is not None and num_codebooks is not None:
            raise ValueError("give at most one of codebook_mask and num_codebooks")
        batch, n, frames = audio_codes.shape
        if num_codebooks is not None:
            if num_codebooks.shape != (batch, frames) or (num_codebooks < 0).any() or (num_codebooks > n).any():
                raise ValueError(
                    f"num_codebooks must have shape ({batch}, {frames}) with values in 0..{n}, got shape "
                    f"{tuple(num_codebooks.shape)}, range {int(num_codebooks.min())}..{int(num_codebooks.max())}"
                )
            mask = prefix_mask(num_codebooks.to(audio_codes.device), n)
        elif codebook_mask is not None:
            if codebook_mask.shape != audio_codes.shape:
                raise ValueError(
                    f"codebook_mask must have the shape of audio_codes {tuple(audio_codes.shape)}, got {tuple(codebook_mask.shape)}"
                )
            mask = codebook_mask.to(device=audio_codes.device, dtype=torch.bool)
        else:
            mask = torch.ones_like(audio_codes, dtype=torch.bool)
        active = audio_codes[mask]
        if active.numel() and (int(active.min()) < 0 or int(active.max()) >= config.codebook_size):
            raise ValueError(
                f"audio_codes must be in 0..{config.codebook_size - 1} where they are active, got "
                f"{int(active.min())}..{int(active.max())}"
            )
        return mask

    # -------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        input_values: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        level: float | torch.Tensor | None = None,
        n_quantizers: int | None = None,
        target_kbps: float | None = None,
        return_dict: bool | None = None,
    ) -> VRVQOutput | tuple:
        r"""
        In training mode: the VRVQ recipe (a random level per item, a `full_codebook_rate` share of the batch
        on all codebooks, the straight-through mask with the configured surrogate) and the model's loss terms;
        the trainer adds the reconstruction and adversarial losses. In eval mode: `encode` then `decode` with
        the same arguments as `encode`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if self.training:
            if n_quantizers is not None or target_kbps is not None:
                raise ValueError("in training mode only `level` may be given (it overrides the random levels)")
            output = self._training_forward(input_values, padding_mask, level)
        else:
            encoded = self.encode(input_values, padding_mask, level, n_quantizers, target_kbps, return_dict=True)
            decoded = self.decode(encoded.audio_codes, codebook_mask=encoded.codebook_mask)
            audio = decoded.audio_values[..., : input_values.shape[-1]]
            audio = audio * encoded.padding_mask[:, None, : input_values.shape[-1]].to(audio.dtype)
            zero = audio.new_zeros(())
            output = VRVQOutput(
                loss=zero, audio_values=audio, commitment_loss=zero, codebook_loss=zero, rate_loss=zero,
                latent_loss=zero,
                **{k: getattr(encoded, k) for k in (
                    "audio_codes", "codebook_mask", "num_codebooks", "importance_map",
                    "quantized_representation", "bitrate_kbps", "level",
                )},
            )
        return output if return_dict else output.to_tuple()

    def sample_levels(self, batch_size: int, device: torch.device | None = None) -> torch.Tensor:
        """Random training levels (batch_size,) from the configured range and distribution."""
        low, high = self.config.level_min, self.config.level_max
        u = torch.rand(batch_size, device=device)
        if self.config.level_distribution == "log_uniform":
            return torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        return low + u * (high - low)

    def _training_forward(
        self, input_values: torch.Tensor, padding_mask: torch.Tensor | None, level: float | torch.Tensor | None
    ) -> VRVQOutput:
        config = self.config
        frames = self._frames(input_values, padding_mask)
        frame_valid = frames.frame_valid
        valid = frame_valid.to(input_values.dtype)
        batch, device = input_values.shape[0], input_values.device
        latent, features = self.encoder(frames.waveform, frames.sample_lengths if frames.needs_mask else None)
        importance = self._importance(features, frames)
        rate_loss = latent.new_zeros(())
        used_level = None
        if importance is not None:
            used_level = self.sample_levels(batch, device) if level is None else torch.as_tensor(
                level, dtype=torch.float32, device=device
            ).expand(batch)
            scaled = scaled_importance(importance, used_level, config.n_codebooks)
            mask = straight_through_mask(scaled, config.n_codebooks, config.surrogate, config.surrogate_alpha)
            full = torch.rand(batch, device=device) < config.full_codebook_rate
            mask = torch.where(full[:, None, None], torch.ones_like(mask), mask)
            masked_frames = valid * (~full)[:, None].to(valid.dtype)
            if masked_frames.sum() > 0:
                rate_loss = (importance * masked_frames).sum() / masked_frames.sum()
        else:
            counts = torch.full((batch,), config.n_codebooks, device=device)
            dropped = torch.rand(batch, device=device) < config.quantizer_dropout
            counts = torch.where(dropped, torch.randint(1, config.n_codebooks + 1, (batch,), device=device), counts)
            mask = prefix_mask(counts[:, None].expand(batch, frame_valid.shape[1]), config.n_codebooks).to(latent.dtype)
        mask = mask * valid[:, None, :]
        quantized = self.quantizer(latent, mask)
        weights = mask.detach()
        frame_count = valid.sum().clamp(min=1)
        commitment_loss = (quantized.commitment_loss * weights).sum() / frame_count
        codebook_loss = (quantized.codebook_loss * weights).sum() / frame_count
        latent_loss = latent.new_zeros(())
        if config.latent_loss_weight > 0:
            energy = latent.detach().pow(2).sum(dim=1)  # (B, F)
            item_energy = (energy * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)  # (B,)
            item_energy = item_energy.clamp(min=torch.finfo(energy.dtype).tiny)
            error = quantized.remaining_energy.mean(dim=1) / item_energy[:, None]  # (B, F), mean over prefixes
            latent_loss = (error * valid).sum() / frame_count
        audio = self.decoder(quantized.quantized, frames.frame_lengths if frames.needs_mask else None)
        audio = audio[..., : input_values.shape[-1]]
        hard = weights > 0.5
        counts = hard.sum(dim=1)
        loss = (
            config.commitment_loss_weight * commitment_loss
            + config.codebook_loss_weight * codebook_loss
            + config.rate_loss_weight * rate_loss
            + config.latent_loss_weight * latent_loss
        )
        return VRVQOutput(
            loss=loss,
            audio_values=audio,
            commitment_loss=commitment_loss,
            codebook_loss=codebook_loss,
            rate_loss=rate_loss,
            latent_loss=latent_loss,
            audio_codes=quantized.codes * hard,
            codebook_mask=hard,
            num_codebooks=counts,
            importance_map=importance,
            quantized_representation=quantized.quantized,
            bitrate_kbps=self._bitrate(counts),
            level=used_level,
        )


def _lengths_from_padding_mask(padding_mask: torch.Tensor, batch: int, samples: int) -> torch.Tensor:
    """Valid samples per item (B,) from a right-padding mask (B, T); checks its shape and form."""
    if not isinstance(padding_mask, torch.Tensor) or padding_mask.shape != (batch, samples):
        shape = tuple(padding_mask.shape) if isinstance(padding_mask, torch.Tensor) else type(padding_mask)
        raise ValueError(f"padding_mask must be a tensor of shape ({batch}, {samples}), got {shape}")
    mask = padding_mask.bool()
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        raise ValueError("padding_mask must be 1 on a prefix of each item and 0 after it (right padding only)")
    lengths = mask.sum(dim=1)
    if (lengths == 0).any():
        raise ValueError(f"padding_mask marks no valid sample for item(s) {torch.nonzero(lengths == 0).flatten().tolist()}")
    return lengths


__all__ = ["VRVQModel", "VRVQPreTrainedModel", "VRVQEncoderOutput", "VRVQDecoderOutput", "VRVQOutput"]
