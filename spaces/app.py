"""VRVQ demo: code a clip at a variable bitrate, hear the result, and see where the bits went.

Upload or record audio, choose a mode (VBR level, target kbps or CBR codebooks) and press the button. The
app encodes the clip, writes the real compressed `.vrvq` file, decodes the reconstruction *from that file*,
and shows the counted bitrate (side information included), the file size and the bitrate it implies, and
the codebooks used per frame over the spectrogram.

Environment: VRVQ_MODEL (model folder or hub id; default: the model shipped with vrvq_hf),
VRVQ_MAX_SECONDS (longest clip accepted, default 60), VRVQ_MAX_FILE_SIZE (upload limit, default "50mb").
The handlers are plain functions (`load_codec`, `read_clip`, `encode_decode`) usable without a server.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import soundfile as sf
import torch

import vrvq_hf
from vrvq_hf import VRVQFeatureExtractor, VRVQModel
from vrvq_hf.audio_io import AudioLoadError, read_audio, resample
from vrvq_hf.bitstream import HEADER_SIZE, decode_bitstream, encode_bitstream, model_fingerprint
from vrvq_hf.evaluation.plots import plot_codebook_usage

logger = logging.getLogger("vrvq_space")

MODE_LEVEL, MODE_TARGET, MODE_CBR = "VBR level", "Target kbps", "CBR codebooks"
MODES = (MODE_LEVEL, MODE_TARGET, MODE_CBR)
API_NAME = "encode_decode"
MIN_SECONDS = 0.1
MAX_LEVEL = 100.0
SILENCE_DBFS = -60.0  # a clip whose peak stays below this is treated as silence
WORK_ROOT = Path(tempfile.gettempdir()) / "vrvq-space"
KEEP_RESULTS_S = 3600.0


def max_seconds() -> float:
    """Longest clip accepted, from VRVQ_MAX_SECONDS (default 60 s)."""
    try:
        return float(os.environ.get("VRVQ_MAX_SECONDS", "60"))
    except ValueError:
        return 60.0


class InputError(ValueError):
    """A problem with what the user gave; its message is shown on the page as it is."""


# ------------------------------------------------------------------------------------------------ the model
@dataclass
class Codec:
    """A loaded model with what the file format needs: its fingerprint and (optional) entropy tables."""

    model: VRVQModel
    name: str
    fingerprint: bytes
    tables: Any = None  # vrvq_hf.entropy.CodeTables or None (fixed-length files)

    @property
    def config(self) -> Any:
        return self.model.config


def _load_tables(name: str) -> Any:
    """The model's code_tables.safetensors (folder or hub repo), or None when it has none."""
    try:
        from vrvq_hf.entropy import TABLES_FILENAME, CodeTables

        if os.path.isdir(name):
            path = os.path.join(name, TABLES_FILENAME)
            return CodeTables.load(path) if os.path.isfile(path) else None
        from huggingface_hub import hf_hub_download

        return CodeTables.load(hf_hub_download(name, TABLES_FILENAME))
    except Exception as error:  # no tables, offline, or the entropy coder missing: fixed-length files
        logger.info("no entropy tables for %s (%s): writing fixed-length files", name, error)
        return None


def load_codec(name: str | None = None) -> Codec:
    """Load `name`, else $VRVQ_MODEL, else the model shipped with vrvq_hf (a folder or a hub id)."""
    name = name or os.environ.get("VRVQ_MODEL") or vrvq_hf.DEFAULT_MODEL
    if name == vrvq_hf.DEFAULT_MODEL and not os.path.isfile(os.path.join(name, "config.json")):
        raise FileNotFoundError(
            f"this vrvq_hf installation ships no model ({name} is missing); set VRVQ_MODEL to a model "
            "folder or a hub id, e.g. VRVQ_MODEL=vrvq-hf/vrvq-small-24khz"
        )
    model = VRVQModel.from_pretrained(name).eval()
    return Codec(model, str(name), model_fingerprint(model.state_dict(), model.config), _load_tables(name))


# ------------------------------------------------------------------------------------------------ input
def read_clip(path: str | os.PathLike | None, sampling_rate: int) -> tuple[np.ndarray, list[str]]:
    """An uploaded file -> mono float32 audio (T,) at `sampling_rate` and notes on what was changed.

    Raises InputError for: no file, a file that is not audio, an empty, too short, too long or silent clip.
    """
    if path is None or str(path) == "":
        raise InputError("No audio: upload a file or record a clip first.")
    path = os.fspath(path)
    name = os.path.basename(path)
    limit = max_seconds()
    seconds = _probe_seconds(path)  # refuse long files before decoding them
    if seconds is not None and seconds > limit:
        raise InputError(_too_long(seconds, limit))
    try:
        audio, rate = read_audio(path)
    except AudioLoadError:
        raise InputError(
            f"Could not read '{name}' as audio. Upload a sound file (WAV, FLAC, OGG, MP3, ...)."
        ) from None
    channels, samples = audio.shape
    if samples == 0:
        raise InputError(f"'{name}' holds no audio samples (an empty clip).")
    seconds = samples / rate
    if seconds > limit:
        raise InputError(_too_long(seconds, limit))
    if seconds < MIN_SECONDS:
        raise InputError(f"The clip is only {1000 * seconds:.0f} ms long; give at least {MIN_SECONDS:g} s.")
    if not np.isfinite(audio).all():
        raise InputError(f"'{name}' contains invalid samples (NaN or infinity).")
    notes = []
    mono = audio.mean(axis=0)
    if channels > 1:
        notes.append(f"down-mixed {channels} channels to mono (the model is mono)")
    if rate != sampling_rate:
        mono = resample(mono, rate, sampling_rate)
        notes.append(f"resampled from {rate} Hz to {sampling_rate} Hz (the model's rate)")
    peak = float(np.abs(mono).max()) if mono.size else 0.0
    if peak == 0.0 or 20 * math.log10(peak) < SILENCE_DBFS:
        level = "digital silence" if peak == 0.0 else f"peak {20 * math.log10(peak):.0f} dBFS"
        raise InputError(f"The clip is silent ({level}); give a clip with some sound in it.")
    if peak > 1.0:
        mono = mono / peak
        notes.append(f"scaled down by {20 * math.log10(peak):.1f} dB (the peak exceeded full scale)")
    return mono.astype(np.float32), notes


def _probe_seconds(path: str) -> float | None:
    """The file's duration from its header (soundfile, else ffprobe) without decoding it; None if unknown."""
    try:
        return float(sf.info(path).duration)
    except Exception:
        pass
    if shutil.which("ffprobe") is None:
        return None
    try:
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
            capture_output=True, text=True, timeout=30,
        )
        return float(probe.stdout.strip())
    except (ValueError, subprocess.SubprocessError, OSError):
        return None


def _too_long(seconds: float, limit: float) -> str:
    return f"The clip is {seconds:.1f} s long; this demo codes at most {limit:g} s. Trim it and try again."


def _number(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise InputError(f"{what} must be a finite number, got {value!r}.")
    return number


def mode_arguments(config: Any, mode: str, level: Any, target_kbps: Any, n_codebooks: Any) -> dict[str, Any]:
    """The `encode` keyword for the chosen mode, checked against the model: level / target_kbps / n_quantizers."""
    if mode == MODE_LEVEL:
        value = _number(level, "The level")
        if not 0 <= value <= MAX_LEVEL:
            raise InputError(f"The level must be between 0 and {MAX_LEVEL:g}, got {value:g}.")
        return {"level": value}
    if mode == MODE_TARGET:
        value = _number(target_kbps, "The target bitrate")
        low, high = config.min_kbps, config.max_kbps
        if not low <= value <= high:
            raise InputError(
                f"The target bitrate must be between {low:.2f} and {high:.2f} kbps for this model "
                f"(1 to {config.n_codebooks} codebooks per frame, side information included); got {value:g}."
            )
        return {"target_kbps": value}
    if mode == MODE_CBR:
        value = _number(n_codebooks, "The number of codebooks")
        if value != round(value) or not 1 <= value <= config.n_codebooks:
            raise InputError(f"The number of codebooks must be a whole number from 1 to {config.n_codebooks}, got {value:g}.")
        return {"n_quantizers": int(round(value))}
    raise InputError(f"Unknown mode {mode!r}; choose one of: {', '.join(MODES)}.")


# ------------------------------------------------------------------------------------------------ coding
@dataclass
class Result:
    """What one request produced: numbers for the page and the files it links."""

    kbps: float  # counted: codes + side information, per second of coded frames
    side_info_kbps: float
    mean_codebooks: float
    num_frames: int
    duration_s: float  # of the clip
    file_bytes: int  # the .vrvq file on disk
    payload_bytes: int
    entropy_coded: bool
    level: float | None
    mode: str
    original_path: str
    reconstruction_path: str
    vrvq_path: str
    plot_path: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def file_kbps(self) -> float:
        """Bitrate the file size implies over the clip's duration (header included)."""
        return 8 * self.file_bytes / self.duration_s / 1000

    def markdown(self, config: Any) -> str:
        level = f", level {self.level:.3g}" if self.level is not None else ""
        coding = "entropy coded" if self.entropy_coded else "fixed-length codes"
        lines = [
            f"### Counted bitrate: {self.kbps:.3f} kbps",
            f"{self.mode}{level}: {self.mean_codebooks:.2f} of {config.n_codebooks} codebooks per frame on average, "
            f"{self.num_frames} frames at {config.frame_rate:.2f} frames/s; codes "
            f"{self.kbps - self.side_info_kbps:.3f} kbps + side information {self.side_info_kbps:.3f} kbps "
            f"({config.side_info_bits} bits per frame). This model spans {config.min_kbps:.2f} to "
            f"{config.max_kbps:.2f} kbps.",
            f"### .vrvq file: {self.file_bytes:,d} bytes = {8 * self.file_bytes / self.duration_s / 1000:.3f} kbps",
            f"{HEADER_SIZE}-byte header + {self.payload_bytes:,d}-byte payload ({coding}) for "
            f"{self.duration_s:.2f} s of audio; the reconstruction is decoded from this file.",
        ]
        if self.notes:
            lines.append("**Input:** " + "; ".join(self.notes) + ".")
        return "\n\n".join(lines)


def _request_folder(root: Path) -> Path:
    """A fresh folder for one request's files; folders older than KEEP_RESULTS_S are removed."""
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in root.glob("req-*"):
        try:
            if now - old.stat().st_mtime > KEEP_RESULTS_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="req-", dir=root))


def _plot(codec: Codec, audio: np.ndarray, mode: str, encoded: Any, path: Path) -> str | None:
    """Codebooks per frame over the spectrogram at the level used (for CBR: the VBR level of equal kbps)."""
    model, config = codec.model, codec.config
    if model.importance_subnet is None:
        return None
    if mode == MODE_CBR:
        with torch.inference_mode():
            same_rate = model.encode(torch.from_numpy(audio).view(1, 1, -1), target_kbps=float(encoded.bitrate_kbps[0]))
        level = float(same_rate.level[0])
        title = (f"CBR uses {int(encoded.num_codebooks.max())} codebooks on every frame; "
                 f"VBR at the same bitrate (level {level:.3g}) would spend them like this")
    else:
        level = float(encoded.level[0])
        title = f"codebooks used per frame (of {config.n_codebooks}) at level {level:.3g}, over the log-mel spectrogram"
    return str(plot_codebook_usage(model, audio, levels=(level,), path=path, title=title))


def encode_decode(
    codec: Codec,
    audio_path: str | os.PathLike | None,
    mode: str = MODE_LEVEL,
    level: Any = 1.0,
    target_kbps: Any = None,
    n_codebooks: Any = None,
    out_dir: str | os.PathLike | None = None,
) -> Result:
    """Read, encode, write the .vrvq file, decode from it, and plot. Raises InputError for bad input."""
    config = codec.config
    kwargs = mode_arguments(config, mode, level, target_kbps, n_codebooks)
    if "n_quantizers" not in kwargs and codec.model.importance_subnet is None:
        raise InputError(f"This model is constant-bitrate only; choose the mode '{MODE_CBR}'.")
    audio, notes = read_clip(audio_path, config.sampling_rate)
    folder = Path(out_dir) if out_dir is not None else _request_folder(WORK_ROOT)
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(os.fspath(audio_path)).stem[:40] or "clip"
    inputs = VRVQFeatureExtractor.from_model_config(config)(audio, sampling_rate=config.sampling_rate)
    with torch.inference_mode():
        encoded = codec.model.encode(inputs["input_values"], inputs["padding_mask"], **kwargs)
    counts = encoded.num_codebooks[0]
    valid = counts > 0
    data = encode_bitstream(
        encoded.audio_codes[0][:, valid], counts[valid], sampling_rate=config.sampling_rate,
        hop_length=config.hop_length, codebook_size=config.codebook_size, num_samples=audio.size,
        model_id=codec.fingerprint, entropy_tables=codec.tables,
    )
    vrvq_path = folder / f"{stem}.vrvq"
    vrvq_path.write_bytes(data)
    stream = decode_bitstream(vrvq_path.read_bytes(), expected_model_id=codec.fingerprint, entropy_tables=codec.tables)
    with torch.inference_mode():
        decoded = codec.model.decode(**stream.model_inputs()).audio_values[0, 0, : stream.num_samples]
    original_path, reconstruction_path = folder / f"{stem}-original.wav", folder / f"{stem}-vrvq.wav"
    sf.write(original_path, audio, config.sampling_rate, subtype="PCM_16")
    sf.write(reconstruction_path, decoded.clamp(-1, 1).numpy(), config.sampling_rate, subtype="PCM_16")
    plot_path = _plot(codec, audio, mode, encoded, folder / f"{stem}-codebooks.png")
    used_level = None if encoded.level is None else float(encoded.level[0])
    return Result(
        kbps=float(encoded.bitrate_kbps[0]),
        side_info_kbps=config.side_info_kbps,
        mean_codebooks=float(counts[valid].float().mean()),
        num_frames=int(valid.sum()),
        duration_s=audio.size / config.sampling_rate,
        file_bytes=len(data),
        payload_bytes=stream.payload_bytes,
        entropy_coded=stream.entropy_coded,
        level=used_level,
        mode=mode,
        original_path=str(original_path),
        reconstruction_path=str(reconstruction_path),
        vrvq_path=str(vrvq_path),
        plot_path=plot_path,
        notes=notes,
    )


def gradio_handler(codec: Codec):
    """The button's function: `encode_decode` with its errors turned into messages on the page."""

    def handle(audio_path, mode, level, target_kbps, n_codebooks):
        try:
            result = encode_decode(codec, audio_path, mode, level, target_kbps, n_codebooks)
        except InputError as error:
            raise gr.Error(str(error), title="Cannot code this input", print_exception=False) from None
        except Exception as error:  # logged with its trace on the server; the page gets one line
            logger.exception("coding failed")
            raise gr.Error(f"Coding failed ({type(error).__name__}: {error}).", print_exception=False) from None
        return (
            result.original_path,
            result.reconstruction_path,
            result.markdown(codec.config),
            result.plot_path,
            result.vrvq_path,
        )

    return handle


def problem_message(codec: Codec, audio_path: Any, mode: Any, level: Any, target_kbps: Any, n_codebooks: Any) -> str:
    """Why a request failed, found again from its inputs (the checks only, no coding), as page text."""
    try:
        mode_arguments(codec.config, mode, level, target_kbps, n_codebooks)
        read_clip(audio_path, codec.config.sampling_rate)
    except InputError as error:
        return f"**Cannot code this input.** {error}"
    return "**Coding failed.** See the message at the top of the page."


def failure_handler(codec: Codec):
    """After a failed request: clear the previous results and put the reason where they were."""

    def handle(audio_path, mode, level, target_kbps, n_codebooks):
        return None, None, problem_message(codec, audio_path, mode, level, target_kbps, n_codebooks), None, None

    return handle


# ------------------------------------------------------------------------------------------------ examples
def _synthetic_speech(rate: int, seconds: float = 4.0) -> np.ndarray:
    """Voiced harmonic syllables with a gliding pitch, separated by pauses."""
    t = np.arange(int(rate * seconds)) / rate
    pitch = 130 + 35 * np.sin(2 * np.pi * 0.6 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    formant = 1 + 0.8 * np.sin(2 * np.pi * 3.1 * t)
    voiced = sum(np.sin(k * phase) * (formant if k in (3, 4, 5) else 1) / k for k in range(1, 16))
    syllables = (np.sin(2 * np.pi * 2.2 * t) > -0.1) & (t % 2.0 < 1.3)
    envelope = np.convolve(syllables.astype(float), np.hanning(int(0.03 * rate)), mode="same")
    envelope /= envelope.max()
    breath = np.random.default_rng(0).standard_normal(t.size) * 0.02
    return (0.2 * voiced * envelope + breath * envelope).astype(np.float32)


def _espeak(path: Path) -> bool:
    """Speech from espeak-ng into `path` (22.05 kHz mono); False when espeak-ng is missing or fails."""
    if shutil.which("espeak-ng") is None:
        return False
    text = ('<speak>Variable bitrate codecs spend bits where the sound is. <break time="700ms"/> '
            "Silence, like this pause, costs almost nothing.</speak>")
    try:
        run = subprocess.run(["espeak-ng", "-m", "-v", "en-us", "-s", "155", "-w", str(path), text],
                             capture_output=True, timeout=30)
        return run.returncode == 0 and sf.info(str(path)).frames > 0
    except Exception:
        return False


def _chord(rate: int, seconds: float = 3.5) -> np.ndarray:
    """Stereo (T, 2): two plucked chords with a silent gap between them."""
    t = np.arange(int(rate * seconds)) / rate
    out = np.zeros((t.size, 2))
    for start, notes in ((0.0, (220.0, 277.18, 329.63, 440.0)), (2.0, (196.0, 246.94, 293.66, 392.0))):
        local = t - start
        on = (local >= 0) & (local < 1.4)
        envelope = np.where(on, np.exp(-2.5 * np.clip(local, 0, None)) * (1 - np.exp(-200 * np.clip(local, 0, None))), 0)
        for index, f in enumerate(notes):
            tone = sum(np.sin(2 * np.pi * k * f * local) / k**1.5 for k in (1, 2, 3))
            pan = index / (len(notes) - 1)
            out[:, 0] += (1 - 0.5 * pan) * tone * envelope
            out[:, 1] += (0.5 + 0.5 * pan) * tone * envelope
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def make_examples(directory: str | os.PathLike) -> dict[str, str]:
    """Write the example clips into `directory`: 'speech' (espeak-ng, else synthetic, mono) and 'chords'
    (44.1 kHz stereo, to show resampling and down-mixing). Returns name -> path."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    speech = folder / "speech.wav"
    if not _espeak(speech):
        sf.write(speech, _synthetic_speech(22050), 22050, subtype="PCM_16")
    chords = folder / "chords.wav"
    sf.write(chords, _chord(44100), 44100, subtype="PCM_16")
    return {"speech": str(speech), "chords": str(chords)}


# ------------------------------------------------------------------------------------------------ the page
def _model_summary(codec: Codec) -> str:
    c = codec.config
    return (
        f"Model `{os.path.basename(codec.name.rstrip('/')) or codec.name}`: {c.sampling_rate} Hz mono, "
        f"{c.n_codebooks} codebooks of {c.codebook_size} codes ({c.bits_per_code} bits) at {c.frame_rate:.2f} "
        f"frames/s: {c.min_kbps:.2f} to {c.max_kbps:.2f} kbps. Clips up to {max_seconds():g} s."
    )


def _visibility(mode: str) -> tuple[Any, Any, Any]:
    return (gr.update(visible=mode == MODE_LEVEL), gr.update(visible=mode == MODE_TARGET),
            gr.update(visible=mode == MODE_CBR))


def build_demo(codec: Codec | None = None, examples_dir: str | os.PathLike | None = None) -> gr.Blocks:
    """The Gradio app around `codec` (default: `load_codec()`); its endpoint is "/encode_decode"."""
    codec = codec or load_codec()
    config = codec.config
    examples = make_examples(examples_dir or tempfile.mkdtemp(prefix="vrvq-examples-"))
    middle_kbps = round((config.min_kbps + config.max_kbps) / 2, 2)
    with gr.Blocks(title="VRVQ variable-bitrate audio codec") as demo:
        gr.Markdown(
            "# VRVQ: variable-bitrate neural audio codec\n"
            "Each frame keeps only as many of the residual codebooks as its content needs: silence costs one, "
            "dense sound all of them. Choose a **level** (more bits as it grows), a **target bitrate**, or a "
            "constant number of codebooks (**CBR**), then compare the reconstruction with the original.\n\n"
            + _model_summary(codec)
        )
        with gr.Row():
            with gr.Column():
                audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Input audio",
                                    elem_id="input-audio")
                mode = gr.Radio(list(MODES), value=MODE_LEVEL, label="Mode", elem_id="mode")
                level = gr.Slider(0.05, max(6.0, float(config.level_max)), value=1.0, step=0.05,
                                  label="Level l (variable bitrate)", elem_id="level")
                kbps = gr.Slider(math.ceil(config.min_kbps * 100) / 100, math.floor(config.max_kbps * 100) / 100,
                                 value=middle_kbps, step=0.01, label="Target kbps (never exceeded)",
                                 visible=False, elem_id="target-kbps")
                codebooks = gr.Slider(1, config.n_codebooks, value=config.n_codebooks, step=1,
                                      label="Codebooks on every frame (constant bitrate)", visible=False,
                                      elem_id="n-codebooks")
                button = gr.Button("Encode and decode", variant="primary", elem_id="run")
            with gr.Column():
                stats = gr.Markdown("Results appear here.", elem_id="stats")
                reconstruction = gr.Audio(type="filepath", label="Reconstruction (decoded from the .vrvq file)",
                                          interactive=False, elem_id="reconstruction")
                original = gr.Audio(type="filepath", label="Original (mono, at the model's rate)",
                                    interactive=False, elem_id="original")
                vrvq_file = gr.File(label="Compressed .vrvq file", interactive=False, elem_id="vrvq-file")
        picture = gr.Image(type="filepath", label="Codebooks per frame over the spectrogram", interactive=False,
                           elem_id="codebooks")
        inputs = [audio_in, mode, level, kbps, codebooks]
        gr.Examples(
            examples=[
                [examples["speech"], MODE_LEVEL, 1.0, middle_kbps, config.n_codebooks],
                [examples["chords"], MODE_TARGET, 1.0, middle_kbps, config.n_codebooks],
                [examples["speech"], MODE_CBR, 1.0, middle_kbps, max(1, config.n_codebooks // 2)],
            ],
            inputs=inputs,
            cache_examples=False,
        )
        mode.change(_visibility, inputs=mode, outputs=[level, kbps, codebooks], api_visibility="private")
        outputs = [original, reconstruction, stats, picture, vrvq_file]
        run = button.click(gradio_handler(codec), inputs=inputs, outputs=outputs, api_name=API_NAME)
        run.failure(failure_handler(codec), inputs=inputs, outputs=outputs, api_visibility="private")
    demo.queue(max_size=16)
    return demo


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    build_demo().launch(max_file_size=os.environ.get("VRVQ_MAX_FILE_SIZE", "50mb"))
