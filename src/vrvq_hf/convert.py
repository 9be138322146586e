"""Build a VRVQModel from a DAC model: a transformers `DacModel` (or its state dict) or an original
descript-audio-codec checkpoint file. The codec weights are copied (weight norm folded); the importance
subnet is newly initialised, so level / target_kbps modes need training, while constant-bitrate mode with
all codebooks reproduces the DAC model it came from."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch

from .configuration_vrvq import VRVQConfig
from .modeling_vrvq import VRVQModel

# (pattern, replacement) over parameter names, tried in order; first match wins.
_TRANSFORMERS_DAC_NAMES = [
    (r"^encoder\.conv1\.", "encoder.input_conv."),
    (r"^encoder\.conv2\.", "encoder.output_conv."),
    (r"^encoder\.snake1\.", "encoder.output_act."),
    (r"^encoder\.block\.(\d+)\.res_unit(\d)\.", lambda m: f"encoder.blocks.{m[1]}.residual_units.{int(m[2]) - 1}."),
    (r"^encoder\.block\.(\d+)\.snake1\.", r"encoder.blocks.\1.act."),
    (r"^encoder\.block\.(\d+)\.conv1\.", r"encoder.blocks.\1.downsample."),
    (r"^decoder\.conv1\.", "decoder.input_conv."),
    (r"^decoder\.conv2\.", "decoder.output_conv."),
    (r"^decoder\.snake1\.", "decoder.output_act."),
    (r"^decoder\.block\.(\d+)\.res_unit(\d)\.", lambda m: f"decoder.blocks.{m[1]}.residual_units.{int(m[2]) - 1}."),
    (r"^decoder\.block\.(\d+)\.snake1\.", r"decoder.blocks.\1.act."),
    (r"^decoder\.block\.(\d+)\.conv_t1\.", r"decoder.blocks.\1.upsample."),
    (r"^quantizer\.quantizers\.", "quantizer.stages."),
]
# Inside residual units both naming schemes then need their layer names mapped.
_RESIDUAL_UNIT_LAYERS = {"snake1": "act1", "conv1": "conv1", "snake2": "act2", "conv2": "conv2"}


def _rename_transformers_key(key: str) -> str:
    for pattern, replacement in _TRANSFORMERS_DAC_NAMES:
        if re.match(pattern, key):
            key = re.sub(pattern, replacement, key)
            break
    else:
        raise KeyError(f"unexpected DacModel parameter {key!r}")
    return re.sub(
        r"(residual_units\.\d+\.)(snake1|conv1|snake2|conv2)\.", lambda m: m[1] + _RESIDUAL_UNIT_LAYERS[m[2]] + ".", key
    )


def _rename_original_key(key: str, depth: int) -> str:
    """descript-audio-codec names (nn.Sequential indices) -> ours; `depth` = number of encoder blocks."""
    unit_layers = {"0": "act1", "1": "conv1", "2": "act2", "3": "conv2"}
    if m := re.match(r"^encoder\.block\.(\d+)\.(.*)$", key):
        index, rest = int(m[1]), m[2]
        if index == 0:
            return f"encoder.input_conv.{rest}"
        if index == depth + 1:
            return f"encoder.output_act.{rest}"
        if index == depth + 2:
            return f"encoder.output_conv.{rest}"
        if u := re.match(r"^block\.([012])\.block\.([0-3])\.(.*)$", rest):
            return f"encoder.blocks.{index - 1}.residual_units.{u[1]}.{unit_layers[u[2]]}.{u[3]}"
        if u := re.match(r"^block\.3\.(.*)$", rest):
            return f"encoder.blocks.{index - 1}.act.{u[1]}"
        if u := re.match(r"^block\.4\.(.*)$", rest):
            return f"encoder.blocks.{index - 1}.downsample.{u[1]}"
    if m := re.match(r"^decoder\.model\.(\d+)\.(.*)$", key):
        index, rest = int(m[1]), m[2]
        if index == 0:
            return f"decoder.input_conv.{rest}"
        if index == depth + 1:
            return f"decoder.output_act.{rest}"
        if index == depth + 2:
            return f"decoder.output_conv.{rest}"
        if u := re.match(r"^block\.0\.(.*)$", rest):
            return f"decoder.blocks.{index - 1}.act.{u[1]}"
        if u := re.match(r"^block\.1\.(.*)$", rest):
            return f"decoder.blocks.{index - 1}.upsample.{u[1]}"
        if u := re.match(r"^block\.([234])\.block\.([0-3])\.(.*)$", rest):
            return f"decoder.blocks.{index - 1}.residual_units.{int(u[1]) - 2}.{unit_layers[u[2]]}.{u[3]}"
    if key.startswith("quantizer.quantizers."):
        return "quantizer.stages." + key[len("quantizer.quantizers.") :]
    raise KeyError(f"unexpected descript-audio-codec parameter {key!r}")


def fold_weight_norm_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replaces weight-norm pairs (`weight_g`/`weight_v`, or `parametrizations.weight.original0/1`) by the
    plain `weight` = g * v / ||v|| (norm over all dims but the first)."""
    pairs = {
        ".weight_g": ".weight_v",
        ".parametrizations.weight.original0": ".parametrizations.weight.original1",
    }
    folded: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for g_suffix, v_suffix in pairs.items():
            if key.endswith(g_suffix):
                prefix = key[: -len(g_suffix)]
                direction = state_dict[prefix + v_suffix].float()
                norm = torch.linalg.vector_norm(direction, dim=tuple(range(1, direction.dim())), keepdim=True)
                folded[prefix + ".weight"] = value.float() * direction / norm
                break
            if key.endswith(v_suffix):
                break
        else:
            folded[key] = value
    return folded


def default_importance_channels(hidden_size: int) -> list[int]:
    """The paper's subnet widths (1024, 512, 128, 32, 8, 1 for a 1024-channel latent), scaled to the latent."""
    return [max(1, hidden_size // d) for d in (1, 2, 8, 32, 128)] + [1]


def _load_into_new_model(config: VRVQConfig, state_dict: Mapping[str, torch.Tensor]) -> VRVQModel:
    model = VRVQModel(config)
    own = model.state_dict()
    kept = {k: v for k, v in state_dict.items() if not _is_dropped_codebook(k, config.n_codebooks)}
    unexpected = sorted(set(kept) - set(own))
    if unexpected:
        raise ValueError(f"the DAC weights have parameters this VRVQ config lacks: {unexpected[:5]}")
    for key, value in kept.items():
        if own[key].shape != value.shape:
            raise ValueError(f"shape mismatch for {key}: DAC {tuple(value.shape)} vs VRVQ {tuple(own[key].shape)}")
    missing = [k for k in own if k not in kept and not k.startswith("importance_subnet.")]
    if missing:
        raise ValueError(f"the DAC weights lack parameters this VRVQ config needs: {missing[:5]}")
    model.load_state_dict(kept, strict=False)
    return model.eval()


def _is_dropped_codebook(key: str, n_codebooks: int) -> bool:
    m = re.match(r"^quantizer\.stages\.(\d+)\.", key)
    return m is not None and int(m[1]) >= n_codebooks


def from_transformers_dac(
    dac_model_or_state_dict, dac_config=None, n_codebooks: int | None = None, **config_overrides
) -> VRVQModel:
    """A VRVQModel with the weights of a transformers `DacModel` (or of its state dict plus `DacConfig`).

    n_codebooks: keep only the first n of DAC's codebooks (the paper uses 8 of DAC's 9); default all.
    config_overrides: other VRVQConfig fields (e.g. importance_channels, surrogate).
    """
    if isinstance(dac_model_or_state_dict, Mapping):
        if dac_config is None:
            raise ValueError("converting a DAC state dict needs its DacConfig (dac_config=...)")
        state_dict = dac_model_or_state_dict
    else:
        dac_config = dac_model_or_state_dict.config
        state_dict = dac_model_or_state_dict.state_dict()
    expected_hidden = dac_config.encoder_hidden_size * 2 ** len(dac_config.downsampling_ratios)
    if dac_config.hidden_size != expected_hidden:
        raise ValueError(f"DAC latent width {dac_config.hidden_size} != encoder width * 2**depth = {expected_hidden}")
    config = VRVQConfig(
        sampling_rate=dac_config.sampling_rate,
        encoder_hidden_size=dac_config.encoder_hidden_size,
        downsampling_ratios=list(dac_config.downsampling_ratios),
        decoder_hidden_size=dac_config.decoder_hidden_size,
        n_codebooks=n_codebooks or dac_config.n_codebooks,
        codebook_size=dac_config.codebook_size,
        codebook_dim=dac_config.codebook_dim,
        **{"use_weight_norm": False, "importance_channels": default_importance_channels(expected_hidden), **config_overrides},
    )
    folded = fold_weight_norm_keys(state_dict)
    return _load_into_new_model(config, {_rename_transformers_key(k): v for k, v in folded.items()})


def from_original_dac_checkpoint(
    path: str | os.PathLike, n_codebooks: int | None = None, **config_overrides
) -> VRVQModel:
    """A VRVQModel from a descript-audio-codec `.pth` file ({"state_dict", "metadata": {"kwargs"}}),
    read with `torch.load(weights_only=True)` (no code in the file is run)."""
    checkpoint = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a descript-audio-codec checkpoint (no 'state_dict' entry)")
    kwargs = dict(checkpoint.get("metadata", {}).get("kwargs", {}))
    encoder_rates = list(kwargs.get("encoder_rates", [2, 4, 8, 8]))
    decoder_rates = list(kwargs.get("decoder_rates", encoder_rates[::-1]))
    if decoder_rates != encoder_rates[::-1]:
        raise ValueError(f"decoder_rates {decoder_rates} must be encoder_rates {encoder_rates} reversed")
    encoder_dim = int(kwargs.get("encoder_dim", 64))
    latent = kwargs.get("latent_dim") or encoder_dim * 2 ** len(encoder_rates)
    if latent != encoder_dim * 2 ** len(encoder_rates):
        raise ValueError(f"latent_dim {latent} must equal encoder_dim * 2**len(encoder_rates)")
    config = VRVQConfig(
        sampling_rate=int(kwargs.get("sample_rate", 44100)),
        encoder_hidden_size=encoder_dim,
        downsampling_ratios=encoder_rates,
        decoder_hidden_size=int(kwargs.get("decoder_dim", 1536)),
        n_codebooks=n_codebooks or int(kwargs.get("n_codebooks", 9)),
        codebook_size=int(kwargs.get("codebook_size", 1024)),
        codebook_dim=int(kwargs.get("codebook_dim", 8)),
        **{"use_weight_norm": False, "importance_channels": default_importance_channels(latent), **config_overrides},
    )
    folded = fold_weight_norm_keys(checkpoint["state_dict"])
    depth = len(encoder_rates)
    return _load_into_new_model(config, {_rename_original_key(k, depth): v for k, v in folded.items()})
