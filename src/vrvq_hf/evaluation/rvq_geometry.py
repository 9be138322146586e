"""How much each stage of a model's residual quantizer takes away, measured on real audio.

In a residual quantizer every stage should remove part of what the previous stages left. Three numbers
per stage tell whether it does, over all frames of the clips given:

- `residual_energy[k]`: mean square (over frames and latent channels) of the residual entering stage k+1
  (stage 1 sees the latent);
- `cosine[k]`: mean cosine between stage k+1's output and the residual it was chosen for;
- `prefix_error[k]`: squared distance between the sum of the first k+1 stage outputs and the latent,
  relative to the latent's mean energy (1.0 is as far from the latent as sending nothing at all).

`prefix_error[k] * latent_energy` is the energy of the residual left after k+1 stages, so a quantizer
that refines has `prefix_error` falling with k.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["QuantizerGeometry", "quantizer_geometry"]


@dataclass
class QuantizerGeometry:
    """Per-stage figures of [`quantizer_geometry`], each of shape (Nq,); `frames` frames were measured."""

    residual_energy: np.ndarray
    cosine: np.ndarray
    prefix_error: np.ndarray
    latent_energy: float
    frames: int

    def as_dict(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "latent_energy": self.latent_energy,
            "residual_energy": self.residual_energy.tolist(),
            "cosine": self.cosine.tolist(),
            "prefix_error": self.prefix_error.tolist(),
        }


@torch.no_grad()
def quantizer_geometry(model, clips: Iterable[torch.Tensor]) -> QuantizerGeometry:
    """clips: mono waveforms (samples,) at the model's rate -> the quantizer's per-stage geometry over all
    their frames (each clip zero-padded to a whole number of frames, as `encode` does). All stages run on
    every frame, whatever a level would send."""
    stages = model.quantizer.stages
    entering = np.zeros(len(stages))  # summed squared norms of the residual entering each stage
    left = np.zeros(len(stages))  # ... and of what is left after it
    cosine = np.zeros(len(stages))
    latent_energy, frames = 0.0, 0
    for clip in clips:
        if clip.dim() != 1 or clip.numel() == 0:
            raise ValueError(f"each clip must be a non-empty mono waveform (samples,), got shape {tuple(clip.shape)}")
        framed = model._frames(clip.float()[None, None], None)  # the padding encode applies
        latent, _ = model.encoder(framed.waveform, None)  # (1, D, F)
        latent_energy += latent.pow(2).sum().item()
        frames += latent.shape[-1]
        residual = latent
        for index, stage in enumerate(stages):
            stage_out = stage(residual)[0]
            entering[index] += residual.pow(2).sum().item()
            cosine[index] += torch.nn.functional.cosine_similarity(stage_out, residual, dim=1).sum().item()
            residual = residual - stage_out
            left[index] += residual.pow(2).sum().item()
    if frames == 0:
        raise ValueError("no clips given: the geometry needs at least one clip")
    channels = model.config.hidden_size
    return QuantizerGeometry(
        residual_energy=entering / (frames * channels),
        cosine=cosine / frames,
        prefix_error=left / latent_energy,
        latent_energy=latent_energy / (frames * channels),
        frames=frames,
    )
