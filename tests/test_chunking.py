"""Chunked encoding/decoding of long audio (vrvq_hf.chunking) against whole-file processing.

Stated tolerance (module docstring of vrvq_hf.chunking): with the default (exact) context, codes and
per-frame counts agree on >= 99.9% of entries (100% measured) and the decoded audio is within 1e-5
absolute / >= 80 dB SNR of whole-file decoding (float rounding only).
"""

import math

import pytest
import torch

from vrvq_hf import VRVQModel
from vrvq_hf.chunking import (
    decode_chunked,
    encode_chunked,
    iter_decode_chunked,
    plan_windows,
    receptive_field,
)

from .conftest import speech_like, tiny_config

CHUNK = 64  # frames; the tiny model's hop is 8 samples, so 512 samples per chunk


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Many tiny convolutions: one thread avoids OpenMP contention on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> VRVQModel:
    torch.manual_seed(0)  # scale-preserving init: audible output, so the SNR below means something
    return VRVQModel(tiny_config(initializer="scale_preserving")).eval()


def snr_db(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    noise = (estimate - reference).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(reference.pow(2).sum().item() / noise)


def whole(model, audio, **mode):
    with torch.inference_mode():
        encoded = model.encode(audio, **mode)
        decoded = model.decode(encoded.audio_codes, codebook_mask=encoded.codebook_mask,
                               padding_mask=encoded.padding_mask).audio_values
    return encoded, decoded


# ------------------------------------------------------------------------------------- receptive field
def test_receptive_field_covers_the_measured_dependence(model):
    """Gradients show which inputs an output really depends on; the analytic reach must cover them
    (and be tight: at most one frame more)."""
    hop, frames, j = model.config.hop_length, 120, 60
    field = receptive_field(model)
    with torch.enable_grad():
        waveform = torch.randn(1, 1, frames * hop, requires_grad=True)
        latent, features = model.encoder(waveform)
        (latent[0, :, j].sum() + model.importance_subnet(features)[0, j]).backward()
        used = torch.nonzero(waveform.grad[0, 0]).flatten()
        left, right = (j * hop - int(used.min())) / hop, (int(used.max()) - j * hop) / hop
        assert math.ceil(left) <= field.encoder_left <= math.ceil(left) + 1
        assert math.ceil(right) <= field.encoder_right <= math.ceil(right) + 1

        latent = torch.randn(1, model.config.hidden_size, frames, requires_grad=True)
        model.decoder(latent)[0, 0, j * hop : (j + 1) * hop].sum().backward()
        used = torch.nonzero(latent.grad[0].abs().sum(dim=0)).flatten()
        assert j - int(used.min()) <= field.decoder_left <= j - int(used.min()) + 1
        assert int(used.max()) - j <= field.decoder_right <= int(used.max()) - j + 1


def test_plan_windows_cover_every_frame_once():
    windows = plan_windows(1000, 64, 19, 20)
    kept = [f for w in windows for f in range(w.keep_start, w.keep_stop)]
    assert kept == list(range(1000))
    assert all(w.stop - w.start <= 64 + 19 + 20 for w in windows)
    assert windows[0].start == 0 and windows[-1].stop == 1000
    assert plan_windows(10, 64, 19, 20) == plan_windows(10, 64, 19, 20)[:1]
    with pytest.raises(ValueError, match="chunk_frames"):
        plan_windows(10, 0, 1, 1)


def test_window_size_does_not_grow_with_duration(model, monkeypatch):
    """Memory independence by construction: the model only ever sees windows of at most
    chunk + left + right frames, for a short and a 4x longer input alike."""
    field = receptive_field(model)
    hop = model.config.hop_length
    seen = []
    encode, decode = model.encode, model.decode
    monkeypatch.setattr(model, "encode", lambda x, **kw: seen.append(("enc", x.shape[-1])) or encode(x, **kw))
    monkeypatch.setattr(model, "decode", lambda c, **kw: seen.append(("dec", c.shape[-1] * hop)) or decode(c, **kw))
    longest = {}
    for seconds in (0.25, 1.0):
        seen.clear()
        audio = speech_like(seconds)
        out = encode_chunked(model, audio, level=1.0, chunk_frames=CHUNK)
        decode_chunked(model, out.audio_codes, codebook_mask=out.codebook_mask, chunk_frames=CHUNK)
        longest[seconds] = {kind: max(n for k, n in seen if k == kind) for kind in ("enc", "dec")}
        assert sum(k == "enc" for k, _ in seen) == math.ceil(audio.shape[-1] / hop / CHUNK)
    assert longest[0.25] == longest[1.0]
    assert longest[1.0]["enc"] == (CHUNK + field.encoder_left + field.encoder_right) * hop
    assert longest[1.0]["dec"] == (CHUNK + field.decoder_left + field.decoder_right) * hop


# ---------------------------------------------------------------------------------------- agreement
@pytest.mark.parametrize(
    "samples, mode",
    [
        (8 * 40 - 3, {"level": 1.0}),  # shorter than one chunk, not a multiple of the hop
        (16000 // 4 + 5, {"level": 0.7}),  # several chunks, not a multiple of the hop
        (16000 // 4, {"n_quantizers": 2}),  # constant bitrate, a multiple of the hop
        (3 * 8 * CHUNK + 8 * 7 + 1, {"target_kbps": 26.0}),  # target bitrate over the whole file
        (8 * CHUNK + 1, {}),  # all codebooks; one frame past a chunk boundary
    ],
)
def test_chunked_matches_whole_file(model, samples, mode):
    audio = speech_like(0.5, seed=samples)[..., :samples]
    assert audio.shape[-1] == samples
    reference, reference_audio = whole(model, audio, **mode)
    out = encode_chunked(model, audio, chunk_frames=CHUNK, **mode)

    assert out.audio_codes.shape == reference.audio_codes.shape
    assert (out.audio_codes == reference.audio_codes).float().mean() >= 0.999
    assert (out.num_codebooks == reference.num_codebooks).float().mean() >= 0.999
    assert torch.equal(out.codebook_mask, out.num_codebooks[:, None, :] > torch.arange(4)[None, :, None])
    assert torch.allclose(out.importance_map, reference.importance_map, atol=1e-5)
    assert torch.allclose(out.bitrate_kbps, reference.bitrate_kbps, rtol=1e-3)
    assert torch.equal(out.padding_mask.long(), reference.padding_mask)
    assert out.quantized_representation is None
    if "target_kbps" in mode:
        assert float(out.bitrate_kbps) <= mode["target_kbps"]
        assert out.level is not None and torch.allclose(out.level, reference.level)

    decoded = decode_chunked(model, out.audio_codes, codebook_mask=out.codebook_mask,
                             padding_mask=out.padding_mask, chunk_frames=CHUNK).audio_values
    assert decoded.shape == (1, 1, samples)  # the input's length
    assert (decoded - reference_audio).abs().max() <= 1e-5
    assert snr_db(decoded, reference_audio) >= 80


def test_decoding_whole_file_codes_in_chunks(model):
    audio = speech_like(0.4)
    reference, reference_audio = whole(model, audio, level=1.2)
    pieces = list(iter_decode_chunked(model, reference.audio_codes, num_codebooks=reference.num_codebooks,
                                      num_samples=audio.shape[-1], chunk_frames=CHUNK))
    assert len(pieces) == math.ceil(audio.shape[-1] / 8 / CHUNK)
    decoded = torch.cat(pieces, dim=-1)
    assert decoded.shape == audio.shape
    assert snr_db(decoded, reference_audio) >= 80
    # without a length, every valid frame is decoded, as model.decode does
    full = decode_chunked(model, reference.audio_codes, num_codebooks=reference.num_codebooks, chunk_frames=CHUNK)
    assert full.audio_values.shape[-1] == reference.audio_codes.shape[-1] * 8


def test_padding_mask_trims_the_item(model):
    audio = speech_like(0.2)
    padded = torch.nn.functional.pad(audio, (0, 100), value=0.7)
    mask = torch.ones(1, padded.shape[-1], dtype=torch.long)
    mask[:, audio.shape[-1]:] = 0
    a = encode_chunked(model, padded, mask, level=1.0, chunk_frames=CHUNK)
    b = encode_chunked(model, audio, level=1.0, chunk_frames=CHUNK)
    assert torch.equal(a.audio_codes, b.audio_codes)


def test_constant_bitrate_model():
    torch.manual_seed(1)
    cbr = VRVQModel(tiny_config(use_importance_subnet=False)).eval()
    audio = speech_like(0.2)
    reference, _ = whole(cbr, audio, n_quantizers=3)
    out = encode_chunked(cbr, audio, n_quantizers=3, chunk_frames=CHUNK)
    assert out.importance_map is None and out.level is None
    assert (out.audio_codes == reference.audio_codes).float().mean() >= 0.999
    with pytest.raises(ValueError, match="constant-bitrate"):
        encode_chunked(cbr, audio, level=1.0)


def test_bad_input_fails_before_any_window(model, monkeypatch):
    calls = []
    monkeypatch.setattr(model, "encode", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match="below this model's minimum"):
        encode_chunked(model, speech_like(0.2), target_kbps=0.5)
    with pytest.raises(ValueError, match="at most one"):
        encode_chunked(model, speech_like(0.2), level=1.0, n_quantizers=2)
    with pytest.raises(ValueError, match="one mono item"):
        encode_chunked(model, torch.zeros(2, 1, 800))
    with pytest.raises(ValueError, match="empty"):
        encode_chunked(model, torch.zeros(1, 1, 0))
    assert calls == []
    with pytest.raises(ValueError, match="one item"):
        decode_chunked(model, torch.zeros(2, 4, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="num_samples"):
        list(iter_decode_chunked(model, torch.zeros(1, 4, 10, dtype=torch.long), num_samples=81))
