"""The model shipped inside the package: loads offline, round-trips real speech, silence costs one codebook."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModel

import vrvq_hf
from vrvq_hf import DEFAULT_MODEL, VRVQFeatureExtractor, VRVQModel, load_default_model
from vrvq_hf.audio_io import load_audio
from vrvq_hf.spectral import mel_distance


@pytest.fixture(scope="module")
def model():
    return load_default_model()


@pytest.fixture(scope="module")
def speech(model, tmp_path_factory):
    """A short spoken sentence from espeak-ng (installed by scripts/setup.sh), with a pause in it."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = "The quick brown fox jumps over the lazy dog. [[_:_:_:_:_:_:_:_:]] Then it rests."
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return load_audio(path, sampling_rate=model.config.sampling_rate, downmix=True)


def test_shipped_model_is_small_and_loads_through_the_public_api(model):
    assert os.path.isfile(os.path.join(DEFAULT_MODEL, "model.safetensors"))
    total = sum(os.path.getsize(os.path.join(DEFAULT_MODEL, f)) for f in os.listdir(DEFAULT_MODEL))
    assert total < 25 * 2**20
    assert not any(f.endswith((".bin", ".pt", ".pth")) for f in os.listdir(DEFAULT_MODEL))
    assert model.config.use_weight_norm is False and model.config.use_importance_subnet
    auto = AutoModel.from_pretrained(DEFAULT_MODEL)
    assert type(auto) is VRVQModel
    fe = AutoFeatureExtractor.from_pretrained(DEFAULT_MODEL)
    assert isinstance(fe, VRVQFeatureExtractor) and fe.sampling_rate == model.config.sampling_rate
    assert vrvq_hf.VRVQModel.from_pretrained(vrvq_hf.DEFAULT_MODEL).config.to_dict() == model.config.to_dict()


def test_real_speech_round_trip_is_sane(model, speech):
    fe = VRVQFeatureExtractor.from_model_config(model.config)
    inputs = fe(speech, sampling_rate=model.config.sampling_rate)
    reference = inputs["input_values"][..., : len(speech)]
    with torch.no_grad():
        full = model(inputs["input_values"], inputs["padding_mask"]).audio_values[..., : len(speech)]
        low = model(inputs["input_values"], inputs["padding_mask"], n_quantizers=1).audio_values[..., : len(speech)]
    silence_distance = mel_distance(torch.zeros_like(reference), reference, model.config.sampling_rate).item()
    full_distance = mel_distance(full, reference, model.config.sampling_rate).item()
    one_codebook = mel_distance(low, reference, model.config.sampling_rate).item()
    # regression guards, not quality claims (MODEL_CARD.md has the measured figures)
    assert full_distance < 0.5 * silence_distance, (full_distance, silence_distance)
    assert full_distance < one_codebook


def test_silence_uses_one_codebook_at_every_level(model):
    silence = torch.zeros(1, 1, model.config.sampling_rate)
    for level in (0.1, 0.5, 1.0, 2.0, 4.0, 6.0):
        with torch.no_grad():
            counts = model.encode(silence, level=level).num_codebooks
        assert (counts == 1).all(), (level, counts.float().mean())


def test_levels_span_a_range_of_bitrates_on_speech(model, speech):
    x = torch.from_numpy(np.asarray(speech, dtype=np.float32))[None, None]
    with torch.no_grad():
        rates = [model.encode(x, level=lv).bitrate_kbps.item() for lv in (0.25, 1.0, 4.0)]
    assert rates[0] < rates[1] < rates[2] <= model.config.max_kbps


def test_shipped_remote_code_is_this_package_code():
    """The code copied beside the weights (for trust_remote_code) must be the package's own: re-ship the
    model with scripts/ship_model.py after changing the modelling code."""
    package = os.path.dirname(vrvq_hf.__file__)
    copies = [f for f in os.listdir(DEFAULT_MODEL) if f.endswith(".py")]
    assert "modeling_vrvq.py" in copies and "configuration_vrvq.py" in copies
    for name in copies:
        with open(os.path.join(DEFAULT_MODEL, name)) as shipped, open(os.path.join(package, name)) as source:
            assert shipped.read() == source.read(), f"{name} in the shipped model is stale"


def test_silence_gate_is_on_and_sound_is_not_gated(model, speech):
    assert model.config.silence_threshold_db == -60
    x = torch.from_numpy(np.asarray(speech, dtype=np.float32))[None, None]
    with torch.no_grad():
        encoded = model.encode(x, level=2.0)
    assert (encoded.num_codebooks[0] > 1).float().mean() > 0.5  # most speech frames spend more than one


def test_shipped_code_tables_code_real_speech_losslessly_in_fewer_bytes(model, speech):
    from vrvq_hf.bitstream import decode_bitstream, encode_bitstream
    from vrvq_hf.entropy import CodeTables

    tables = CodeTables.load(DEFAULT_MODEL)
    assert (tables.n_codebooks, tables.codebook_size) == (model.config.n_codebooks, model.config.codebook_size)
    x = torch.from_numpy(np.asarray(speech, dtype=np.float32))[None, None]
    with torch.no_grad():
        encoded = model.encode(x, level=1.0)
    header = dict(sampling_rate=model.config.sampling_rate, hop_length=model.config.hop_length,
                  codebook_size=model.config.codebook_size, num_samples=len(speech), model_id=None)
    fixed = encode_bitstream(encoded.audio_codes[0], encoded.num_codebooks[0], **header)
    coded = encode_bitstream(encoded.audio_codes[0], encoded.num_codebooks[0], entropy_tables=tables, **header)
    assert len(coded) < len(fixed)
    back = decode_bitstream(coded, entropy_tables=tables)
    assert torch.equal(back.num_codebooks, encoded.num_codebooks[0])
    assert torch.equal(back.audio_codes, encoded.audio_codes[0])


def test_ship_model_writes_a_new_target_with_missing_parents(tmp_path):
    from .conftest import load_script, tiny_config

    script = load_script("ship_model")
    torch.manual_seed(0)
    VRVQModel(tiny_config()).save_pretrained(tmp_path / "export")
    target = tmp_path / "not" / "yet" / "model"
    assert script.main([str(tmp_path / "export"), "--set", "silence_threshold_db=-60", "--target", str(target)]) == 0
    shipped = VRVQModel.from_pretrained(target)
    assert shipped.config.silence_threshold_db == -60
    assert (target / "preprocessor_config.json").is_file() and (target / "modeling_vrvq.py").is_file()
    assert script.main([str(tmp_path / "missing"), "--target", str(target)]) == 2
