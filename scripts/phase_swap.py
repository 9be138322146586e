#!/usr/bin/env python
"""Is a model's quality gap in the spectral magnitudes or in the phase? Codes real clips with every
codebook (or --n-quantizers), then measures the metrics on the decoded audio and on two hybrids: its
magnitudes under the reference's phase, and the reference's magnitudes under its phase (STFT --n-fft /
--hop-length, Hann window).

    python scripts/phase_swap.py MODEL --data-dir clips/ [--category speech --max-clips 16 --shuffle 0]

Clips are chosen as `scripts/evaluate.py` chooses them (sub-folders are categories; --shuffle SEED, then
the first --max-clips readable clips of each category, --clip-seconds each), so the same flags measure
the same clips as its tables. Prints a table per category and writes it as JSON with --output.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="local directory or hub id of a saved VRVQModel")
    parser.add_argument("--data-dir", required=True, help="folder of audio files (sub-folders = categories)")
    parser.add_argument("--category", action="append", help="measure only this category (repeatable)")
    parser.add_argument("--metrics", default="stoi,pesq", help="comma-separated metrics (default %(default)s)")
    parser.add_argument("--n-quantizers", type=int, default=None, help="codebooks per frame (default: all)")
    parser.add_argument("--max-clips", type=int, default=16, help="clips per category (default %(default)s)")
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="seconds kept per clip (default %(default)g)")
    parser.add_argument("--shuffle", type=int, default=None, metavar="SEED",
                        help="shuffle the clips with this seed before --max-clips takes the first ones")
    parser.add_argument("--n-fft", type=int, default=512, help="STFT size of the swap (default %(default)s)")
    parser.add_argument("--hop-length", type=int, default=128, help="STFT hop of the swap (default %(default)s)")
    parser.add_argument("--output", help="write the figures as JSON here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_clips < 1:
        raise SystemExit(f"--max-clips must be >= 1, got {args.max_clips}")
    from vrvq_hf import VRVQModel
    from vrvq_hf.evaluation import METRICS, phase_swap_metrics
    from vrvq_hf.evaluation.phase_swap import HYBRIDS
    from vrvq_hf.evaluation.sweep import clips_by_category, is_speech_category

    metrics = [name.strip() for name in args.metrics.split(",") if name.strip()]
    unknown = [name for name in metrics if name not in METRICS]
    if unknown or not metrics:
        raise SystemExit(f"--metrics: unknown {unknown or 'none given'}; choose from {sorted(METRICS)}")
    model = VRVQModel.from_pretrained(args.model).eval()
    if args.n_quantizers is not None and not 1 <= args.n_quantizers <= model.config.n_codebooks:
        raise SystemExit(f"--n-quantizers must be in 1..{model.config.n_codebooks}, got {args.n_quantizers}")

    def skip(source, error: Exception) -> None:  # an unreadable file is skipped, as the evaluation skips it
        print(f"skipped {source.name}: {error}", file=sys.stderr)

    clips = clips_by_category(args.data_dir, model.config.sampling_rate, args.clip_seconds, args.max_clips,
                              args.shuffle, on_skip=skip)
    if args.category:
        missing = sorted(set(args.category) - set(clips))
        if missing:
            raise SystemExit(f"--category {missing}: no readable clips there; found {sorted(clips)}")
        clips = {name: clips[name] for name in args.category}
    results = {}
    for category, category_clips in sorted(clips.items()):
        speech = is_speech_category(category)
        chosen = [name for name in metrics if speech or not METRICS[name].speech_only]
        if not chosen:
            print(f"\n{category}: skipped (only speech metrics were asked for)")
            continue
        result = phase_swap_metrics(model, category_clips, chosen, args.n_quantizers, speech, args.n_fft, args.hop_length)
        results[category] = result.as_dict()
        print(f"\n{category}: {result.clips} clips, {result.n_quantizers} codebooks per frame")
        print("metric | " + " | ".join(HYBRIDS))
        for name in chosen:
            print(f"{name} | " + " | ".join(f"{result.means[hybrid][name]:.3f}" for hybrid in HYBRIDS))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"model": args.model, "clip_seconds": args.clip_seconds, "n_fft": args.n_fft,
                       "hop_length": args.hop_length, "categories": results}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
