"""The Gradio Space (spaces/app.py): handlers as plain functions, then the app served on 127.0.0.1 and called
through gradio_client. A tiny random model stands in for the shipped one (its audio is noise; the bit
accounting and the file are real)."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from vrvq_hf import VRVQFeatureExtractor, VRVQModel
from vrvq_hf.bitstream import HEADER_SIZE, read_file

from .conftest import REPO_ROOT as ROOT
from .conftest import load_file_module, speech_like, tiny_config


def load_app():
    """spaces/app.py as a module (the folder is not a package)."""
    if "vrvq_space_app" in sys.modules:
        return sys.modules["vrvq_space_app"]
    return load_file_module(ROOT / "spaces" / "app.py", "vrvq_space_app")


@pytest.fixture(scope="module")
def app():
    return load_app()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-model")
    torch.manual_seed(0)
    model = VRVQModel(tiny_config())
    model.save_pretrained(folder)
    VRVQFeatureExtractor.from_model_config(model.config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def codec(app, model_dir):
    return app.load_codec(str(model_dir))


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> str:
    """0.6 s of speech-like bursts at the model's 16 kHz, mono."""
    path = tmp_path_factory.mktemp("clips") / "speech.wav"
    sf.write(path, speech_like(0.6)[0, 0].numpy(), 16000, subtype="PCM_16")
    return str(path)


def file_bits_consistent(result, config) -> None:
    """The .vrvq file holds exactly the counted bits (rounded up to bytes) after its 64-byte header."""
    stream = read_file(result.vrvq_path)
    assert not stream.entropy_coded
    counted = round(result.kbps * 1000 * result.num_frames / config.frame_rate)
    assert stream.counted_bits == counted
    assert os.path.getsize(result.vrvq_path) == result.file_bytes == HEADER_SIZE + math.ceil(counted / 8)
    assert result.payload_bytes == math.ceil(counted / 8)
    assert result.file_kbps == pytest.approx(8 * result.file_bytes / result.duration_s / 1000)
    assert stream.num_samples == round(result.duration_s * config.sampling_rate)


def test_level_mode_codes_writes_and_plots(app, codec, wav, tmp_path):
    config = codec.config
    result = app.encode_decode(codec, wav, app.MODE_LEVEL, level=1.0, out_dir=tmp_path)
    assert config.min_kbps <= result.kbps <= config.max_kbps
    assert result.level == pytest.approx(1.0) and result.notes == []
    file_bits_consistent(result, config)
    original, rate = sf.read(result.original_path)
    decoded, rate2 = sf.read(result.reconstruction_path)
    assert rate == rate2 == config.sampling_rate and len(original) == len(decoded) == int(0.6 * 16000)
    assert Path(result.plot_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = result.markdown(config)
    assert f"{result.kbps:.3f} kbps" in text and f"{result.file_bytes:,d} bytes" in text
    assert f"side information {config.side_info_kbps:.3f} kbps" in text


def test_target_mode_never_exceeds_the_target(app, codec, wav, tmp_path):
    config = codec.config
    target = (config.min_kbps + config.max_kbps) / 2
    result = app.encode_decode(codec, wav, app.MODE_TARGET, target_kbps=target, out_dir=tmp_path)
    assert config.min_kbps <= result.kbps <= target + 1e-9 and result.level is not None
    file_bits_consistent(result, config)


def test_cbr_mode_spends_n_codebooks_on_every_frame(app, codec, wav, tmp_path):
    config = codec.config
    result = app.encode_decode(codec, wav, app.MODE_CBR, n_codebooks=2.0, out_dir=tmp_path)
    expected = (2 * config.bits_per_code + config.side_info_bits) * config.frame_rate / 1000
    assert result.kbps == pytest.approx(expected) and result.mean_codebooks == 2 and result.level is None
    file_bits_consistent(result, config)
    assert os.path.getsize(result.plot_path) > 1000  # VBR allocation at the same bitrate, for comparison


def test_stereo_upload_is_downmixed_and_resampled_with_a_note(app, codec, tmp_path):
    path = tmp_path / "stereo.wav"
    clip = speech_like(0.5, 22050)[0, 0].numpy()
    sf.write(path, np.stack([clip, 0.5 * clip], axis=1), 22050)
    result = app.encode_decode(codec, str(path), app.MODE_LEVEL, level=0.5, out_dir=tmp_path)
    assert any("down-mixed 2 channels" in n for n in result.notes)
    assert any("resampled from 22050 Hz to 16000 Hz" in n for n in result.notes)
    assert "**Input:**" in result.markdown(codec.config)
    assert sf.info(result.original_path).samplerate == 16000


def _bad_file(tmp_path: Path, kind: str) -> str:
    path = tmp_path / f"{kind}.wav"
    if kind == "text":
        path = tmp_path / "notes.txt"
        path.write_text("this is not audio")
    elif kind == "silence":
        sf.write(path, np.zeros(16000, dtype=np.float32), 16000)
    elif kind == "empty":
        sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    elif kind == "short":
        sf.write(path, 0.5 * np.ones(400, dtype=np.float32), 16000)
    elif kind == "long":
        sf.write(path, 0.1 * np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32), 16000)
    elif kind == "nan":
        sf.write(path, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    return str(path)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("text", "Could not read 'notes.txt' as audio"),
        ("silence", "The clip is silent (digital silence)"),
        ("empty", "holds no audio samples"),
        ("short", "only 25 ms long; give at least 0.1 s"),
        ("long", "3.0 s long; this demo codes at most 2 s"),
        ("nan", "invalid samples"),
    ],
)
def test_bad_files_get_a_readable_message(app, codec, tmp_path, monkeypatch, kind, message):
    monkeypatch.setenv("VRVQ_MAX_SECONDS", "2")
    with pytest.raises(app.InputError) as caught:
        app.encode_decode(codec, _bad_file(tmp_path, kind), app.MODE_LEVEL, level=1.0, out_dir=tmp_path)
    assert message in str(caught.value)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs FFmpeg to write and probe an AAC file")
def test_long_compressed_file_is_refused_from_its_header(app, codec, tmp_path, monkeypatch):
    path = tmp_path / "long.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-c:a", "aac",
                    str(path)], check=True, timeout=60)
    monkeypatch.setenv("VRVQ_MAX_SECONDS", "2")
    monkeypatch.setattr(app, "read_audio", None)  # never decoded: the length comes from ffprobe
    with pytest.raises(app.InputError, match=r"is 3\.0 s long; this demo codes at most 2 s"):
        app.encode_decode(codec, str(path), app.MODE_LEVEL, level=1.0, out_dir=tmp_path)


@pytest.mark.parametrize(
    "mode, level, target, n, message",
    [
        ("VBR", 1.0, None, None, "Unknown mode 'VBR'; choose one of: VBR level, Target kbps, CBR codebooks"),
        ("VBR level", -1, None, None, "level must be between 0 and 100"),
        ("VBR level", "abc", None, None, "level must be a number"),
        ("Target kbps", None, 1.0, None, "between 12.00 and 36.00 kbps"),
        ("Target kbps", None, float("nan"), None, "finite number"),
        ("CBR codebooks", None, None, 0, "whole number from 1 to 4, got 0"),
        ("CBR codebooks", None, None, 2.5, "whole number from 1 to 4, got 2.5"),
    ],
)
def test_wrong_settings_get_a_readable_message(app, codec, wav, tmp_path, mode, level, target, n, message):
    with pytest.raises(app.InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        app.encode_decode(codec, wav, mode, level, target, n, out_dir=tmp_path)


def test_no_upload_and_handler_errors_become_page_messages(app, codec, monkeypatch):
    import gradio as gr

    handler = app.gradio_handler(codec)
    with pytest.raises(gr.Error, match="No audio: upload a file or record a clip first"):
        handler(None, app.MODE_LEVEL, 1.0, 20.0, 4)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(app, "encode_decode", broken)
    with pytest.raises(gr.Error) as caught:
        handler("x.wav", app.MODE_LEVEL, 1.0, 20.0, 4)
    assert caught.value.message == "Coding failed (RuntimeError: boom)."


def test_failure_handler_clears_results_and_says_why(app, codec, wav, tmp_path):
    clear = app.failure_handler(codec)
    silent = _bad_file(tmp_path, "silence")
    assert clear(silent, app.MODE_LEVEL, 1.0, 20.0, 4) == (
        None, None, "**Cannot code this input.** The clip is silent (digital silence); give a clip with some "
        "sound in it.", None, None)
    assert "must be a whole number" in clear(wav, app.MODE_CBR, 1.0, 20.0, 9)[2]
    assert clear(wav, app.MODE_LEVEL, 1.0, 20.0, 4)[2].startswith("**Coding failed.**")


def test_model_from_environment_and_missing_default(app, model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("VRVQ_MODEL", str(model_dir))
    codec = app.load_codec()
    assert codec.name == str(model_dir) and len(codec.fingerprint) == 16 and codec.tables is None
    monkeypatch.delenv("VRVQ_MODEL")
    monkeypatch.setattr(app.vrvq_hf, "DEFAULT_MODEL", str(tmp_path / "not-shipped"))
    with pytest.raises(FileNotFoundError, match="set VRVQ_MODEL"):
        app.load_codec()


def test_example_clips(app, tmp_path):
    examples = app.make_examples(tmp_path)
    assert set(examples) == {"speech", "chords"}
    chords = sf.info(examples["chords"])
    assert chords.channels == 2 and chords.samplerate == 44100 and chords.duration > 3
    speech, rate = sf.read(examples["speech"])
    assert speech.ndim == 1 and 1.0 < len(speech) / rate < 10 and np.abs(speech).max() > 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_app_through_gradio_client(app, codec, wav, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    demo = app.build_demo(codec, examples_dir=tmp_path / "examples")
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False, download_files=str(tmp_path / "downloads"))
        assert "/encode_decode" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        original, reconstruction, summary, picture, vrvq = client.predict(
            handle_file(wav), app.MODE_LEVEL, 1.0, 20.0, 4, api_name="/encode_decode"
        )
        size = os.path.getsize(vrvq)
        stream = read_file(vrvq, expected_model_id=codec.fingerprint)
        assert size == HEADER_SIZE + math.ceil(stream.counted_bits / 8)
        assert f"{size:,d} bytes" in summary and f"{stream.bitrate_kbps:.3f} kbps" in summary
        assert sf.info(reconstruction).frames == sf.info(original).frames == int(0.6 * 16000)
        assert Path(picture).read_bytes()[:4] == b"\x89PNG"
        text = tmp_path / "upload.txt"
        text.write_text("not audio")
        with pytest.raises(AppError, match="as audio"):
            client.predict(handle_file(str(text)), app.MODE_LEVEL, 1.0, 20.0, 4, api_name="/encode_decode")
    finally:
        demo.close()
