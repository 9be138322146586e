"""Speed and memory of VRVQModel against transformers' DacModel with the same weights, in one run.

    python scripts/benchmark.py [--seconds 10] [--repeats 3] [--small]

Times encode + decode of one clip on CPU for: DacModel (all codebooks), VRVQ constant bitrate (all
codebooks), VRVQ variable bitrate (level 1); reports the best of `repeats` runs, ratios against DacModel,
and the peak resident memory of each case measured in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

CASES = ("dac", "vrvq_cbr", "vrvq_vbr")


def build(small: bool):
    from transformers import DacConfig, DacModel

    from vrvq_hf.convert import from_transformers_dac

    if small:
        config = DacConfig(encoder_hidden_size=16, downsampling_ratios=[2, 4, 8, 8], decoder_hidden_size=192,
                           n_codebooks=8, codebook_size=1024, codebook_dim=8, sampling_rate=44100)
    else:  # the paper's model: DAC 44.1 kHz with 8 codebooks
        config = DacConfig(encoder_hidden_size=64, downsampling_ratios=[2, 4, 8, 8], decoder_hidden_size=1536,
                           n_codebooks=8, codebook_size=1024, codebook_dim=8, sampling_rate=44100)
    torch.manual_seed(0)
    dac = DacModel(config).eval()
    return dac, from_transformers_dac(dac).eval()


def run_case(case: str, dac, vrvq, audio: torch.Tensor) -> None:
    with torch.inference_mode():
        if case == "dac":
            encoded = dac.encode(audio)
            dac.decode(quantized_representation=encoded.quantized_representation)
        elif case == "vrvq_cbr":
            encoded = vrvq.encode(audio, n_quantizers=vrvq.config.n_codebooks)
            vrvq.decode(encoded.audio_codes, num_codebooks=encoded.num_codebooks)
        else:
            encoded = vrvq.encode(audio, level=1.0)
            vrvq.decode(encoded.audio_codes, num_codebooks=encoded.num_codebooks)


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def memory_of(case: str, args) -> float:
    """Peak RSS growth (MiB) while one case runs, in a fresh process: the peak is reset (Linux clear_refs)
    after the models are built, so it counts the activations of that case only."""
    code = (
        "import json, sys, torch; import importlib.util as u;"
        f"spec=u.spec_from_file_location('b', {__file__!r}); b=u.module_from_spec(spec); spec.loader.exec_module(b);"
        f"dac, vrvq = b.build({args.small}); audio = 0.1 * torch.randn(1, 1, int({args.seconds} * 44100));"
        "open('/proc/self/clear_refs', 'w').write('5'); before = b._status_mib('VmRSS');"
        f"b.run_case({case!r}, dac, vrvq, audio);"
        "print(json.dumps(b._status_mib('VmHWM') - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="a 2.5 M-parameter model instead of the paper's")
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args(argv)

    dac, vrvq = build(args.small)
    audio = 0.1 * torch.randn(1, 1, int(args.seconds * 44100))
    params = sum(p.numel() for p in dac.parameters()) / 1e6
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; DAC {params:.1f} M params; "
          f"{args.seconds:g} s of audio at 44.1 kHz")
    run_case("dac", dac, vrvq, audio[..., :44100])  # warm-up
    best = {case: float("inf") for case in CASES}
    for _ in range(args.repeats):  # interleaved, so drifts of a shared machine hit every case alike
        for case in CASES:
            start = time.perf_counter()
            run_case(case, dac, vrvq, audio)
            best[case] = min(best[case], time.perf_counter() - start)
    memory = {case: (None if args.no_memory else memory_of(case, args)) for case in CASES}
    print(f"{'case':<10} {'seconds':>8} {'RTF':>6} {'vs DAC':>7} {'peak MiB':>9}")
    for case in CASES:
        mem = "-" if memory[case] is None else f"{memory[case]:.0f}"
        print(f"{case:<10} {best[case]:8.2f} {best[case] / args.seconds:6.3f} {best[case] / best['dac']:7.2f} {mem:>9}")
    print(json.dumps({"seconds": best, "peak_mib": memory}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
