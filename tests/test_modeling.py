import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from vrvq_hf import VRVQFeatureExtractor, VRVQModel
from vrvq_hf.importance import (
    bitrate_kbps,
    hard_codebook_mask,
    scaled_importance,
    silent_frames,
    straight_through_mask,
    surrogate,
)

from .conftest import speech_like, tiny_config


def _encode(model, x, **kwargs):
    with torch.no_grad():
        return model.encode(x, **kwargs)


# ------------------------------------------------------------------------------------------ shapes, outputs
def test_encode_decode_shapes(tiny_model):
    x = torch.randn(3, 1, 800) * 0.1
    out = _encode(tiny_model, x, level=1.0)
    frames = 800 // 8
    assert out.audio_codes.shape == (3, 4, frames) and out.audio_codes.dtype == torch.long
    assert out.codebook_mask.shape == (3, 4, frames) and out.codebook_mask.dtype == torch.bool
    assert out.num_codebooks.shape == (3, frames) and out.importance_map.shape == (3, frames)
    assert out.quantized_representation.shape == (3, 16, frames)
    assert out.bitrate_kbps.shape == (3,) and out.level.shape == (3,)
    decoded = tiny_model.decode(out.audio_codes, codebook_mask=out.codebook_mask)
    assert decoded.audio_values.shape == (3, 1, 800)


def test_any_length_is_padded_not_truncated(tiny_model):
    x = torch.randn(1, 1, 803) * 0.1
    out = _encode(tiny_model, x)
    assert out.audio_codes.shape[-1] == math.ceil(803 / 8)
    assert int(out.padding_mask.sum()) == 803
    with torch.no_grad():
        assert tiny_model(x).audio_values.shape == (1, 1, 803)


def test_odd_strides_decode_to_the_full_length():
    model = VRVQModel(tiny_config(downsampling_ratios=[3, 5], decoder_hidden_size=16)).eval()
    x = speech_like(0.1)[..., :1500]
    out = _encode(model, x, level=0.5)
    assert out.audio_codes.shape[-1] == 100
    with torch.no_grad():
        assert model.decode(out.audio_codes, num_codebooks=out.num_codebooks).audio_values.shape[-1] == 1500
        assert model(x[..., :1490]).audio_values.shape[-1] == 1490


def test_dict_and_tuple_outputs_agree(tiny_model):
    x = speech_like(0.2)
    as_dict = _encode(tiny_model, x, level=0.7)
    as_tuple = _encode(tiny_model, x, level=0.7, return_dict=False)
    for value, item in zip(as_dict.to_tuple(), as_tuple):
        assert torch.equal(value, item)
    with torch.no_grad():
        f_dict, f_tuple = tiny_model(x), tiny_model(x, return_dict=False)
    assert torch.equal(f_dict.audio_values, f_tuple[1])


def test_deterministic_in_eval_mode(tiny_model):
    x = speech_like(0.3)
    a, b = _encode(tiny_model, x, level=0.5), _encode(tiny_model, x, level=0.5)
    assert torch.equal(a.audio_codes, b.audio_codes) and torch.equal(a.num_codebooks, b.num_codebooks)


def test_full_mode_and_cbr_use_fixed_counts(tiny_model):
    x = speech_like(0.2)
    full = _encode(tiny_model, x)
    assert (full.num_codebooks == 4).all() and full.level is None
    for n in (1, 2, 4):
        cbr = _encode(tiny_model, x, n_quantizers=n)
        assert (cbr.num_codebooks == n).all()
        assert torch.equal(cbr.audio_codes[:, :n], full.audio_codes[:, :n])  # residual chain unchanged
        assert (cbr.audio_codes[:, n:] == 0).all()


# -------------------------------------------------------------------------------------------- mask rules
def test_mask_semantics_against_the_formula(tiny_model):
    x = speech_like(0.5)
    for level in (0.05, 0.3, 1.0, 2.5):
        out = _encode(tiny_model, x, level=level)
        p = out.importance_map.double().numpy()
        expected = np.minimum(4, np.floor(4 * np.float32(level) * p.astype(np.float32)) + 1)
        assert np.array_equal(out.num_codebooks.numpy(), expected)
        assert out.codebook_mask[:, 0].all()  # codebook 0 always on
        counts = out.codebook_mask.sum(dim=1)
        assert torch.equal(counts, out.num_codebooks)
        # the mask is a prefix: on a frame, codebook i on implies every j < i on
        assert (out.codebook_mask[:, 1:] <= out.codebook_mask[:, :-1]).all()


def test_counts_are_monotone_in_level(tiny_model):
    x = speech_like(0.5)
    previous = None
    for level in np.linspace(0, 4, 17):
        counts = _encode(tiny_model, x, level=float(level)).num_codebooks
        if previous is not None:
            assert (counts >= previous).all()
        previous = counts
    assert (previous == 4).all() or previous.float().mean() > 1


def test_silence_gate_gives_one_codebook_and_leaves_sound_alone():
    torch.manual_seed(0)
    plain = VRVQModel(tiny_config()).eval()
    gated = VRVQModel(tiny_config(silence_threshold_db=-60.0)).eval()
    gated.load_state_dict(plain.state_dict())
    hop = gated.config.hop_length  # 8 samples
    sound = speech_like(0.05, seed=1)[..., : 20 * hop] + 0.3  # loud everywhere (offset keeps every frame on)
    x = torch.cat([sound, torch.zeros(1, 1, 20 * hop), sound, 1e-4 * torch.randn(1, 1, 10 * hop)], dim=-1)
    silent = silent_frames(x, hop, -60.0)[0]
    # frame t is silent when frames t-1, t, t+1 are all below -60 dBFS (1e-4 RMS noise is -80 dBFS)
    expected = torch.zeros(70, dtype=torch.bool)
    expected[21:39] = True
    expected[61:] = True
    assert torch.equal(silent, expected)
    for level in (0.5, 2.0, 6.0):
        a, b = _encode(plain, x, level=level), _encode(gated, x, level=level)
        assert (b.num_codebooks[0, silent] == 1).all() and (b.importance_map[0, silent] == 0).all()
        assert torch.equal(a.num_codebooks[0, ~silent], b.num_codebooks[0, ~silent])
        assert torch.equal(a.audio_codes[..., ~silent], b.audio_codes[..., ~silent])
    assert _encode(plain, x, level=6.0).num_codebooks[0, silent].float().mean() > 1  # the gate made the difference
    # the batch does not change a gated clip's codes: padding is silent but never makes a frame loud
    fe = VRVQFeatureExtractor.from_model_config(gated.config)
    clips = [x[0, 0, : 45 * hop].numpy(), x[0, 0].numpy()]
    batch = fe(clips, sampling_rate=16000)
    together = _encode(gated, batch["input_values"], padding_mask=batch["padding_mask"], level=2.0)
    alone = _encode(gated, torch.from_numpy(clips[0])[None, None], level=2.0)
    assert torch.equal(together.num_codebooks[0, :45], alone.num_codebooks[0])
    for bad in (0.0, 3.0, float("nan"), "quiet"):
        with pytest.raises(ValueError, match="silence_threshold_db"):
            tiny_config(silence_threshold_db=bad)


def test_hard_mask_edge_values():
    x = torch.tensor([[0.0, 0.999, 1.0, 2.5, 3.0, 100.0]])
    counts = hard_codebook_mask(x, 4).sum(dim=1)
    assert counts.tolist() == [[1, 1, 2, 3, 4, 4]]
    assert scaled_importance(torch.tensor([[0.5]]), torch.tensor([2.0]), 8).item() == 8.0


# ------------------------------------------------------------------------------------ surrogate gradients
def _closed_form_derivative(kind, t, alpha):
    if kind == "logcosh":
        return 0.5 * (torch.tanh(alpha * (t + 0.5)) - torch.tanh(alpha * (t - 0.5)))
    if kind == "square":
        return ((t > 0) & (t < 1)).double()
    s = torch.sigmoid(alpha * t)
    return alpha * s * (1 - s)


@pytest.mark.parametrize("kind", ["logcosh", "square", "sigmoid"])
@pytest.mark.parametrize("alpha", [0.5, 2.0, 16.0])
def test_surrogate_gradient_matches_closed_form(kind, alpha):
    t = torch.linspace(-3.3, 3.3, 601, dtype=torch.float64)
    t = t[(t - t.round()).abs() > 1e-6]  # away from the kinks of "square"
    t.requires_grad_(True)
    surrogate(kind, t, alpha).sum().backward()
    assert torch.allclose(t.grad, _closed_form_derivative(kind, t.detach(), alpha), atol=1e-10)


def test_logcosh_surrogate_values_are_stable_and_tend_to_clip():
    t = torch.tensor([-1e4, -1.0, -0.5, 0.0, 0.5, 1.0, 1e4], dtype=torch.float64)
    s = surrogate("logcosh", t, 2.0)
    assert torch.isfinite(s).all() and s[3] == pytest.approx(0.5)
    assert s[0] == pytest.approx(0.0, abs=1e-9) and s[-1] == pytest.approx(1.0, abs=1e-9)
    sharp = surrogate("logcosh", torch.tensor([-0.8, -0.25, 0.0, 0.3, 0.8], dtype=torch.float64), 200.0)
    assert torch.allclose(sharp, torch.tensor([0.0, 0.25, 0.5, 0.8, 1.0], dtype=torch.float64), atol=1e-2)


def test_straight_through_mask_is_hard_forward_and_smooth_backward():
    x = torch.tensor([[0.3, 1.7, 2.2]], requires_grad=True)
    mask = straight_through_mask(x, 4, "logcosh", 2.0)
    assert torch.equal(mask.detach(), hard_codebook_mask(x.detach(), 4).float())
    mask[:, 1].sum().backward()  # d m_1 / dx = s'(x - 1)
    expected = _closed_form_derivative("logcosh", x.detach().double() - 1, 2.0).float()
    assert torch.allclose(x.grad, expected)


# ------------------------------------------------------------------------------------------------ bitrate
def test_bitrate_formula_against_a_hand_count():
    counts = torch.tensor([[1, 4, 2, 0, 0], [3, 3, 3, 3, 3]])
    kbps = bitrate_kbps(counts, bits_per_code=4, side_info_bits=2, frame_rate=2000.0)
    first = ((1 * 4 + 2) + (4 * 4 + 2) + (2 * 4 + 2)) / 3 * 2000 / 1000
    second = (3 * 4 + 2) * 2000 / 1000
    assert kbps.tolist() == pytest.approx([first, second])


def test_model_bitrate_uses_the_config_accounting(tiny_model):
    c = tiny_model.config
    out = _encode(tiny_model, speech_like(0.4), level=0.8)
    hand = ((out.num_codebooks.double() * c.bits_per_code + c.side_info_bits).mean() * c.frame_rate / 1000).item()
    assert out.bitrate_kbps.item() == pytest.approx(hand)
    assert c.min_kbps <= out.bitrate_kbps.item() <= c.max_kbps
    assert _encode(tiny_model, speech_like(0.4)).bitrate_kbps.item() == pytest.approx(c.max_kbps)


@pytest.mark.parametrize("target", [12.5, 14.0, 17.3, 22.0, 30.0, 36.0, 50.0])
def test_target_kbps_never_exceeds_and_is_tight(tiny_model, target):
    c = tiny_model.config
    x = torch.cat([speech_like(0.5, seed=1), 0.2 * torch.randn(1, 1, 8000)])
    out = _encode(tiny_model, x, target_kbps=target)
    assert (out.bitrate_kbps <= target + 1e-9).all()
    for item in range(2):
        if out.bitrate_kbps[item] < min(target, c.max_kbps) - 1e-9:
            # one more codebook-step of level must overshoot the target (or change nothing)
            p = out.importance_map[item : item + 1]
            finer = [
                bitrate_kbps(
                    hard_codebook_mask(scaled_importance(p, torch.tensor([lv]), 4), 4).sum(1),
                    c.bits_per_code, c.side_info_bits, c.frame_rate,
                ).item()
                for lv in np.linspace(out.level[item].item(), out.level[item].item() * 4 + 1, 400)
            ]
            above = [k for k in finer if k > out.bitrate_kbps[item].item() + 1e-9]
            assert not above or min(above) > target


def test_target_below_minimum_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="below this model's minimum"):
        _encode(tiny_model, speech_like(0.2), target_kbps=1.0)


def test_mode_arguments_are_exclusive_and_checked(tiny_model):
    x = speech_like(0.1)
    with pytest.raises(ValueError, match="at most one"):
        _encode(tiny_model, x, level=1.0, n_quantizers=2)
    with pytest.raises(ValueError, match="n_quantizers"):
        _encode(tiny_model, x, n_quantizers=5)
    with pytest.raises(ValueError, match="level"):
        _encode(tiny_model, x, level=-1.0)
    cbr = VRVQModel(tiny_config(use_importance_subnet=False)).eval()
    with pytest.raises(ValueError, match="constant-bitrate"):
        _encode(cbr, x, level=1.0)
    assert _encode(cbr, x, n_quantizers=2).importance_map is None


def test_bad_input_shapes_are_clear_errors(tiny_model):
    with pytest.raises(ValueError, match=r"\(batch, 1, samples\)"):
        _encode(tiny_model, torch.zeros(2, 100))
    with pytest.raises(ValueError, match="floating point"):
        _encode(tiny_model, torch.zeros(1, 1, 100, dtype=torch.long))
    with pytest.raises(ValueError, match="right padding"):
        _encode(tiny_model, torch.zeros(1, 1, 16), padding_mask=torch.tensor([[0] * 8 + [1] * 8]))
    with pytest.raises(ValueError, match="no valid sample"):
        _encode(tiny_model, torch.zeros(1, 1, 16), padding_mask=torch.zeros(1, 16))
    with pytest.raises(ValueError, match="NaN or Inf"):
        _encode(tiny_model, torch.tensor([[[0.0] * 15 + [float("nan")]]]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        _encode(tiny_model, torch.tensor([[[0.0] * 15 + [float("inf")]]]), n_quantizers=2)


def test_whatever_the_padding_holds_codes_are_those_of_zero_padding(tiny_model):
    x = speech_like(0.1)
    mask = torch.ones(1, x.shape[-1] + 8, dtype=torch.long)
    mask[:, x.shape[-1]:] = 0
    zeros = torch.cat([x, torch.zeros(1, 1, 8)], dim=-1)
    junk = torch.cat([x, torch.full((1, 1, 8), float("nan"))], dim=-1)
    expected = _encode(tiny_model, zeros, padding_mask=mask, level=1.0)
    got = _encode(tiny_model, junk, padding_mask=mask, level=1.0)
    assert torch.equal(got.audio_codes, expected.audio_codes)
    assert torch.equal(got.num_codebooks, expected.num_codebooks)


def test_decode_checks_codes_and_masks(tiny_model):
    out = _encode(tiny_model, speech_like(0.1), level=0.5)
    with pytest.raises(ValueError, match="at most one"):
        tiny_model.decode(out.audio_codes, codebook_mask=out.codebook_mask, num_codebooks=out.num_codebooks)
    bad = out.audio_codes.clone()
    bad[0, 0, 0] = 16
    with pytest.raises(ValueError, match="0..15"):
        tiny_model.decode(bad)
    with pytest.raises(ValueError, match="shape"):
        tiny_model.decode(out.audio_codes[0])
    # inactive positions may hold anything (e.g. a pad id): they are ignored
    junk = out.audio_codes.masked_fill(~out.codebook_mask, -1)
    with torch.no_grad():
        a = tiny_model.decode(junk, num_codebooks=out.num_codebooks).audio_values
        b = tiny_model.decode(out.audio_codes, codebook_mask=out.codebook_mask).audio_values
    assert torch.equal(a, b)


# --------------------------------------------------------------------------------------- batch invariance
def test_codes_do_not_depend_on_batch_padding(tiny_model):
    fe = VRVQFeatureExtractor.from_model_config(tiny_model.config)
    clips = [speech_like(0.31, seed=3)[0, 0].numpy(), 0.2 * np.random.default_rng(0).standard_normal(12345)]
    clips[1] = clips[1].astype(np.float32)
    batch = fe(clips, sampling_rate=16000)
    with torch.no_grad():
        together = tiny_model.encode(batch["input_values"], batch["padding_mask"], level=0.6)
        audio_together = tiny_model.decode(
            together.audio_codes, codebook_mask=together.codebook_mask, padding_mask=together.padding_mask
        ).audio_values
        for index, clip in enumerate(clips):
            alone = tiny_model.encode(torch.from_numpy(clip)[None, None], level=0.6)
            frames = alone.audio_codes.shape[-1]
            assert torch.equal(together.audio_codes[index, :, :frames], alone.audio_codes[0])
            assert torch.equal(together.codebook_mask[index, :, :frames], alone.codebook_mask[0])
            assert (together.num_codebooks[index, frames:] == 0).all()
            assert torch.isclose(together.bitrate_kbps[index], alone.bitrate_kbps[0])
            audio_alone = tiny_model.decode(
                alone.audio_codes, codebook_mask=alone.codebook_mask, padding_mask=alone.padding_mask
            ).audio_values
            assert audio_alone.shape[-1] == len(clip)
            torch.testing.assert_close(audio_together[index, :, : len(clip)], audio_alone[0], atol=1e-5, rtol=0)
            assert (audio_together[index, :, len(clip) :] == 0).all()


def test_forward_matches_encode_then_decode(tiny_model):
    x = speech_like(0.25)
    with torch.no_grad():
        out = tiny_model(x, level=0.9)
        enc = tiny_model.encode(x, level=0.9)
        dec = tiny_model.decode(enc.audio_codes, codebook_mask=enc.codebook_mask, padding_mask=enc.padding_mask)
    assert torch.equal(out.audio_codes, enc.audio_codes)
    torch.testing.assert_close(out.audio_values, dec.audio_values, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------- weight norm
def test_fold_weight_norm_keeps_outputs(tmp_path):
    torch.manual_seed(1)
    model = VRVQModel(tiny_config(initializer="scale_preserving")).eval()
    x = speech_like(0.3)
    before = _encode(model, x, level=0.7)
    with torch.no_grad():
        audio_before = model(x, level=0.7).audio_values
    model.fold_weight_norm()
    assert not any("parametrizations" in k for k in model.state_dict())
    after = _encode(model, x, level=0.7)
    assert torch.equal(before.audio_codes, after.audio_codes)
    with torch.no_grad():
        torch.testing.assert_close(model(x, level=0.7).audio_values, audio_before, atol=1e-5, rtol=0)
    model.save_pretrained(tmp_path)
    reloaded = VRVQModel.from_pretrained(tmp_path).eval()
    assert reloaded.config.use_weight_norm is False
    assert torch.equal(_encode(reloaded, x, level=0.7).audio_codes, after.audio_codes)


def test_folded_copy_matches_and_leaves_the_original_intact():
    torch.manual_seed(2)
    model = VRVQModel(tiny_config(initializer="scale_preserving")).eval()
    x = speech_like(0.2)
    with torch.no_grad():
        before = model(x, level=0.7).audio_values
        plain = model.folded_copy()
        assert plain.config.use_weight_norm is False and model.config.use_weight_norm is True
        assert not any("parametrizations" in k for k in plain.state_dict())
        torch.testing.assert_close(plain(x, level=0.7).audio_values, before, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(x, level=0.7).audio_values, before, atol=0, rtol=0)  # still works
    model.train()
    model(x).loss.backward()  # and still trains


# ---------------------------------------------------------------------------------- save / load / Auto
def test_save_pretrained_round_trip_and_auto_classes(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    VRVQFeatureExtractor.from_model_config(tiny_model.config).save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    assert {"configuration_vrvq.py", "modeling_vrvq.py", "feature_extraction_vrvq.py"} <= files
    for loaded in (VRVQModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert type(loaded) is VRVQModel
        for (k, a), (_, b) in zip(tiny_model.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), k
        x = speech_like(0.2)
        assert torch.equal(_encode(loaded.eval(), x, level=1).audio_codes, _encode(tiny_model, x, level=1).audio_codes)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "vrvq"
    fe = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(fe, VRVQFeatureExtractor) and fe.hop_length == 8 and fe.sampling_rate == 16000


def test_trust_remote_code_without_the_package(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "model")
    VRVQFeatureExtractor.from_model_config(tiny_model.config).save_pretrained(tmp_path / "model")
    x = speech_like(0.2)
    expected = _encode(tiny_model, x, level=0.5).audio_codes
    torch.save({"x": x, "codes": expected}, tmp_path / "io.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["vrvq_hf"] = None  # the package is not importable here
        import torch
        from transformers import AutoFeatureExtractor, AutoModel
        try:
            import vrvq_hf  # noqa: F401
            raise SystemExit("vrvq_hf was importable")
        except ImportError:
            pass
        model = AutoModel.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        fe = AutoFeatureExtractor.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True)
        io = torch.load({str(tmp_path / "io.pt")!r})
        with torch.no_grad():
            codes = model.encode(io["x"], level=0.5).audio_codes
        assert torch.equal(codes, io["codes"])
        print("remote-ok", type(fe).__name__)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote-ok VRVQFeatureExtractor" in result.stdout


# ------------------------------------------------------------------------------------------- training
def test_training_forward_losses_and_gradients():
    torch.manual_seed(0)
    model = VRVQModel(tiny_config(full_codebook_rate=0.0)).train()
    x = torch.cat([speech_like(0.25, seed=s) for s in range(4)])
    out = model(x)
    for name in ("loss", "commitment_loss", "codebook_loss", "rate_loss"):
        assert out[name].dim() == 0 and torch.isfinite(out[name])
    assert out.rate_loss.item() == pytest.approx(out.importance_map.mean().item(), rel=1e-5)
    expected = 0.25 * out.commitment_loss + 1.0 * out.codebook_loss + 2.0 * out.rate_loss
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert out.level.min() >= 0.125 and out.level.max() <= 6.0
    (out.audio_values.pow(2).mean() + out.loss).backward()
    subnet_grad = sum(p.grad.abs().sum() for p in model.importance_subnet.parameters() if p.grad is not None)
    encoder_grad = sum(p.grad.abs().sum() for p in model.encoder.parameters() if p.grad is not None)
    assert subnet_grad > 0 and encoder_grad > 0


def test_latent_loss_is_off_by_default_and_measures_every_prefix_sum_when_on():
    """The optional latent term: 0 in the paper's recipe; with a weight, the mean over n = 1..Nq of the
    squared distance of the first n stages' sum from the encoder latent, relative to the item's mean latent
    energy. It is in the loss, its gradient reaches every stage's output projection (which the paper's VQ
    losses never touch) and, as it ignores the mask, never the importance subnet."""
    x = torch.cat([speech_like(0.25, seed=s) for s in range(2)])
    torch.manual_seed(0)
    off = VRVQModel(tiny_config(full_codebook_rate=0.0)).train()(x)
    assert off.latent_loss.item() == 0.0
    torch.manual_seed(0)
    model = VRVQModel(tiny_config(full_codebook_rate=0.0, latent_loss_weight=0.5)).train()
    out = model(x)
    frames = model._frames(x, None)
    assert frames.frame_valid.all()
    with torch.no_grad():
        latent, _ = model.encoder(frames.waveform)
        energy = latent.pow(2).sum(dim=1).mean(dim=1, keepdim=True)  # (B, 1): all frames valid
        n_codebooks = model.config.n_codebooks
        errors = []
        for n in range(1, n_codebooks + 1):
            mask = (torch.arange(n_codebooks) < n).float()[None, :, None].expand(2, -1, latent.shape[-1])
            errors.append((model.quantizer(latent, mask).quantized - latent).pow(2).sum(dim=1) / energy)
    assert out.latent_loss.item() == pytest.approx(torch.stack(errors).mean().item(), rel=1e-4)
    assert out.loss.item() == pytest.approx(
        (0.25 * out.commitment_loss + out.codebook_loss + 2.0 * out.rate_loss + 0.5 * out.latent_loss).item(),
        rel=1e-6,
    )
    out.latent_loss.backward()
    for stage in model.quantizer.stages:
        assert sum(p.grad.abs().sum() for p in stage.out_proj.parameters() if p.grad is not None) > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.importance_subnet.parameters())
    with pytest.raises(ValueError, match="latent_loss_weight"):
        tiny_config(latent_loss_weight=-1.0)


def test_reconstruction_gradient_reaches_subnet_only_through_the_mask():
    """With the rate loss off, the subnet still learns from reconstruction: that is the surrogate's job."""
    torch.manual_seed(0)
    model = VRVQModel(tiny_config(full_codebook_rate=0.0, rate_loss_weight=0.0)).train()
    out = model(torch.cat([speech_like(0.25, seed=s) for s in range(2)]), level=0.5)
    out.audio_values.pow(2).mean().backward()
    assert sum(p.grad.abs().sum() for p in model.importance_subnet.parameters()) > 0


def test_full_codebook_share_and_detach_option():
    torch.manual_seed(0)
    model = VRVQModel(tiny_config(full_codebook_rate=1.0, detach_importance_input=True)).train()
    out = model(speech_like(0.25))
    assert (out.num_codebooks == 4).all() and out.rate_loss.item() == 0.0
    model = VRVQModel(tiny_config(full_codebook_rate=0.0, detach_importance_input=True)).train()
    out = model(torch.cat([speech_like(0.25, seed=s) for s in range(2)]))
    out.rate_loss.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.encoder.parameters())


def test_level_sampling_distributions():
    torch.manual_seed(0)
    uniform = VRVQModel(tiny_config()).sample_levels(20000)
    log_uniform = VRVQModel(tiny_config(level_distribution="log_uniform")).sample_levels(20000)
    assert uniform.min() >= 0.125 and uniform.max() <= 6.0
    assert uniform.mean().item() == pytest.approx((0.125 + 6) / 2, rel=0.03)
    assert torch.log(log_uniform).mean().item() == pytest.approx((math.log(0.125) + math.log(6)) / 2, abs=0.05)


def test_cbr_baseline_quantizer_dropout():
    torch.manual_seed(0)
    model = VRVQModel(tiny_config(use_importance_subnet=False, quantizer_dropout=1.0)).train()
    counts = model(torch.cat([speech_like(0.1, seed=s) for s in range(16)])).num_codebooks
    per_item = counts[:, 0]
    assert (counts == per_item[:, None]).all() and per_item.min() >= 1 and len(set(per_item.tolist())) > 1


def test_initializers_give_sane_scales():
    torch.manual_seed(0)
    for name in ("dac", "scale_preserving"):
        model = VRVQModel(tiny_config(initializer=name)).eval()
        codebook = model.quantizer.stages[0].codebook.weight
        assert codebook.std().item() == pytest.approx(1.0, rel=0.4)
        assert (model.encoder.blocks[0].act.alpha == 1).all()
