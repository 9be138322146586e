import pytest
import torch

from vrvq_hf import VRVQModel
from vrvq_hf.training.widen import channel_map, split_inputs, widen_decoder

from .conftest import load_script, speech_like, tiny_config


@pytest.fixture
def trained_looking_model() -> VRVQModel:
    """A tiny model whose decoder weights are far from their initialisation (alphas kept positive)."""
    torch.manual_seed(0)
    model = VRVQModel(tiny_config())
    with torch.no_grad():
        for name, parameter in model.decoder.named_parameters():
            noise = 0.3 * torch.randn_like(parameter)
            parameter.add_(noise.abs() if name.endswith("alpha") else 0.3 * noise)
    return model.eval()


@pytest.mark.parametrize("width", [24, 32, 48])  # 1.5x (some channels copied once, some twice), 2x, 3x
def test_a_widened_decoder_decodes_as_the_original(trained_looking_model, width):
    model = trained_looking_model
    wider = widen_decoder(model, width, noise=0.05)
    assert wider.config.decoder_hidden_size == width and model.config.decoder_hidden_size == 16
    assert wider.decoder.input_conv.out_channels == width and wider.decoder.output_act.alpha.shape[1] == width // 4
    audio = speech_like(0.25)
    with torch.no_grad():
        before, after = model(audio), wider(audio, level=1.0)
        reference = model(audio, level=1.0)
    assert before.audio_values.abs().max() > 0.05  # a decoder that does something
    torch.testing.assert_close(after.audio_values, reference.audio_values, atol=2e-6, rtol=1e-4)
    torch.testing.assert_close(after.audio_codes, reference.audio_codes)  # encoder, quantizer, subnet as they were
    plain = model.folded_copy()  # the tiny model is weight-normalised, the widened one plain
    for part in ("encoder", "quantizer", "importance_subnet"):
        kept, copied = getattr(plain, part).state_dict(), getattr(wider, part).state_dict()
        assert kept.keys() == copied.keys() and all(torch.equal(kept[k], copied[k]) for k in kept), part


def test_split_noise_breaks_the_symmetry_of_the_copies(trained_looking_model):
    audio = speech_like(0.25)
    for noise, apart in ((0.0, False), (0.05, True)):
        wider = widen_decoder(trained_looking_model, 32, noise=noise).train()
        wider.zero_grad()
        wider(audio, level=2.0).audio_values.pow(2).mean().backward()
        grad = wider.decoder.input_conv.weight.grad  # rows j and j + 16 are copies of old row j
        assert torch.allclose(grad[:16], grad[16:], atol=1e-9) != apart


def test_split_inputs_keeps_every_group_sum():
    weight = torch.randn(5, 6, 3)
    widened = split_inputs(weight, 10, dim=1, noise=0.5, generator=torch.Generator().manual_seed(1))
    assert widened.shape == (5, 10, 3)
    source = channel_map(6, 10)
    summed = torch.zeros_like(weight).index_add_(1, source, widened)
    torch.testing.assert_close(summed, weight)
    assert not torch.allclose(widened[:, 0], widened[:, 6])  # copies of channel 0 differ


def test_widening_refuses_a_narrower_or_invalid_width(trained_looking_model):
    with pytest.raises(ValueError, match="at least the model's 16"):
        widen_decoder(trained_looking_model, 8)
    with pytest.raises(ValueError, match="decoder_hidden_size"):
        widen_decoder(trained_looking_model, 18)  # not a multiple of 2**2
    with pytest.raises(ValueError, match="at least the old one"):
        channel_map(4, 3)


def test_widen_decoder_script_saves_a_loadable_model(trained_looking_model, tmp_path, capsys):
    script = load_script("widen_decoder")
    trained_looking_model.save_pretrained(tmp_path / "small")
    out = tmp_path / "wide"
    args = [str(tmp_path / "small"), "--decoder-hidden-size", "32", "--output", str(out), "--set", "silence_threshold_db=-50"]
    assert script.main(args) == 0
    assert "16 -> 32 channels" in capsys.readouterr().out
    loaded = VRVQModel.from_pretrained(out).eval()
    assert loaded.config.decoder_hidden_size == 32 and loaded.config.silence_threshold_db == -50
    assert (out / "preprocessor_config.json").is_file()
    assert script.main([str(tmp_path / "nothing"), "--decoder-hidden-size", "32", "--output", str(out)]) == 2
    assert script.main([str(tmp_path / "small"), "--decoder-hidden-size", "8", "--output", str(out)]) == 2
    assert "at least the model's 16" in capsys.readouterr().err
