"""The `vrvq` command: compress audio into `.vrvq` files and back.

    vrvq encode IN OUT.vrvq [--model M] [--level L | --kbps K | --n-quantizers N] [--entropy]
    vrvq decode IN.vrvq OUT.wav [--model M]
    vrvq info IN.vrvq [--tables MODEL_DIR] [--json]
    vrvq reconstruct IN OUT.wav [--model M] [--level L | --kbps K | --n-quantizers N] [--json]

IN is any file `vrvq_hf.audio_io` reads (WAV/FLAC/OGG with soundfile, anything else through FFmpeg); it
is down-mixed to mono and resampled to the model's rate, with a note on stderr when that happens.
Without a mode flag every codebook is used on every frame. Files longer than `--max-whole-seconds`
(default 30 s) are processed in chunks in bounded memory (`vrvq_hf.chunking`), with a progress bar on
a terminal. The model is `--model` (a folder saved with `save_pretrained`, or a hub id), by default
the model shipped with the package (`vrvq_hf.DEFAULT_MODEL`) when this installation has one.

Results go to stdout, notes to stderr. Exit status: 0 success; 1 runtime error (bad or foreign file,
unreadable audio, impossible bitrate ...), reported as one line `vrvq: error: ...`; 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MAX_WHOLE_SECONDS = 30.0
METRIC_SEGMENT_SECONDS = 30.0
STOI_RATE = 16000


class CLIError(Exception):
    """A runtime error with a message for the user (exit status 1)."""


# ------------------------------------------------------------------------------------------------ parser
def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", metavar="PATH_OR_ID",
        help="model folder (save_pretrained) or hub id; default: the model shipped with vrvq_hf, if any",
    )


def _add_mode(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--level", type=_non_negative_float, metavar="L",
                      help="variable bitrate at level L (higher: more codebooks; about 0.2 to 3)")
    mode.add_argument("--kbps", type=_positive_float, metavar="K",
                      help="variable bitrate: the level whose counted bitrate over the file is closest to K "
                           "kbps without exceeding it")
    mode.add_argument("--n-quantizers", type=_positive_int, metavar="N",
                      help="constant bitrate: the first N codebooks on every frame")


def _add_processing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-whole-seconds", type=_non_negative_float, default=DEFAULT_MAX_WHOLE_SECONDS,
                        metavar="S", help="process longer files in chunks (default %(default)g; 0: always)")
    parser.add_argument("--chunk-seconds", type=_positive_float, default=None, metavar="S",
                        help="chunk length for chunked processing (default: vrvq_hf.chunking's, 5 s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no notes and no progress bar on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vrvq", description="VRVQ variable-bitrate neural audio codec.",
        epilog="Exit status: 0 ok, 1 runtime error, 2 usage error.",
    )
    parser.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    encode = commands.add_parser("encode", help="compress an audio file into a .vrvq file",
                                 description="Compress an audio file into a .vrvq file. Without --level, "
                                             "--kbps or --n-quantizers every codebook is used on every frame.")
    encode.add_argument("input", metavar="IN", help="audio file")
    encode.add_argument("output", metavar="OUT.vrvq", help="compressed file to write")
    _add_model(encode)
    _add_mode(encode)
    encode.add_argument("--entropy", action="store_true",
                        help="entropy-code the payload with the model folder's code_tables.safetensors")
    _add_processing(encode)

    decode = commands.add_parser("decode", help="decode a .vrvq file to audio",
                                 description="Decode a .vrvq file to audio (WAV, FLAC, ... by extension).")
    decode.add_argument("input", metavar="IN.vrvq")
    decode.add_argument("output", metavar="OUT.wav")
    _add_model(decode)
    _add_processing(decode)

    info = commands.add_parser("info", help="describe a .vrvq file (no model needed)",
                               description="Describe a .vrvq file; no model is needed.")
    info.add_argument("input", metavar="IN.vrvq")
    info.add_argument("--tables", metavar="PATH",
                      help="code tables (model folder or .safetensors file), to look inside entropy-coded files")
    info.add_argument("--json", action="store_true", help="print one JSON object")

    reconstruct = commands.add_parser(
        "reconstruct", help="encode and decode in memory; print bitrate and quality",
        description="Encode and decode in memory, write the result, print the bitrate and quality figures "
                    "(mel distance, SI-SDR, and STOI on 16 kHz audio when pystoi is installed).",
    )
    reconstruct.add_argument("input", metavar="IN", help="audio file")
    reconstruct.add_argument("output", metavar="OUT.wav", help="decoded audio to write")
    _add_model(reconstruct)
    _add_mode(reconstruct)
    reconstruct.add_argument("--json", action="store_true", help="print one JSON object")
    _add_processing(reconstruct)
    return parser


# ------------------------------------------------------------------------------------------------ helpers
def _note(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)


@dataclass
class _Loaded:
    model: Any
    source: str
    _fingerprint: bytes | None = None

    @property
    def fingerprint(self) -> bytes:
        """`bitstream.model_fingerprint` of the model, computed once."""
        if self._fingerprint is None:
            from .bitstream import model_fingerprint

            self._fingerprint = model_fingerprint(self.model.state_dict(), self.model.config.to_dict())
        return self._fingerprint


def _model_source(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    if args.model:
        return args.model
    from . import DEFAULT_MODEL

    if os.path.isfile(os.path.join(DEFAULT_MODEL, "config.json")):
        return DEFAULT_MODEL
    parser.error(f"no model given and this installation ships none (looked in {DEFAULT_MODEL}): "
                 "pass --model PATH_OR_HUB_ID")
    raise AssertionError  # parser.error exits


def _load_model(source: str) -> _Loaded:
    import transformers

    from . import VRVQModel

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    local = os.path.isabs(source) or source.startswith((".", "~")) or os.path.exists(source)
    path = os.path.expanduser(source)
    if local and not os.path.isdir(path):
        raise FileNotFoundError(f"no model folder at {source}")
    if local and not os.path.isfile(os.path.join(path, "config.json")):
        raise CLIError(f"{source} is not a model folder (no config.json; save one with save_pretrained)")
    try:
        model = VRVQModel.from_pretrained(path)
    except OSError as error:
        raise CLIError(f"cannot load a VRVQ model from {source}: {_one_line(error)}") from None
    return _Loaded(model.eval(), source)


def _read_audio(path: str, config: Any, args: argparse.Namespace) -> np.ndarray:
    """Mono float32 (samples,) at the model's rate, with a note when down-mixed or resampled."""
    from .audio_io import AudioLoadError, read_audio, resample

    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    audio, rate = read_audio(path)
    if audio.shape[1] == 0:
        raise AudioLoadError(f"{path} holds no audio samples")
    if audio.shape[0] > 1:
        _note(args, f"note: down-mixed {audio.shape[0]} channels to mono")
    audio = audio.mean(axis=0)
    if rate != config.sampling_rate:
        _note(args, f"note: resampled {rate} Hz -> {config.sampling_rate} Hz (the model's rate)")
        audio = resample(audio, rate, config.sampling_rate)
    if not np.isfinite(audio).all():
        raise AudioLoadError(f"{path} contains NaN or infinite samples")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _mode(args: argparse.Namespace) -> dict[str, Any]:
    return {"level": args.level, "target_kbps": args.kbps, "n_quantizers": args.n_quantizers}


def _describe_mode(args: argparse.Namespace, config: Any, found_level: float | None = None) -> str:
    if args.level is not None:
        return f"variable bitrate, level {args.level:g}"
    if args.kbps is not None:
        return f"variable bitrate, target {args.kbps:g} kbps: level {found_level:.4g}"
    if args.n_quantizers is not None:
        return f"constant bitrate, {args.n_quantizers} codebooks"
    return f"all {config.n_codebooks} codebooks"


def _chunking_options(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    chunk = None if args.chunk_seconds is None else max(1, round(args.chunk_seconds * config.frame_rate))
    return {"chunk_frames": chunk, "progress": not args.quiet and sys.stderr.isatty()}


def _is_long(seconds: float, args: argparse.Namespace) -> bool:
    return seconds > args.max_whole_seconds


def _encode(loaded: _Loaded, audio: np.ndarray, args: argparse.Namespace):
    """VRVQEncoderOutput of one item (1, Nq, F) over all of `audio`; chunked when the file is long."""
    import torch

    from .chunking import encode_chunked

    model = loaded.model
    values = torch.from_numpy(audio)[None, None]
    if _is_long(audio.size / model.config.sampling_rate, args):
        return encode_chunked(model, values, **_mode(args), **_chunking_options(args, model.config))
    with torch.inference_mode():
        return model.encode(values, **_mode(args), return_dict=True)


def _decode_pieces(loaded: _Loaded, codes, counts, num_samples: int, args: argparse.Namespace):
    """Decoded audio (1, 1, n) pieces, consecutive, num_samples in all; chunked when long."""
    import torch

    from .chunking import iter_decode_chunked

    model = loaded.model
    if _is_long(num_samples / model.config.sampling_rate, args):
        yield from iter_decode_chunked(model, codes, num_codebooks=counts, num_samples=num_samples,
                                       **_chunking_options(args, model.config))
        return
    with torch.inference_mode():
        audio = model.decode(codes, num_codebooks=counts, return_dict=True).audio_values
    yield audio[..., :num_samples]


def _write_audio(path: str, pieces, sampling_rate: int) -> None:
    """Writes (1, 1, n) pieces to an audio file (format and sample type from the extension's defaults)."""
    import soundfile

    try:
        out = soundfile.SoundFile(path, "w", samplerate=sampling_rate, channels=1)
    except (TypeError, ValueError, RuntimeError) as error:
        raise CLIError(f"cannot write {path}: {_one_line(error)} (use e.g. .wav or .flac)") from None
    with out:
        for piece in pieces:
            out.write(piece.reshape(-1).numpy())


def _checked_header(data: bytes):
    """The header of a `.vrvq` file whose container is intact (magic, version, length, CRC-32); anything
    else raises the core reader's own BitstreamError."""
    from .bitstream import FORMAT_VERSION, HEADER_SIZE, MAGIC, BitstreamError, Header, decode_bitstream

    intact = len(data) >= HEADER_SIZE and data[:4] == MAGIC and data[4] == FORMAT_VERSION
    if intact:
        header = Header.unpack(data)
        intact = len(data) - HEADER_SIZE == header.payload_bytes and header.crc32 == zlib.crc32(
            data[HEADER_SIZE:], zlib.crc32(data[: HEADER_SIZE - 4])
        )
    if not intact:
        decode_bitstream(data)  # raises with the precise reason
        raise BitstreamError("malformed .vrvq file")
    return header


def _read_bytes(path: str) -> bytes:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    return Path(path).read_bytes()


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, KeyError):
        text = f"missing key {text}"
    return " ".join(text.split())


# ----------------------------------------------------------------------------------------------- commands
def cmd_encode(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .bitstream import FLAG_ENTROPY_CODED, HEADER_SIZE, Header, write_file

    source = _model_source(args, parser)
    loaded = _load_model(source)
    config = loaded.model.config
    tables = None
    if args.entropy:
        from .entropy import find_code_tables

        tables = find_code_tables(source)
        if tables is None:
            raise CLIError(
                f"--entropy needs code tables, but {source} has no code_tables.safetensors; create them with "
                "scripts/estimate_code_tables.py, or encode without --entropy"
            )
    audio = _read_audio(args.input, config, args)
    encoded = _encode(loaded, audio, args)
    codes, counts = encoded.audio_codes[0], encoded.num_codebooks[0]
    size = write_file(
        args.output, codes, counts, sampling_rate=config.sampling_rate, hop_length=config.hop_length,
        codebook_size=config.codebook_size, num_samples=audio.size, model_id=loaded.fingerprint,
        entropy_tables=tables,
    )
    with open(args.output, "rb") as f:
        header = Header.unpack(f.read(HEADER_SIZE))
    seconds = audio.size / config.sampling_rate
    counted = float(encoded.bitrate_kbps[0])
    level = None if encoded.level is None else float(encoded.level[0])
    print(f"{args.output}: {size} bytes, {seconds:.3f} s at {config.sampling_rate} Hz "
          f"({_describe_mode(args, config, level)})")
    print(f"counted bitrate {counted:.3f} kbps (side information {config.side_info_kbps:.3f} kbps included); "
          f"file {8 * size / seconds / 1000:.3f} kbps")
    if args.entropy:
        if header.flags & FLAG_ENTROPY_CODED:
            coded = 8 * header.payload_bytes / (counts.numel() / config.frame_rate) / 1000
            print(f"entropy-coded payload {coded:.3f} kbps ({100 * (1 - coded / counted):.1f}% below counted)")
        else:
            print("entropy coding would not be smaller for this file: payload written fixed-length")
    return 0


def cmd_decode(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .bitstream import FLAG_ENTROPY_CODED, BitstreamError, decode_bitstream

    data = _read_bytes(args.input)
    source = _model_source(args, parser)
    header = _checked_header(data)
    loaded = _load_model(source)
    if header.model_id != loaded.fingerprint:
        raise BitstreamError(
            f"{args.input} was encoded by another model (model id {header.model_id.hex()}; {source} is "
            f"{loaded.fingerprint.hex()}): decode it with the model that encoded it"
        )
    tables = None
    if header.flags & FLAG_ENTROPY_CODED:
        from .entropy import find_code_tables

        tables = find_code_tables(source)
        if tables is None:
            raise BitstreamError(f"{args.input} is entropy coded, but {source} has no code_tables.safetensors")
    stream = decode_bitstream(data, expected_model_id=loaded.fingerprint, entropy_tables=tables)
    stream.check_compatible(loaded.model.config)
    inputs = stream.model_inputs()
    pieces = _decode_pieces(loaded, inputs["audio_codes"], inputs["num_codebooks"], stream.num_samples, args)
    _write_audio(args.output, pieces, stream.sampling_rate)
    seconds = stream.num_samples / stream.sampling_rate
    print(f"{args.output}: {seconds:.3f} s at {stream.sampling_rate} Hz from {args.input} "
          f"({stream.bitrate_kbps:.3f} kbps counted)")
    return 0


def describe_file(data: bytes, tables: Any = None) -> dict[str, Any]:
    """Facts about the bytes of a `.vrvq` file (what `vrvq info --json` prints)."""
    from .bitstream import FLAG_ENTROPY_CODED, HEADER_SIZE, decode_bitstream, side_info_bits

    header = _checked_header(data)
    entropy = bool(header.flags & FLAG_ENTROPY_CODED)
    rate, hop, frames = header.sampling_rate, header.hop_length, header.num_frames
    seconds = header.num_samples / rate
    coded_seconds = frames * hop / rate
    n_codebooks = header.n_codebooks
    facts: dict[str, Any] = {
        "format_version": header.version,
        "sampling_rate": rate,
        "hop_length": hop,
        "frame_rate": rate / hop,
        "n_codebooks": n_codebooks,
        "codebook_size": 1 << header.codebook_bits,
        "num_frames": frames,
        "num_samples": header.num_samples,
        "duration_s": seconds,
        "coded_duration_s": coded_seconds,
        "file_bytes": len(data),
        "header_bytes": HEADER_SIZE,
        "payload_bytes": header.payload_bytes,
        "file_kbps": 8 * len(data) / seconds / 1000 if seconds else 0.0,
        "payload_kbps": 8 * header.payload_bytes / coded_seconds / 1000 if frames else 0.0,
        "side_info_kbps": side_info_bits(n_codebooks) * rate / hop / 1000,
        "entropy_coded": entropy,
        "model_id": header.model_id.hex(),
        "table_id": header.table_id.hex() if entropy else None,
        "counted_kbps": None,
        "codebook_histogram": None,
    }
    if entropy and tables is None:
        return facts
    stream = decode_bitstream(data, entropy_tables=tables)
    histogram = np.bincount(stream.num_codebooks.numpy(), minlength=n_codebooks + 1)[1:]
    facts["counted_kbps"] = stream.bitrate_kbps
    facts["codebook_histogram"] = {str(n + 1): int(c) for n, c in enumerate(histogram)}
    facts["mean_codebooks"] = float(stream.num_codebooks.float().mean()) if frames else 0.0
    return facts


def cmd_info(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .entropy import CodeTables

    data = _read_bytes(args.input)
    tables = None
    if args.tables:
        if not os.path.exists(args.tables):
            raise FileNotFoundError(f"no such file or folder: {args.tables}")
        tables = CodeTables.load(args.tables)
    facts = describe_file(data, tables)
    if args.json:
        print(json.dumps(facts))
        return 0
    print(f"{args.input}: VRVQ format {facts['format_version']}, "
          f"{'entropy-coded' if facts['entropy_coded'] else 'fixed-length'} payload")
    print(f"  duration        {facts['duration_s']:.3f} s ({facts['num_samples']} samples; "
          f"{facts['num_frames']} frames = {facts['coded_duration_s']:.3f} s)")
    print(f"  sampling rate   {facts['sampling_rate']} Hz, hop {facts['hop_length']} "
          f"({facts['frame_rate']:.2f} frames/s)")
    print(f"  codebooks       {facts['n_codebooks']} x {facts['codebook_size']} codes")
    print(f"  file size       {facts['file_bytes']} bytes ({facts['header_bytes']} header + "
          f"{facts['payload_bytes']} payload) = {facts['file_kbps']:.3f} kbps; payload {facts['payload_kbps']:.3f} kbps")
    if facts["counted_kbps"] is None:
        print("  counted bitrate unknown: the payload is entropy coded; pass --tables MODEL_DIR to look inside")
    else:
        print(f"  counted bitrate {facts['counted_kbps']:.3f} kbps (side information "
              f"{facts['side_info_kbps']:.3f} kbps included); mean {facts['mean_codebooks']:.2f} codebooks/frame")
        total = max(1, facts["num_frames"])
        print("  codebooks per frame:")
        for n, count in facts["codebook_histogram"].items():
            share = count / total
            print(f"    {int(n):>3} {count:>9} {100 * share:6.1f}% {'#' * round(40 * share)}")
    print(f"  model id        {facts['model_id']}")
    return 0


def quality_figures(estimate: np.ndarray, reference: np.ndarray, sampling_rate: int) -> dict[str, float | None]:
    """Mel distance, SI-SDR (dB) and STOI (16 kHz; None without pystoi or under 0.4 s) of mono arrays.
    Mel distance and STOI are averaged over 30 s segments (weighted by length) to bound memory."""
    from .audio_io import resample
    from .evaluation import metrics

    def segmented(function, est, ref, rate, minimum=0.0):
        step = int(METRIC_SEGMENT_SECONDS * rate)
        values, used = [], []
        for s in range(0, ref.size, step):
            if (ref.size - s) / rate < minimum and values:
                break  # a short tail next to full segments: skip it
            values.append(function(est[s : s + step], ref[s : s + step], rate))
            used.append(min(step, ref.size - s))
        return float(np.average(values, weights=used))

    figures: dict[str, float | None] = {}
    figures["mel_distance"] = segmented(metrics.mel_distance, estimate, reference, sampling_rate)
    try:
        figures["si_sdr_db"] = metrics.si_sdr(estimate, reference, sampling_rate)
    except ValueError:  # silent reference
        figures["si_sdr_db"] = None
    figures["stoi"] = None
    if reference.size / sampling_rate >= 0.4:
        try:
            import pystoi  # noqa: F401
        except ImportError:
            pass
        else:
            est16 = resample(estimate, sampling_rate, STOI_RATE)
            ref16 = resample(reference, sampling_rate, STOI_RATE)
            figures["stoi"] = segmented(metrics.stoi, est16, ref16, STOI_RATE, minimum=0.4)
    return figures


def cmd_reconstruct(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import torch

    loaded = _load_model(_model_source(args, parser))
    config = loaded.model.config
    audio = _read_audio(args.input, config, args)
    encoded = _encode(loaded, audio, args)
    pieces = list(_decode_pieces(loaded, encoded.audio_codes, encoded.num_codebooks, audio.size, args))
    decoded = torch.cat(pieces, dim=-1).reshape(-1).numpy()
    _write_audio(args.output, [torch.from_numpy(decoded)], config.sampling_rate)
    figures = quality_figures(decoded, audio, config.sampling_rate)
    level = None if encoded.level is None else float(encoded.level[0])
    result = {
        "output": args.output,
        "duration_s": audio.size / config.sampling_rate,
        "sampling_rate": config.sampling_rate,
        "mode": _describe_mode(args, config, level),
        "level": level,
        "counted_kbps": float(encoded.bitrate_kbps[0]),
        "side_info_kbps": config.side_info_kbps,
        "mean_codebooks": float(encoded.num_codebooks.float().mean()),
        **figures,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.output}: {result['duration_s']:.3f} s at {config.sampling_rate} Hz ({result['mode']})")
    print(f"  bitrate       {result['counted_kbps']:.3f} kbps counted (side information "
          f"{config.side_info_kbps:.3f} kbps included), {result['mean_codebooks']:.2f} codebooks/frame")
    print(f"  mel distance  {figures['mel_distance']:.4f} (lower is better)")
    sisdr = figures["si_sdr_db"]
    print(f"  SI-SDR        {'n/a (silent input)' if sisdr is None else f'{sisdr:.2f} dB'}")
    stoi = figures["stoi"]
    print(f"  STOI (16 kHz) {'n/a (needs pystoi and >= 0.4 s)' if stoi is None else f'{stoi:.3f}'}")
    return 0


COMMANDS = {"encode": cmd_encode, "decode": cmd_decode, "info": cmd_info, "reconstruct": cmd_reconstruct}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `vrvq` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args, parser)
    except KeyboardInterrupt:
        print("vrvq: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, OSError, ImportError, RuntimeError, MemoryError) as error:
        if args.traceback:
            raise
        print(f"vrvq: error: {_one_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
