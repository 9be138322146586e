import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))

from vrvq_hf import VRVQConfig, VRVQModel  # noqa: E402

TINY = dict(
    sampling_rate=16000,
    encoder_hidden_size=4,
    downsampling_ratios=[2, 4],
    decoder_hidden_size=16,
    n_codebooks=4,
    codebook_size=16,
    codebook_dim=4,
    importance_channels=[8, 4, 1],
)


def tiny_config(**overrides) -> VRVQConfig:
    return VRVQConfig(**{**TINY, **overrides})


@pytest.fixture
def tiny_model() -> VRVQModel:
    torch.manual_seed(0)
    return VRVQModel(tiny_config()).eval()


def speech_like(seconds: float = 0.5, sampling_rate: int = 16000, seed: int = 0) -> torch.Tensor:
    """(1, 1, T): bursts of modulated tones separated by silence."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sampling_rate)) / sampling_rate
    tone = torch.sin(2 * torch.pi * 220 * t) + 0.5 * torch.sin(2 * torch.pi * 660 * t)
    envelope = (torch.sin(2 * torch.pi * 3 * t) > 0.2).float()
    noise = 0.05 * torch.randn(t.shape, generator=g)
    return (0.3 * tone * envelope + noise * envelope)[None, None]
