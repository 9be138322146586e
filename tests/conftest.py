import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))

from vrvq_hf import VRVQConfig, VRVQModel  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_file_module(path: Path, name: str) -> ModuleType:
    """A Python file outside the package (a script, the Space's app, an example) as a fresh module `name`.

    The module is registered in `sys.modules` before it runs, as an import would, so that what it defines
    (dataclasses, pickled functions) can find it.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a module (a command-line script's main() is its command line)."""
    return load_file_module(REPO_ROOT / "scripts" / f"{name}.py", f"{name}_script")


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
