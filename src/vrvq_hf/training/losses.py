"""Least-squares GAN losses and feature matching (SPEC section 5). Their weights live in the training
config (`LossSection`); the model weights its own commitment, codebook and rate terms (`VRVQConfig`).

Inputs are what :class:`vrvq_hf.training.discriminators.Discriminator` returns: a list with one
entry per sub-discriminator, each entry a list of feature maps whose last element is the logit
map. Each loss is a sum over sub-discriminators of a mean over that sub-discriminator's map(s).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
]

DiscriminatorOutputs = Sequence[Sequence[torch.Tensor]]


def _check_outputs(outputs: DiscriminatorOutputs, name: str) -> None:
    if len(outputs) == 0:
        raise ValueError(f"{name} is empty: expected one list of feature maps per sub-discriminator")
    for i, maps in enumerate(outputs):
        if torch.is_tensor(maps) or len(maps) == 0:
            raise ValueError(
                f"{name}[{i}] must be a non-empty list of feature maps (last = logits), "
                f"got {type(maps).__name__}"
            )


def _check_pair(real: DiscriminatorOutputs, fake: DiscriminatorOutputs) -> None:
    _check_outputs(real, "real_outputs")
    _check_outputs(fake, "fake_outputs")
    if len(real) != len(fake):
        raise ValueError(f"real_outputs has {len(real)} sub-discriminators, fake_outputs {len(fake)}")


def discriminator_loss(
    real_outputs: DiscriminatorOutputs, fake_outputs: DiscriminatorOutputs
) -> torch.Tensor:
    """LSGAN discriminator loss: sum_k mean((1 - D_k(real))^2) + mean(D_k(fake)^2).

    Pass ``fake_outputs`` computed from the *detached* generator output.
    """
    _check_pair(real_outputs, fake_outputs)
    loss = real_outputs[0][-1].new_zeros(())
    for real, fake in zip(real_outputs, fake_outputs):
        loss = loss + (1.0 - real[-1]).pow(2).mean() + fake[-1].pow(2).mean()
    return loss


def generator_adversarial_loss(fake_outputs: DiscriminatorOutputs) -> torch.Tensor:
    """LSGAN generator loss: sum_k mean((1 - D_k(fake))^2)."""
    _check_outputs(fake_outputs, "fake_outputs")
    loss = fake_outputs[0][-1].new_zeros(())
    for fake in fake_outputs:
        loss = loss + (1.0 - fake[-1]).pow(2).mean()
    return loss


def feature_matching_loss(
    real_outputs: DiscriminatorOutputs, fake_outputs: DiscriminatorOutputs
) -> torch.Tensor:
    """Sum over sub-discriminators and their hidden feature maps (logits excluded) of
    ``mean|fake_map - real_map|``; real maps are detached."""
    _check_pair(real_outputs, fake_outputs)
    loss = fake_outputs[0][-1].new_zeros(())
    for k, (real, fake) in enumerate(zip(real_outputs, fake_outputs)):
        if len(real) != len(fake):
            raise ValueError(f"sub-discriminator {k}: {len(real)} real feature maps, {len(fake)} fake")
        for real_map, fake_map in zip(real[:-1], fake[:-1]):
            if real_map.shape != fake_map.shape:
                raise ValueError(
                    f"sub-discriminator {k}: feature map shapes differ, real {tuple(real_map.shape)} "
                    f"vs fake {tuple(fake_map.shape)} (score real and fake audio of the same length)"
                )
            loss = loss + F.l1_loss(fake_map, real_map.detach())
    return loss
