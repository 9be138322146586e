"""The main job: encode a clip at several VBR levels, in CBR mode and at a target bitrate, write each as a
real .vrvq file, decode it from the file, and report counted kbps, file size and mel distance.

    python scripts/demo.py [--model PATH_OR_ID] [--input clip.wav] [--output-dir outputs/demo]

Without --input it speaks a sentence with a pause through espeak-ng (a generated tone clip where espeak-ng
is missing).

Uses the model shipped with the package (vrvq_hf.DEFAULT_MODEL) when there is one; otherwise it says so and
uses a model converted from a randomly initialised DAC, whose audio is noise (the bit accounting is real).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

from vrvq_hf import VRVQFeatureExtractor, VRVQModel
from vrvq_hf.audio_io import load_audio
from vrvq_hf.bitstream import HEADER_SIZE, model_fingerprint, read_file, write_file
from vrvq_hf.spectral import mel_distance


def demo_clip(sampling_rate: int, seconds: float = 4.0) -> np.ndarray:
    """Speech-like test signal with pauses: voiced harmonic bursts with vibrato, then silence."""
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sampling_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = (np.sin(2 * np.pi * 2.5 * t) > 0) * (t % 2.0 < 1.4)
    rng = np.random.default_rng(0)
    return (0.25 * voiced * syllables + 0.01 * rng.standard_normal(t.size) * syllables).astype(np.float32)


SPOKEN_TEXT = "Variable bitrate coding spends bits where the sound is. [[_:_:_:_:_:_:]] Silence costs almost nothing."


def spoken_clip(sampling_rate: int) -> np.ndarray | None:
    """A spoken sentence with a pause, from espeak-ng (scripts/setup.sh installs it); None without it."""
    if shutil.which("espeak-ng") is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "speech.wav")
        subprocess.run(["espeak-ng", "-w", path, SPOKEN_TEXT], check=True, capture_output=True)
        return load_audio(path, sampling_rate=sampling_rate, downmix=True)


def load_model(name: str | None) -> tuple[VRVQModel, str]:
    if name:
        return VRVQModel.from_pretrained(name), name
    import vrvq_hf

    default = getattr(vrvq_hf, "DEFAULT_MODEL", None)
    if default and os.path.isdir(default):
        return VRVQModel.from_pretrained(default), "the shipped default model"
    from transformers import DacConfig, DacModel

    from vrvq_hf.convert import from_transformers_dac

    print("NOTE: no trained model ships yet; using a VRVQ converted from a RANDOMLY INITIALISED small DAC.\n"
          "      Its audio is noise; the codes, masks and bitrates are computed for real.")
    torch.manual_seed(0)
    dac = DacModel(DacConfig(encoder_hidden_size=16, decoder_hidden_size=192, n_codebooks=8, sampling_rate=44100))
    return from_transformers_dac(dac), "random DAC (untrained)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--input", default=None, help="audio file (resampled and down-mixed, with a message)")
    parser.add_argument("--output-dir", default="outputs/demo")
    args = parser.parse_args(argv)

    model, origin = load_model(args.model)
    model.eval()
    config = model.config
    fe = VRVQFeatureExtractor.from_model_config(config)
    if args.input:
        audio = load_audio(args.input, sampling_rate=config.sampling_rate, downmix=True)
        print(f"input: {args.input} (resampled to {config.sampling_rate} Hz and down-mixed to mono)")
    elif (audio := spoken_clip(config.sampling_rate)) is not None:
        print(f"input: espeak-ng speaking {SPOKEN_TEXT!r} ({len(audio) / config.sampling_rate:.1f} s, with a pause)")
    else:
        audio = demo_clip(config.sampling_rate)
        print("input: a generated 4 s speech-like clip with pauses (espeak-ng is not installed)")
    inputs = fe(audio, sampling_rate=config.sampling_rate)
    print(f"model: {origin}; {config.sampling_rate} Hz, {config.n_codebooks} codebooks x {config.bits_per_code} bits, "
          f"{config.frame_rate:.2f} frames/s; full rate {config.max_kbps:.2f} kbps incl. "
          f"{config.side_info_kbps:.3f} kbps side information")
    os.makedirs(args.output_dir, exist_ok=True)
    modes = [("level", lv) for lv in (0.25, 0.5, 1.0, 2.0)] + [("n_quantizers", n) for n in (1, config.n_codebooks // 2, config.n_codebooks)]
    modes.append(("target_kbps", round((config.min_kbps + config.max_kbps) / 2, 2)))
    reference = inputs["input_values"][..., : len(audio)]
    model_id = model_fingerprint(model.state_dict(), config.to_dict())
    seconds = len(audio) / config.sampling_rate
    print(f"{'mode':<20} {'kbps':>7} {'codebooks/frame':>16} {'file bytes':>11} {'file kbps':>10} {'mel dist':>9}")
    for name, value in modes:
        with torch.no_grad():
            encoded = model.encode(inputs["input_values"], inputs["padding_mask"], **{name: value})
        path = os.path.join(args.output_dir, f"{name}_{value}.vrvq")
        size = write_file(
            path, encoded.audio_codes[0], encoded.num_codebooks[0], sampling_rate=config.sampling_rate,
            hop_length=config.hop_length, codebook_size=config.codebook_size, num_samples=len(audio), model_id=model_id,
        )
        stored = read_file(path, expected_model_id=model_id).model_inputs()  # decode from the file itself
        with torch.no_grad():
            decoded = model.decode(stored["audio_codes"], num_codebooks=stored["num_codebooks"]).audio_values[..., : len(audio)]
        mel = mel_distance(decoded, reference, config.sampling_rate).item()
        counts = encoded.num_codebooks.float().mean().item()
        payload_kbps = (size - HEADER_SIZE) * 8 / seconds / 1000
        print(f"{name + '=' + str(value):<20} {encoded.bitrate_kbps.item():7.3f} {counts:16.2f} {size:11d} "
              f"{payload_kbps:10.3f} {mel:9.3f}")
        _write_wav(os.path.join(args.output_dir, f"{name}_{value}.wav"), decoded[0, 0].numpy(), config.sampling_rate)
    print(f"file kbps = (file size - {HEADER_SIZE}-byte header) x 8 / duration; it equals the counted kbps up to "
          "the last byte's padding")
    print(f".vrvq files and decoded audio written to {args.output_dir}/")
    return 0


def _write_wav(path: str, audio: np.ndarray, sampling_rate: int) -> None:
    import soundfile

    soundfile.write(path, audio, sampling_rate, subtype="PCM_16")


if __name__ == "__main__":
    sys.exit(main())
