"""Mel filterbank, multi-scale mel / STFT losses and the evaluation distances."""

from __future__ import annotations

import math

import pytest
import torch

from vrvq_hf.spectral import (
    DAC_EVAL_MEL_KWARGS,
    MultiScaleComplexSTFTLoss,
    MultiScaleMelLoss,
    MultiScaleSTFTLoss,
    hz_to_mel,
    mel_distance,
    mel_filterbank,
    mel_to_hz,
    stft_distance,
)

SR = 16000


def _noise(*shape: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _tone(length: int, freq: float = 440.0, sr: int = SR) -> torch.Tensor:
    t = torch.arange(length) / sr
    return 0.5 * torch.sin(2 * math.pi * freq * t)


# ---------------------------------------------------------------- mel scale and filterbank


def test_slaney_mel_scale_anchor_points_and_inverse():
    assert hz_to_mel(torch.tensor(1000.0)).item() == pytest.approx(15.0)
    assert hz_to_mel(torch.tensor(6400.0)).item() == pytest.approx(42.0)  # 27 mels per factor 6.4
    assert hz_to_mel(torch.tensor(200.0)).item() == pytest.approx(3.0)  # linear part
    hz = torch.tensor([0.0, 50.0, 999.0, 1000.0, 1001.0, 8000.0, 22050.0], dtype=torch.float64)
    torch.testing.assert_close(mel_to_hz(hz_to_mel(hz)), hz)


@pytest.mark.parametrize(("n_fft", "n_mels"), [(32, 5), (512, 40), (2048, 320)])
def test_filterbank_shape_and_nonnegative(n_fft, n_mels):
    fb = mel_filterbank(44100, n_fft, n_mels)
    assert fb.shape == (n_mels, n_fft // 2 + 1)
    assert fb.dtype == torch.float32
    assert (fb >= 0).all()


def test_filterbank_slaney_area_normalisation_and_order():
    # Unit area in Hz: sum over bins * bin spacing ~ 1 for filters much wider than a bin.
    n_fft, n_mels = 4096, 40
    fb = mel_filterbank(SR, n_fft, n_mels).double()
    areas = fb.sum(dim=1) * (SR / n_fft)
    torch.testing.assert_close(areas, torch.ones(n_mels, dtype=torch.float64), atol=0.03, rtol=0)
    peaks = fb.argmax(dim=1)
    assert (peaks.diff() > 0).all()  # centres rise with the filter index
    # Centres sit on the mel grid: equally spaced in mel between 0 and Nyquist.
    centres_hz = mel_to_hz(torch.linspace(0, float(hz_to_mel(torch.tensor(SR / 2))), n_mels + 2)[1:-1])
    bin_hz = peaks.double() * SR / n_fft
    assert (bin_hz - centres_hz).abs().max() <= SR / n_fft


def test_filterbank_matches_librosa_reference_values():
    # Values from librosa 0.11 filters.mel(sr=16000, n_fft=64, n_mels=6, dtype=float64).
    fb = mel_filterbank(16000, 64, 6).double()
    expected_sums = torch.tensor(
        [0.00389717, 0.00396728, 0.0040033, 0.00398687, 0.00401324, 0.003992], dtype=torch.float64
    )
    torch.testing.assert_close(fb.sum(dim=1), expected_sums, atol=2e-8, rtol=0)
    assert fb.argmax(dim=1).tolist() == [2, 3, 6, 9, 13, 21]
    assert fb[2, 5].item() == pytest.approx(0.0012687304433126642, rel=1e-5)
    assert fb[5, 30].item() == pytest.approx(7.395864837490922e-05, rel=1e-5)
    # With f_min / f_max (librosa: sr=44100, n_fft=2048, n_mels=80, fmin=30, fmax=16000).
    fb = mel_filterbank(44100, 2048, 80, f_min=30.0, f_max=16000.0).double()
    expected = torch.tensor([0.04633949, 0.04633949, 0.04626796, 0.04643447], dtype=torch.float64)
    torch.testing.assert_close(fb.sum(dim=1)[[0, 10, 40, 79]], expected, atol=2e-8, rtol=0)


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "f_min", "f_max"),
    [(44100, 2048, 320, 0.0, None), (44100, 32, 5, 0.0, None), (24000, 512, 80, 20.0, 11000.0)],
)
def test_filterbank_agrees_with_librosa_when_available(sr, n_fft, n_mels, f_min, f_max):
    librosa = pytest.importorskip("librosa")
    import numpy as np

    expected = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max, dtype=np.float64
    )
    ours = mel_filterbank(sr, n_fft, n_mels, f_min, f_max).double().numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-7 * np.abs(expected).max(), rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sampling_rate": 0, "n_fft": 64, "n_mels": 4},
        {"sampling_rate": SR, "n_fft": 1, "n_mels": 4},
        {"sampling_rate": SR, "n_fft": 64, "n_mels": 0},
        {"sampling_rate": SR, "n_fft": 64, "n_mels": 4, "f_max": SR},
        {"sampling_rate": SR, "n_fft": 64, "n_mels": 4, "f_min": 3000.0, "f_max": 2000.0},
    ],
)
def test_filterbank_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        mel_filterbank(**kwargs)


# ---------------------------------------------------------------- losses


@pytest.fixture(scope="module")
def mel_loss() -> MultiScaleMelLoss:
    return MultiScaleMelLoss(SR)


@pytest.fixture(scope="module")
def stft_loss() -> MultiScaleSTFTLoss:
    return MultiScaleSTFTLoss()


def test_mel_loss_defaults_follow_spec(mel_loss):
    assert mel_loss.n_mels == (5, 10, 20, 40, 80, 160, 320)
    assert mel_loss.window_lengths == (32, 64, 128, 256, 512, 1024, 2048)
    assert mel_loss.hop_lengths == tuple(w // 4 for w in mel_loss.window_lengths)
    assert (mel_loss.clamp_eps, mel_loss.power, mel_loss.mag_weight) == (1e-5, 1.0, 0.0)
    assert mel_loss.state_dict() == {}  # filterbanks are rebuilt, never saved


@pytest.mark.parametrize("loss_name", ["mel_loss", "stft_loss"])
@pytest.mark.parametrize("length", [2205, 1001, 37])
def test_identical_signals_give_zero(request, loss_name, length):
    loss = request.getfixturevalue(loss_name)
    x = _noise(3, 1, length)
    assert loss(x, x.clone()).item() == 0.0
    assert torch.equal(loss(x, x, reduction="none"), torch.zeros(3))


@pytest.mark.parametrize("loss_name", ["mel_loss", "stft_loss"])
def test_loss_grows_with_noise_level(request, loss_name):
    loss = request.getfixturevalue(loss_name)
    clean = _tone(4001).reshape(1, 1, -1)
    noise = _noise(1, 1, 4001, seed=1)
    values = [loss(clean + scale * noise, clean).item() for scale in (0.001, 0.01, 0.1, 1.0)]
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[0] > 0


@pytest.mark.parametrize("loss_name", ["mel_loss", "stft_loss"])
def test_reduction_none_is_per_item_and_mean_matches(request, loss_name):
    loss = request.getfixturevalue(loss_name)
    ref = _noise(4, 1, 3001)
    est = ref.clone()
    est[1] += _noise(1, 3001, seed=2)[0]
    est[3] += 5 * _noise(1, 3001, seed=3)[0]
    per_item = loss(est, ref, reduction="none")
    assert per_item.shape == (4,)
    assert per_item[0] == 0 and per_item[2] == 0
    assert 0 < per_item[1] < per_item[3]
    torch.testing.assert_close(loss(est, ref), per_item.mean())
    # Each item's value does not depend on the rest of the batch.
    torch.testing.assert_close(loss(est[3:], ref[3:], reduction="none"), per_item[3:])


@pytest.mark.parametrize("loss_name", ["mel_loss", "stft_loss"])
def test_gradient_flows_and_is_finite(request, loss_name):
    loss = request.getfixturevalue(loss_name)
    ref = _noise(2, 1, 1501)
    ref[1] = 0.0  # a silent reference item must not give NaN gradients
    est = torch.zeros_like(ref)
    est[0] = _noise(1, 1501, seed=5)[0]
    est.requires_grad_(True)
    loss(est, ref).backward()
    assert torch.isfinite(est.grad).all()
    assert est.grad[0].abs().sum() > 0


def test_mel_loss_is_sum_of_scales_with_log10_and_clamp():
    # One scale, checked against a direct computation.
    loss = MultiScaleMelLoss(SR, n_mels=(8,), window_lengths=(64,))
    ref, est = _noise(1, 1, 500), _noise(1, 1, 500, seed=9)
    fb = mel_filterbank(SR, 64, 8)

    def log_mel(x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x[:, 0], 64, 16, window=torch.hann_window(64), return_complex=True).abs()
        return torch.log10((fb @ spec).clamp(min=1e-5))

    expected = (log_mel(est) - log_mel(ref)).abs().mean()
    torch.testing.assert_close(loss(est, ref), expected)
    two = MultiScaleMelLoss(SR, n_mels=(8, 8), window_lengths=(64, 64))
    torch.testing.assert_close(two(est, ref), 2 * expected)


def test_mel_mag_weight_adds_linear_term():
    ref, est = _noise(2, 1, 800), _noise(2, 1, 800, seed=4)
    base = MultiScaleMelLoss(SR)(est, ref)
    both = MultiScaleMelLoss(SR, mag_weight=1.0)(est, ref)
    only_mag = MultiScaleMelLoss(SR, mag_weight=1.0, log_weight=0.0)(est, ref)
    torch.testing.assert_close(both, base + only_mag)
    assert only_mag > 0


def test_multichannel_and_2d_inputs(mel_loss):
    ref, est = _noise(2, 2, 900), _noise(2, 2, 900, seed=6)
    per_item = mel_loss(est, ref, reduction="none")
    assert per_item.shape == (2,)
    channel_0 = mel_loss(est[:, :1], ref[:, :1], reduction="none")
    channel_1 = mel_loss(est[:, 1:], ref[:, 1:], reduction="none")
    torch.testing.assert_close(per_item, (channel_0 + channel_1) / 2)
    torch.testing.assert_close(mel_loss(est[:, 0], ref[:, 0], reduction="none"), channel_0)


def test_half_precision_input_is_computed_in_float32(stft_loss):
    ref, est = _noise(1, 1, 1000), _noise(1, 1, 1000, seed=7)
    value = stft_loss(est.bfloat16(), ref.bfloat16())
    assert value.dtype == torch.float32 and torch.isfinite(value)


@pytest.mark.parametrize(
    ("est", "ref", "error"),
    [
        (torch.zeros(2, 1, 100), torch.zeros(2, 1, 101), ValueError),
        (torch.zeros(100), torch.zeros(100), ValueError),
        (torch.zeros(2, 1, 1, 100), torch.zeros(2, 1, 1, 100), ValueError),
        (torch.zeros(2, 1, 100, dtype=torch.long), torch.zeros(2, 1, 100, dtype=torch.long), TypeError),
    ],
)
def test_losses_reject_bad_inputs(mel_loss, est, ref, error):
    with pytest.raises(error):
        mel_loss(est, ref)


def test_bad_reduction_and_mismatched_scales():
    x = _noise(1, 1, 100)
    with pytest.raises(ValueError, match="reduction"):
        MultiScaleSTFTLoss()(x, x, reduction="sum")
    with pytest.raises(ValueError, match="same non-zero length"):
        MultiScaleMelLoss(SR, n_mels=(5, 10), window_lengths=(32,))
    with pytest.raises(ValueError, match="f_min"):
        MultiScaleMelLoss(SR, f_min=(0.0, 0.0))


# ---------------------------------------------------------------- evaluation helpers


def test_distances_are_per_item_and_match_the_classes():
    ref, est = _noise(3, 1, 2000), _noise(3, 1, 2000, seed=8)
    mel = mel_distance(est, ref, SR)
    assert mel.shape == (3,)
    torch.testing.assert_close(mel, MultiScaleMelLoss(SR)(est, ref, reduction="none"))
    stft = stft_distance(est, ref, SR)
    torch.testing.assert_close(stft, MultiScaleSTFTLoss()(est, ref, reduction="none"))
    dac = mel_distance(est, ref, SR, **DAC_EVAL_MEL_KWARGS)
    torch.testing.assert_close(dac, MultiScaleMelLoss(SR, **DAC_EVAL_MEL_KWARGS)(est, ref, reduction="none"))
    assert not torch.allclose(dac, mel)
    assert torch.equal(mel_distance(ref, ref, SR), torch.zeros(3))


# ---------------------------------------------------------------- complex (phase-aware) STFT loss
def test_complex_stft_loss_sees_the_phase_the_mel_loss_does_not():
    reference = _noise(2, 1, 4000)
    loss, mel = MultiScaleComplexSTFTLoss(), MultiScaleMelLoss(sampling_rate=SR)
    assert loss(reference, reference).item() == 0.0
    # a sign flip keeps every magnitude (mel distance 0) and moves every phase by pi
    assert mel(-reference, reference).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(-reference, reference).item() > 0.1
    # a small delay of a low tone is a small phase shift: the complex loss grows with it
    tone = _tone(4000, freq=200.0)[None, None]
    delayed = [torch.roll(tone, shift, dims=-1) for shift in (1, 4)]
    assert 0 < loss(delayed[0], tone).item() < loss(delayed[1], tone).item()
    per_item = loss(-reference, reference, reduction="none")
    assert per_item.shape == (2,) and torch.allclose(per_item.mean(), loss(-reference, reference))


def test_complex_stft_loss_gradient_is_finite_on_silence():
    estimate = torch.zeros(1, 1, 2000, requires_grad=True)
    MultiScaleComplexSTFTLoss()(estimate, _noise(1, 1, 2000)).backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0


def test_complex_stft_loss_rejects_bad_settings():
    with pytest.raises(ValueError, match="power must be in"):
        MultiScaleComplexSTFTLoss(power=0.0)
    with pytest.raises(ValueError, match="window length"):
        MultiScaleComplexSTFTLoss(window_lengths=())
