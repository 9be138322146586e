"""GAN discriminators (structure, sizes, odd lengths) and the least-squares GAN losses."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

from vrvq_hf.training.discriminators import (
    DEFAULT_BANDS,
    BandSTFTDiscriminator,
    Discriminator,
    PeriodDiscriminator,
)
from vrvq_hf.training.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)


def _audio(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return 0.3 * torch.randn(batch, 1, length, generator=torch.Generator().manual_seed(seed))


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def tiny() -> Discriminator:
    torch.manual_seed(0)
    return Discriminator(width=0.125)


@pytest.fixture(scope="module")
def pair() -> Discriminator:
    """One period and one STFT sub-discriminator: enough for gradient checks, quick to warm up."""
    torch.manual_seed(0)
    return Discriminator(periods=(3,), fft_sizes=(512,), width=0.125)


# ---------------------------------------------------------------- discriminators


@pytest.mark.parametrize("length", [2, 11, 517, 4099])
def test_output_structure_for_odd_lengths(tiny, length):
    outputs = tiny(_audio(2, length))
    assert len(outputs) == tiny.num_discriminators == 5 + 3
    for maps, period in zip(outputs[:5], (2, 3, 5, 7, 11)):
        assert len(maps) == 6
        assert all(m.shape[0] == 2 and m.shape[-1] == period for m in maps)
        assert maps[-1].shape[1] == 1
    for maps in outputs[5:]:
        assert len(maps) == 5 * len(DEFAULT_BANDS) + 1
        assert maps[-1].dim() == 4 and maps[-1].shape[:2] == (2, 1)
    assert all(torch.isfinite(m).all() for maps in outputs for m in maps)


def test_period_discriminator_folds_time_by_period():
    disc = PeriodDiscriminator(5, channels=(4, 4, 4, 4, 4))
    maps = disc(_audio(1, 101))  # padded to 105 = 21 x 5
    assert maps[0].shape == (1, 4, 7, 5)  # time stride 3: ceil(21 / 3)
    assert [m.shape[2] for m in maps] == [7, 3, 1, 1, 1, 1]


def test_stft_discriminator_frames_and_bands():
    disc = BandSTFTDiscriminator(512, channels=4)
    assert disc.band_bins == [(0, 25), (25, 64), (64, 128), (128, 192), (192, 257)]
    x = _audio(1, 1000)
    spec = disc.spectrogram(x)
    assert spec.shape == (1, 2, 8, 257)  # ceil(1000 / 128) frames; real, imag
    # Complex STFT content: a DC input only lights the lowest bins.
    dc = disc.spectrogram(torch.ones(1, 1, 1024))
    energy = dc.pow(2).sum(dim=(0, 1, 2))
    assert energy[:2].sum() > 0.99 * energy.sum()
    logits = disc(x)[-1]
    assert logits.shape[2] == 8


def test_small_variant_has_far_fewer_parameters():
    full, small = Discriminator(), Discriminator.small()
    n_full, n_small = _params(full), _params(small)
    assert 40e6 < n_full < 45e6  # DAC-size: ~8.2 M per period discriminator, ~0.1 M per STFT one
    assert n_small * 50 < n_full
    assert Discriminator(width=0.25).mpd.discriminators[0].convs[-1].conv.out_channels == 256


def test_convolutions_are_weight_normalised(tiny):
    convs = [m for m in tiny.modules() if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d)]
    assert len(convs) == 5 * 6 + 3 * (5 * 5 + 1)
    assert all(parametrize.is_parametrized(c, "weight") for c in convs)


def test_input_validation(tiny):
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        tiny(torch.zeros(2, 100))
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        tiny(torch.zeros(2, 2, 100))
    with pytest.raises(TypeError):
        tiny(torch.zeros(2, 1, 100, dtype=torch.long))
    with pytest.raises(ValueError, match="width"):
        Discriminator(width=0)
    with pytest.raises(ValueError, match="holds no frequency bin"):
        Discriminator(periods=(), fft_sizes=(16,), bands=((0.0, 0.01), (0.01, 1.0)))


def test_normalize_input_makes_scores_gain_invariant():
    torch.manual_seed(1)
    disc = Discriminator(periods=(2,), fft_sizes=(256,), width=0.125, normalize_input=True)
    x = _audio(1, 700)
    a, b = disc(x), disc(3.0 * x + 0.1)
    for maps_a, maps_b in zip(a, b):
        torch.testing.assert_close(maps_a[-1], maps_b[-1], atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- losses on hand-made inputs


def _outputs(logit: float, feature: float = 0.0, shapes=((2, 3), (4,))) -> list[list[torch.Tensor]]:
    return [
        [torch.full(s, feature) for s in shapes] + [torch.full((2, 5), logit)],
        [torch.full((3,), feature), torch.full((1, 7), logit)],
    ]


def test_discriminator_loss_values():
    assert discriminator_loss(_outputs(1.0), _outputs(0.0)).item() == 0.0
    # (1 - 0)^2 + 1^2 per sub-discriminator, two of them.
    assert discriminator_loss(_outputs(0.0), _outputs(1.0)).item() == pytest.approx(4.0)
    assert discriminator_loss(_outputs(0.5), _outputs(0.5)).item() == pytest.approx(2 * (0.25 + 0.25))


def test_generator_adversarial_loss_values():
    assert generator_adversarial_loss(_outputs(1.0)).item() == 0.0
    assert generator_adversarial_loss(_outputs(0.0)).item() == pytest.approx(2.0)
    assert generator_adversarial_loss(_outputs(-1.0)).item() == pytest.approx(8.0)


def test_feature_matching_loss_values_ignore_logits():
    real, fake = _outputs(1.0, feature=0.0), _outputs(-5.0, feature=0.5)
    # Three hidden maps in total, each mean |0.5 - 0| = 0.5; logits do not count.
    assert feature_matching_loss(real, fake).item() == pytest.approx(1.5)
    assert feature_matching_loss(real, _outputs(7.0, feature=0.0)).item() == 0.0


def test_loss_input_validation():
    with pytest.raises(ValueError, match="sub-discriminators"):
        discriminator_loss(_outputs(1.0), _outputs(0.0)[:1])
    with pytest.raises(ValueError, match="empty"):
        generator_adversarial_loss([])
    with pytest.raises(ValueError, match="list of feature maps"):
        generator_adversarial_loss([torch.zeros(3)])
    with pytest.raises(ValueError, match="same length"):
        feature_matching_loss(_outputs(1.0), _outputs(1.0, shapes=((2, 4), (4,))))


def test_gradients_reach_generator_output_and_not_real_features(pair):
    real = _audio(2, 1201, seed=3)
    fake = _audio(2, 1201, seed=4).requires_grad_(True)
    real_out, fake_out = pair(real), pair(fake)
    pair.zero_grad()
    loss = generator_adversarial_loss(fake_out) + 2.0 * feature_matching_loss(real_out, fake_out)
    loss.backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    # Feature matching alone: the gradient through real maps is cut (detached).
    real_leaf = real.clone().requires_grad_(True)
    fake_out = pair(fake.detach())
    feature_matching_loss(pair(real_leaf), fake_out).backward()
    assert real_leaf.grad is None or real_leaf.grad.abs().sum() == 0


def test_discriminator_step_gradients_reach_discriminator_only(pair):
    real = _audio(2, 900, seed=5)
    fake = _audio(2, 900, seed=6).requires_grad_(True)
    pair.zero_grad()
    discriminator_loss(pair(real), pair(fake.detach())).backward()
    assert fake.grad is None
    grads = [p.grad for p in pair.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
