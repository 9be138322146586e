import math

import pytest

from vrvq_hf import VRVQConfig

from .conftest import tiny_config


def test_defaults_are_the_papers_model():
    c = VRVQConfig()
    assert (c.sampling_rate, c.encoder_hidden_size, c.decoder_hidden_size) == (44100, 64, 1536)
    assert c.downsampling_ratios == [2, 4, 8, 8] and c.upsampling_ratios == [8, 8, 4, 2]
    assert (c.n_codebooks, c.codebook_size, c.codebook_dim) == (8, 1024, 8)
    assert c.importance_channels == [1024, 512, 128, 32, 8, 1]
    assert (c.surrogate, c.surrogate_alpha) == ("logcosh", 2.0)
    assert (c.level_min, c.level_max, c.level_distribution) == (0.125, 6.0, "uniform")
    assert (c.full_codebook_rate, c.rate_loss_weight, c.quantizer_dropout) == (0.25, 2.0, 0.0)
    assert (c.commitment_loss_weight, c.codebook_loss_weight) == (0.25, 1.0)
    assert c.detach_importance_input is False


def test_derived_properties_follow_spec_section_6():
    c = VRVQConfig()
    assert c.hop_length == 512 and c.hidden_size == 1024
    assert c.frame_rate == pytest.approx(86.1328125)
    assert c.bits_per_code == 10 and c.side_info_bits == 3
    payload = 8 * 10 * 44100 / 512 / 1000
    assert payload == pytest.approx(6.890625)
    assert c.side_info_kbps == pytest.approx(3 * 44100 / 512 / 1000)  # 0.258, not the poster's 0.238
    assert c.max_kbps == pytest.approx(payload + c.side_info_kbps)
    assert c.min_kbps == pytest.approx(13 * 44100 / 512 / 1000)
    assert VRVQConfig(n_codebooks=1).side_info_bits == 0
    assert VRVQConfig(n_codebooks=5).side_info_bits == math.ceil(math.log2(5))


def test_save_load_round_trip(tmp_path):
    c = tiny_config(surrogate="square", level_distribution="log_uniform")
    c.save_pretrained(tmp_path)
    loaded = VRVQConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == c.to_dict()
    assert loaded.hop_length == 8


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("codebook_size", 1000, "power of two"),
        ("n_codebooks", 0, ">= 1"),
        ("level_min", 6.0, "level_min < level_max"),
        ("level_min", 0.0, "level_min"),
        ("surrogate", "relu", "surrogate"),
        ("surrogate_alpha", 0.0, "surrogate_alpha"),
        ("level_distribution", "normal", "level_distribution"),
        ("full_codebook_rate", 1.5, "full_codebook_rate"),
        ("importance_channels", [8, 4, 2], "ending in 1"),
        ("decoder_hidden_size", 6, "multiple"),
        ("downsampling_ratios", [], "downsampling_ratios"),
        ("quantizer_dropout", 0.5, "constant-bitrate baseline"),
        ("initializer", "xavier", "initializer"),
        ("sampling_rate", 0, "sampling_rate"),
    ],
)
def test_invalid_values_raise_clear_errors(field, value, message):
    with pytest.raises(ValueError, match=message) as info:
        tiny_config(**{field: value})
    assert field in str(info.value)


def test_cbr_baseline_accepts_quantizer_dropout():
    assert tiny_config(use_importance_subnet=False, quantizer_dropout=0.5).quantizer_dropout == 0.5


def test_overrides_given_to_from_pretrained_are_checked_too(tmp_path):
    tiny_config().save_pretrained(tmp_path)
    assert VRVQConfig.from_pretrained(tmp_path, silence_threshold_db=-60).silence_threshold_db == -60
    with pytest.raises(ValueError, match="VRVQConfig.silence_threshold_db"):
        VRVQConfig.from_pretrained(tmp_path, silence_threshold_db=5)
    with pytest.raises(ValueError, match="VRVQConfig.level_min"):
        VRVQConfig.from_pretrained(tmp_path, level_min=7.0)


def test_saved_config_with_overrides_reads_yaml_values_and_names_bad_fields(tmp_path):
    from vrvq_hf.training.config import saved_config_with_overrides

    tiny_config().save_pretrained(tmp_path)
    config = saved_config_with_overrides(str(tmp_path), ["silence_threshold_db=-60", "level_max=4"])
    assert (config.silence_threshold_db, config.level_max) == (-60, 4)
    assert saved_config_with_overrides(str(tmp_path), ["silence_threshold_db=null"]).silence_threshold_db is None
    with pytest.raises(ValueError, match="not VRVQConfig fields: \\['silence_db'\\]"):
        saved_config_with_overrides(str(tmp_path), ["silence_db=-60"])
    with pytest.raises(ValueError, match="must look like"):
        saved_config_with_overrides(str(tmp_path), ["silence_threshold_db"])
    with pytest.raises(ValueError, match="VRVQConfig.silence_threshold_db"):
        saved_config_with_overrides(str(tmp_path), ["silence_threshold_db=5"])
    with pytest.raises(ValueError, match="holds no config.json"):
        saved_config_with_overrides(str(tmp_path / "missing"), [])
