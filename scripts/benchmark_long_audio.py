#!/usr/bin/env python
"""Peak memory and speed of whole-file against chunked encode + decode of long audio, in one run.

    python scripts/benchmark_long_audio.py [--durations 10,60,600] [--small] [--max-whole-seconds 60]

Model: the full-size configuration (VRVQConfig() defaults: the paper's 44.1 kHz DAC-size codec, 8 x 1024
codebooks) with random weights (scale-preserving init, so signals have realistic magnitudes; speed and
memory do not depend on the weights), or with --small a 2.5 M-parameter 44.1 kHz model. Audio: a
deterministic test signal (tone bursts, noise and pauses). Each case (duration x whole/chunked) runs
encode (level 1) then decode in a fresh subprocess; its peak memory is the growth of the resident set
high-water mark (Linux /proc/self/status VmHWM, reset through /proc/self/clear_refs after the model and
the input are in memory), so it counts what processing adds, the decoded output included. Whole-file
cases longer than --max-whole-seconds are skipped (their memory grows linearly; 10 min full-size needs
tens of GB). For durations where both ran, the script compares chunked with whole-file output: share
of identical codes and counts, max abs difference and SNR of the decoded audio.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def _durations(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"durations must be positive, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--durations", type=_durations, default=[10.0, 60.0, 600.0],
                        help="seconds of audio, comma-separated (default 10,60,600)")
    parser.add_argument("--small", action="store_true", help="a 2.5 M-parameter model instead of the full size")
    parser.add_argument("--max-whole-seconds", type=float, default=60.0,
                        help="skip whole-file cases longer than this (default %(default)g)")
    parser.add_argument("--chunk-seconds", type=float, default=None, help="chunk length (default: chunking's)")
    parser.add_argument("--level", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "SECONDS", "OUT"), help=argparse.SUPPRESS)
    return parser


# ------------------------------------------------------------------------------------------------ worker
def build_model(small: bool):
    import torch

    from vrvq_hf import VRVQConfig, VRVQModel

    overrides = dict(encoder_hidden_size=16, decoder_hidden_size=192, importance_channels=[128, 64, 16, 4, 1])
    config = VRVQConfig(initializer="scale_preserving", **(overrides if small else {}))
    torch.manual_seed(0)
    return VRVQModel(config).eval()


def test_signal(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """(T,) float32: tone bursts with vibrato, noise and pauses, built block by block (bounded temporaries)."""
    rng = np.random.default_rng(seed)
    total = int(round(seconds * rate))
    audio = np.empty(total, dtype=np.float32)
    block = 10 * rate
    for start in range(0, total, block):
        t = np.arange(start, min(start + block, total)) / rate
        pitch = 150 + 100 * np.sin(2 * np.pi * 0.3 * t)
        tone = np.sin(2 * np.pi * np.cumsum(pitch) / rate) + 0.3 * np.sin(2 * np.pi * 3 * np.cumsum(pitch) / rate)
        envelope = (np.sin(2 * np.pi * 1.7 * t) > -0.3) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.11 * t) ** 2)
        noise = 0.05 * rng.standard_normal(t.size)
        audio[start : start + t.size] = 0.3 * envelope * (tone + noise)
    return audio


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def worker(method: str, seconds: float, out: str, args: argparse.Namespace) -> None:
    import torch

    from vrvq_hf.chunking import decode_chunked, encode_chunked

    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(args.small)
    config = model.config
    audio = torch.from_numpy(test_signal(seconds, config.sampling_rate))[None, None]
    chunk = None if args.chunk_seconds is None else max(1, round(args.chunk_seconds * config.frame_rate))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_mib("VmRSS")
    start = time.perf_counter()
    with torch.inference_mode():
        if method == "whole":
            encoded = model.encode(audio, level=args.level)
            decoded = model.decode(encoded.audio_codes, codebook_mask=encoded.codebook_mask,
                                   padding_mask=encoded.padding_mask).audio_values
        else:
            encoded = encode_chunked(model, audio, level=args.level, chunk_frames=chunk)
            decoded = decode_chunked(model, encoded.audio_codes, codebook_mask=encoded.codebook_mask,
                                     padding_mask=encoded.padding_mask, chunk_frames=chunk).audio_values
    elapsed = time.perf_counter() - start
    peak = _status_mib("VmHWM") - before
    result = {"method": method, "seconds": seconds, "elapsed_s": elapsed, "peak_mib": peak,
              "kbps": float(encoded.bitrate_kbps[0]), "threads": torch.get_num_threads(),
              "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    np.savez(out, codes=encoded.audio_codes[0].numpy().astype(np.int16),
             counts=encoded.num_codebooks[0].numpy().astype(np.int8), audio=decoded[0, 0].numpy())
    print(json.dumps(result))


# -------------------------------------------------------------------------------------------------- main
def run_case(method: str, seconds: float, folder: str, argv: list[str]) -> dict:
    out = os.path.join(folder, f"{method}_{seconds:g}.npz")
    command = [sys.executable, os.path.abspath(__file__), *argv, "--worker", method, str(seconds), out]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        reason = "killed (out of memory?)" if done.returncode in (-9, 137) else done.stderr.strip()[-300:]
        return {"method": method, "seconds": seconds, "error": reason}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["npz"] = out
    return result


def compare(whole: dict, chunked: dict) -> dict:
    a, b = np.load(whole["npz"]), np.load(chunked["npz"])
    difference = a["audio"].astype(np.float64) - b["audio"].astype(np.float64)
    noise = float(np.sum(difference**2))
    signal = float(np.sum(a["audio"].astype(np.float64) ** 2))
    return {
        "identical_codes": float(np.mean(a["codes"] == b["codes"])),
        "identical_counts": float(np.mean(a["counts"] == b["counts"])),
        "max_abs_diff": float(np.max(np.abs(difference))),
        "snr_db": math.inf if noise == 0 else 10 * math.log10(signal / noise),
    }


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker:
        method, seconds, out = args.worker
        worker(method, float(seconds), out, args)
        return 0
    passthrough = (["--small"] if args.small else []) + ["--level", str(args.level)]
    if args.chunk_seconds is not None:
        passthrough += ["--chunk-seconds", str(args.chunk_seconds)]
    if args.threads:
        passthrough += ["--threads", str(args.threads)]

    rows, comparisons = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for seconds in args.durations:
            by_method = {}
            for method in ("whole", "chunked"):
                if method == "whole" and seconds > args.max_whole_seconds:
                    by_method[method] = {"method": method, "seconds": seconds,
                                         "error": f"skipped (over --max-whole-seconds {args.max_whole_seconds:g})"}
                else:
                    print(f"running {method} {seconds:g} s ...", file=sys.stderr, flush=True)
                    by_method[method] = run_case(method, seconds, folder, passthrough)
                rows.append(by_method[method])
            if "error" not in by_method["whole"] and "error" not in by_method["chunked"]:
                comparisons[seconds] = compare(by_method["whole"], by_method["chunked"])

    import torch

    from vrvq_hf.chunking import DEFAULT_CHUNK_SECONDS

    size = "small (2.5 M params)" if args.small else "full size (VRVQConfig() defaults)"
    print(f"\nmodel: {size}, 44.1 kHz, random weights; level {args.level:g}; chunk "
          f"{args.chunk_seconds or DEFAULT_CHUNK_SECONDS:g} s; torch {torch.__version__}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'audio':>7} {'method':<8} {'time s':>8} {'RTF':>6} {'peak MiB':>9} {'kbps':>6}  vs whole-file")
    for row in rows:
        if "error" in row:
            print(f"{row['seconds']:>6g}s {row['method']:<8} {row['error']}")
            continue
        versus = ""
        if row["method"] == "chunked" and row["seconds"] in comparisons:
            c = comparisons[row["seconds"]]
            versus = (f"codes {100 * c['identical_codes']:.3f}% identical, counts {100 * c['identical_counts']:.3f}%, "
                      f"max |diff| {c['max_abs_diff']:.1e}, SNR {c['snr_db']:.1f} dB")
        print(f"{row['seconds']:>6g}s {row['method']:<8} {row['elapsed_s']:8.1f} {row['elapsed_s'] / row['seconds']:6.3f} "
              f"{row['peak_mib']:9.0f} {row['kbps']:6.2f}  {versus}")
    if args.json:
        for row in rows:
            row.pop("npz", None)
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "comparisons": {str(k): v for k, v in comparisons.items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
