"""Residual vector quantization with factorised, L2-normalised codebooks and per-frame codebook masks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class FactorizedCodebook(nn.Module):
    """One VQ stage: project (B, D, F) down to (B, d, F), pick the nearest code by cosine similarity,
    project the code vector back up to (B, D, F)."""

    def __init__(self, latent_dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.in_proj = nn.Conv1d(latent_dim, codebook_dim, kernel_size=1)
        self.out_proj = nn.Conv1d(codebook_dim, latent_dim, kernel_size=1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def nearest_codes(self, projected: torch.Tensor) -> torch.Tensor:
        """projected (B, d, F) -> codes (B, F): the code with the highest cosine similarity (the nearest
        neighbour of the L2-normalised vectors). An all-zero latent ties with every code and gets code 0."""
        queries = F.normalize(projected.transpose(1, 2), dim=-1)  # (B, F, d)
        keys = F.normalize(self.codebook.weight, dim=-1)  # (K, d)
        return (queries @ keys.t()).argmax(dim=-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, F) -> decoded code vectors in latent space (B, D, F)."""
        return self.out_proj(self.codebook(codes).transpose(1, 2))

    def forward(self, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """residual (B, D, F) -> (quantized (B, D, F), codes (B, F), commitment (B, F), codebook (B, F)).

        The two losses are per-frame mean squared errors between the projected latent and its code vector,
        with the stop-gradient on the code side (commitment) or the latent side (codebook).
        """
        projected = self.in_proj(residual)
        codes = self.nearest_codes(projected)
        code_vectors = self.codebook(codes).transpose(1, 2)
        commitment = (projected - code_vectors.detach()).pow(2).mean(dim=1)
        codebook = (code_vectors - projected.detach()).pow(2).mean(dim=1)
        straight_through = projected + (code_vectors - projected).detach()
        return self.out_proj(straight_through), codes, commitment, codebook


@dataclass
class QuantizerOutput:
    """What [`ResidualVectorQuantizer.forward`] returns.

    quantized: (B, D, F) sum of the masked stage outputs.
    codes: (B, Nq, F) the code every stage chose (also where the mask is off).
    commitment_loss, codebook_loss: (B, Nq, F) per-frame losses of every stage, unmasked.
    remaining_energy: (B, Nq, F) squared norm of what is left after each stage, that is, the squared distance
        between the sum of the first k+1 stage outputs and the latent (unmasked).
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    remaining_energy: torch.Tensor


class ResidualVectorQuantizer(nn.Module):
    """Nq stages, each quantizing what the previous ones left. Residuals run through all stages; a
    per-frame mask (B, Nq, F) decides which stages count in the quantized latent (and are transmitted)."""

    def __init__(self, latent_dim: int, n_codebooks: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.stages = nn.ModuleList(
            [FactorizedCodebook(latent_dim, codebook_size, codebook_dim) for _ in range(n_codebooks)]
        )

    def forward(self, latent: torch.Tensor, codebook_mask: torch.Tensor) -> QuantizerOutput:
        """latent (B, D, F); codebook_mask (B, Nq, F), float (0/1 forward values, may carry gradient)."""
        residual = latent
        quantized = torch.zeros_like(latent)
        codes, commitment, codebook, remaining = [], [], [], []
        for index, stage in enumerate(self.stages):
            stage_out, stage_codes, stage_commitment, stage_codebook = stage(residual)
            residual = residual - stage_out
            quantized = quantized + stage_out * codebook_mask[:, index : index + 1, :]
            codes.append(stage_codes)
            commitment.append(stage_commitment)
            codebook.append(stage_codebook)
            remaining.append(residual.pow(2).sum(dim=1))
        return QuantizerOutput(
            quantized=quantized,
            codes=torch.stack(codes, dim=1),
            commitment_loss=torch.stack(commitment, dim=1),
            codebook_loss=torch.stack(codebook, dim=1),
            remaining_energy=torch.stack(remaining, dim=1),
        )

    def from_codes(self, codes: torch.Tensor, codebook_mask: torch.Tensor) -> torch.Tensor:
        """codes (B, n, F) with n <= Nq and codebook_mask (B, n, F) -> quantized latent (B, D, F)."""
        quantized = 0.0
        for index in range(codes.shape[1]):
            stage_latent = self.stages[index].lookup(codes[:, index])
            quantized = quantized + stage_latent * codebook_mask[:, index : index + 1, :].to(stage_latent.dtype)
        return quantized
