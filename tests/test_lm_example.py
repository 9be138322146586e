"""examples/speech_lm_tokens.py (the README's speech-LM example), run with a tiny model."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vrvq_hf import VRVQFeatureExtractor, VRVQModel
from vrvq_hf.tokens import tokens_to_codes

from .conftest import load_file_module, tiny_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "speech_lm_tokens.py"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm") / "tiny"
    torch.manual_seed(0)
    config = tiny_config(initializer="scale_preserving")
    VRVQModel(config).save_pretrained(folder)
    VRVQFeatureExtractor.from_model_config(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def example():
    return load_file_module(EXAMPLE, "speech_lm_tokens")


def test_example_steps(example, tiny_model_dir):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = example.main(tiny_model_dir, level=1.0, prompt_frames=10, new_frames=4)
    finally:
        torch.set_num_threads(threads)
    encoded, batch, vocab = result["encoded"], result["batch"], result["vocab"]
    assert vocab.vocab_size == 3 + 4 + 4 * 16

    # clips of 40, 55, 70 frames -> sequences of 2 + sum(1 + n_t) tokens, and back exactly
    assert (encoded.num_codebooks > 0).sum(dim=1).tolist() == [40, 55, 70]
    assert batch["attention_mask"].sum(dim=1).tolist() == (2 + (encoded.num_codebooks + 1).mul(
        encoded.num_codebooks > 0).sum(dim=1)).tolist()
    codes, counts = tokens_to_codes(batch["input_ids"], vocab, attention_mask=batch["attention_mask"])
    assert torch.equal(codes, encoded.audio_codes) and torch.equal(counts, encoded.num_codebooks)

    # an untrained LM: loss near ln(vocab size)
    assert math.isfinite(result["loss"]) and abs(result["loss"] - math.log(vocab.vocab_size)) < 1.5

    # generation continues the prompt with well-formed frames; they decode to audio
    generated = result["generated"]
    prompt_length = 1 + int((encoded.num_codebooks[0, :10] + 1).sum())
    assert torch.equal(generated[0, :prompt_length], batch["input_ids"][0, :prompt_length])
    assert generated.shape[1] > prompt_length
    codes, counts = result["codes"], result["counts"]
    assert counts.shape[1] > 10 and bool((counts > 0).all())
    assert torch.equal(codes[0, :, :10], encoded.audio_codes[0, :, :10])
    assert result["audio"].shape == (1, 1, counts.shape[1] * 8)
    assert torch.isfinite(result["audio"]).all()


def test_example_runs_as_a_script(tiny_model_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(EXAMPLE), "--model", tiny_model_dir, "--level", "0.5"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "training loss" in result.stdout and "s of audio" in result.stdout
