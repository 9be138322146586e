"""Conversion from DAC, checked against transformers' DacModel as an independent reference."""

import re

import pytest
import torch
from transformers import DacConfig, DacModel

from vrvq_hf.convert import fold_weight_norm_keys, from_original_dac_checkpoint, from_transformers_dac

from .conftest import speech_like

DAC_TINY = dict(
    encoder_hidden_size=4, downsampling_ratios=[2, 4, 2], decoder_hidden_size=32, n_codebooks=5,
    codebook_size=32, codebook_dim=4, sampling_rate=16000,
)


@pytest.fixture
def dac():
    torch.manual_seed(0)
    model = DacModel(DacConfig(**DAC_TINY)).eval()
    with torch.no_grad():
        # transformers initialises codebooks at std 0.02 and biases at 0; give them trained-like values. With
        # zero biases, digital silence gives an exactly zero latent where every code ties, and DAC's and
        # transformers' distance formulas break that tie differently (so does ours): not a property to match.
        for stage in model.quantizer.quantizers:
            stage.codebook.weight.normal_()
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                module.bias.normal_(std=0.05)
    return model


def _assert_reproduces(vrvq, dac, n_codebooks):
    x = torch.cat([speech_like(0.2, seed=s) for s in range(2)])[..., :3200]  # a multiple of DAC's hop (16)
    with torch.no_grad():
        reference = dac.encode(x, n_quantizers=n_codebooks)
        reference_audio = dac.decode(audio_codes=reference.audio_codes[:, :n_codebooks]).audio_values
        ours = vrvq.encode(x, n_quantizers=n_codebooks)
        ours_audio = vrvq.decode(ours.audio_codes, codebook_mask=ours.codebook_mask).audio_values
    assert torch.equal(ours.audio_codes[:, :n_codebooks], reference.audio_codes[:, :n_codebooks])
    torch.testing.assert_close(ours_audio[:, 0], reference_audio, atol=1e-5, rtol=0)
    with torch.no_grad():  # the forward pass (DAC decodes its quantized latent) agrees too
        torch.testing.assert_close(vrvq(x, n_quantizers=n_codebooks).audio_values[:, 0], dac(x, n_quantizers=n_codebooks).audio_values, atol=1e-5, rtol=0)


@pytest.mark.parametrize("n", [1, 3, 5])
def test_converted_transformers_dac_reproduces_it(dac, n):
    vrvq = from_transformers_dac(dac)
    assert vrvq.config.n_codebooks == 5 and vrvq.config.hop_length == 16
    _assert_reproduces(vrvq, dac, n)


def test_conversion_from_a_weight_normed_state_dict_and_fewer_codebooks(dac):
    reference_state = {k: v.clone() for k, v in dac.state_dict().items()}
    dac.apply_weight_norm()
    state = dac.state_dict()
    assert any("parametrizations.weight.original0" in k for k in state)
    vrvq = from_transformers_dac(state, dac_config=dac.config, n_codebooks=4)
    assert vrvq.config.n_codebooks == 4 and len(vrvq.quantizer.stages) == 4
    plain = DacModel(dac.config).eval()
    plain.load_state_dict(reference_state)
    _assert_reproduces(vrvq, plain, 4)


def _to_original_names(state):
    """transformers DacModel names -> descript-audio-codec names, with legacy weight_g / weight_v."""
    depth = len(DAC_TINY["downsampling_ratios"])
    unit = {"snake1": "0", "conv1": "1", "snake2": "2", "conv2": "3"}
    renamed = {}
    for key, value in state.items():
        k = key
        k = re.sub(r"^encoder\.conv1\.", "encoder.block.0.", k)
        k = re.sub(r"^encoder\.snake1\.", f"encoder.block.{depth + 1}.", k)
        k = re.sub(r"^encoder\.conv2\.", f"encoder.block.{depth + 2}.", k)
        k = re.sub(r"^encoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.",
                   lambda m: f"encoder.block.{int(m[1]) + 1}.block.{int(m[2]) - 1}.block.{unit[m[3]]}.", k)
        k = re.sub(r"^encoder\.block\.(\d+)\.snake1\.", lambda m: f"encoder.block.{int(m[1]) + 1}.block.3.", k)
        k = re.sub(r"^encoder\.block\.(\d+)\.conv1\.", lambda m: f"encoder.block.{int(m[1]) + 1}.block.4.", k)
        k = re.sub(r"^decoder\.conv1\.", "decoder.model.0.", k)
        k = re.sub(r"^decoder\.snake1\.", f"decoder.model.{depth + 1}.", k)
        k = re.sub(r"^decoder\.conv2\.", f"decoder.model.{depth + 2}.", k)
        k = re.sub(r"^decoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.",
                   lambda m: f"decoder.model.{int(m[1]) + 1}.block.{int(m[2]) + 1}.block.{unit[m[3]]}.", k)
        k = re.sub(r"^decoder\.block\.(\d+)\.snake1\.", lambda m: f"decoder.model.{int(m[1]) + 1}.block.0.", k)
        k = re.sub(r"^decoder\.block\.(\d+)\.conv_t1\.", lambda m: f"decoder.model.{int(m[1]) + 1}.block.1.", k)
        if k.endswith(".weight") and value.dim() == 3:  # a convolution: store as weight norm pair
            g = torch.linalg.vector_norm(value, dim=(1, 2), keepdim=True)
            renamed[k[: -len("weight")] + "weight_g"] = g
            renamed[k[: -len("weight")] + "weight_v"] = value * 3.0  # any positive scale of v gives the same weight
        else:
            renamed[k] = value
    return renamed


def test_converted_original_checkpoint_reproduces_dac(dac, tmp_path):
    checkpoint = {
        "state_dict": _to_original_names(dac.state_dict()),
        "metadata": {"kwargs": {
            "encoder_dim": 4, "encoder_rates": [2, 4, 2], "latent_dim": None, "decoder_dim": 32,
            "decoder_rates": [2, 4, 2], "n_codebooks": 5, "codebook_size": 32, "codebook_dim": 4,
            "quantizer_dropout": 0.0, "sample_rate": 16000,
        }},
    }
    path = tmp_path / "weights.pth"
    torch.save(checkpoint, path)
    vrvq = from_original_dac_checkpoint(path)
    _assert_reproduces(vrvq, dac, 5)


def test_conversion_errors(dac, tmp_path):
    with pytest.raises(ValueError, match="needs its DacConfig"):
        from_transformers_dac(dac.state_dict())
    torch.save({"weights": 1}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a descript-audio-codec checkpoint"):
        from_original_dac_checkpoint(tmp_path / "bad.pth")
    with pytest.raises(KeyError, match="unexpected DacModel parameter"):
        from_transformers_dac({"foo.weight": torch.zeros(1)}, dac_config=dac.config)


def test_fold_weight_norm_keys():
    v = torch.randn(3, 2, 5)
    g = torch.rand(3, 1, 1) + 0.5
    folded = fold_weight_norm_keys({"conv.weight_g": g, "conv.weight_v": v, "conv.bias": torch.zeros(3)})
    assert set(folded) == {"conv.weight", "conv.bias"}
    norms = torch.linalg.vector_norm(folded["conv.weight"], dim=(1, 2), keepdim=True)
    torch.testing.assert_close(norms, g)


def test_converted_model_has_a_fresh_importance_subnet(dac):
    vrvq = from_transformers_dac(dac)
    with torch.no_grad():
        out = vrvq.encode(speech_like(0.1), level=0.5)
    assert out.importance_map is not None and (out.num_codebooks >= 1).all()
    assert vrvq.config.importance_channels[-1] == 1
