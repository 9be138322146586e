import numpy as np
import pytest
import torch

from vrvq_hf import VRVQFeatureExtractor
from vrvq_hf.audio_io import AudioLoadError, load_audio


@pytest.fixture
def fe():
    return VRVQFeatureExtractor(sampling_rate=16000, hop_length=8)


def test_pads_a_batch_to_a_multiple_of_hop(fe):
    out = fe([np.zeros(10, np.float32), np.ones(3, np.float32)], sampling_rate=16000)
    assert out["input_values"].shape == (2, 1, 16) and out["padding_mask"].shape == (2, 16)
    assert out["padding_mask"].sum(dim=1).tolist() == [10, 3]
    assert torch.equal(out["input_values"][1, 0, :3], torch.ones(3))
    assert out["input_values"].dtype == torch.float32


def test_single_clip_and_list_of_floats(fe):
    assert fe(np.zeros(20, np.float32))["input_values"].shape == (1, 1, 24)
    assert fe([0.0, 0.5, -0.5])["input_values"].shape == (1, 1, 8)


def test_int16_is_scaled(fe):
    out = fe(np.array([16384, -32768], dtype=np.int16))
    assert out["input_values"][0, 0, :2].tolist() == [0.5, -1.0]


@pytest.mark.parametrize(
    "audio, kwargs, message",
    [
        (np.zeros(10, np.float32), {"sampling_rate": 44100}, "44100 Hz, but this model needs 16000 Hz"),
        (np.zeros((2, 100), np.float32), {}, "2 channels"),
        (np.zeros((2, 2, 10), np.float32), {}, "1-D"),
        (np.zeros(0, np.float32), {}, "empty"),
        (np.array([0.0, np.nan], np.float32), {}, "NaN"),
        (np.array([0.0, np.inf], np.float32), {}, "NaN or Inf"),
        (np.array([1, 2], np.uint8), {}, "ambiguous"),
        (np.zeros((100, 2), np.float32), {}, "transpose"),
        ([], {}, "empty list"),
        (np.zeros(10, np.float32), {"truncation": True}, "never truncates"),
    ],
)
def test_bad_input_raises_clear_error(fe, audio, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fe(audio, **kwargs)


def test_a_missing_sampling_rate_is_warned_about_once(fe, caplog):
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger(__name__).warning_once.cache_clear()  # once per process: forget earlier calls
    with caplog.at_level("WARNING"):
        fe(np.zeros(20, np.float32))
        fe(np.zeros(20, np.float32))
        fe(np.zeros(20, np.float32), sampling_rate=fe.sampling_rate)
    warnings = [r for r in caplog.records if "without `sampling_rate`" in r.getMessage()]
    assert len(warnings) == 1


def test_downmix_on_request(fe):
    stereo = np.stack([np.ones(16, np.float32), -np.ones(16, np.float32) * 0.5])
    out = fe(stereo, downmix=True)
    assert torch.allclose(out["input_values"][0, 0], torch.full((16,), 0.25))


def test_load_audio_reads_resamples_and_downmixes(tmp_path):
    import soundfile

    stereo = np.stack([np.sin(np.arange(8000) / 10), np.zeros(8000)]).astype(np.float32) * 0.5
    path = tmp_path / "a.wav"
    soundfile.write(path, stereo.T, 8000)
    both = load_audio(path)
    assert both.shape == (2, 8000)
    mono = load_audio(path, sampling_rate=16000, downmix=True)
    assert mono.ndim == 1 and abs(len(mono) - 16000) <= 2
    assert np.abs(mono).max() == pytest.approx(0.25, abs=0.02)


def test_load_audio_errors(tmp_path):
    with pytest.raises(AudioLoadError, match="no such audio file"):
        load_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00not audio at all" * 10)
    with pytest.raises(AudioLoadError, match="junk.wav"):
        load_audio(junk)
    assert issubclass(AudioLoadError, ValueError)
