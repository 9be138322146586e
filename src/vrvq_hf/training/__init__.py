"""Training: the Accelerate trainer, its config files, GAN discriminators and losses (spectral losses live in
``vrvq_hf.spectral``). Import the trainer from ``vrvq_hf.training.trainer`` (it needs accelerate)."""

from .discriminators import Discriminator, MultiBandSTFTDiscriminator, MultiPeriodDiscriminator
from .losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)

__all__ = [
    "Discriminator",
    "MultiBandSTFTDiscriminator",
    "MultiPeriodDiscriminator",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
]
