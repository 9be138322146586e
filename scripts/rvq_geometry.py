#!/usr/bin/env python
"""Does the model's residual quantizer refine? Per stage, on real clips, per category:
the energy of the residual entering it, the cosine between its output and that residual, and how far the
sum of the first n stage outputs is from the encoder latent (relative to the latent's energy).

    python scripts/rvq_geometry.py MODEL --data-dir clips/ [--max-clips 8 --clip-seconds 6 --shuffle 0]

Clips are chosen as `scripts/evaluate.py` chooses them (sub-folders are categories; --shuffle SEED, then
the first --max-clips readable clips of each category), so the same flags measure the same clips.
Prints a table per category and writes it as JSON with --output.
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
    parser.add_argument("--max-clips", type=int, default=8, help="clips per category (default %(default)s)")
    parser.add_argument("--clip-seconds", type=float, default=6.0, help="seconds kept per clip (default %(default)g)")
    parser.add_argument("--shuffle", type=int, default=None, metavar="SEED",
                        help="shuffle the clips with this seed before --max-clips takes the first ones")
    parser.add_argument("--output", help="write the figures as JSON here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_clips < 1:
        raise SystemExit(f"--max-clips must be >= 1, got {args.max_clips}")
    from vrvq_hf import VRVQModel
    from vrvq_hf.evaluation import quantizer_geometry
    from vrvq_hf.evaluation.sweep import clips_by_category

    model = VRVQModel.from_pretrained(args.model).eval()

    def skip(source, error: Exception) -> None:  # an unreadable file is skipped, as the evaluation skips it
        print(f"skipped {source.name}: {error}", file=sys.stderr)

    clips = clips_by_category(args.data_dir, model.config.sampling_rate, args.clip_seconds, args.max_clips,
                              args.shuffle, on_skip=skip)
    results = {}
    for category, category_clips in sorted(clips.items()):
        geometry = quantizer_geometry(model, category_clips)
        results[category] = {"clips": len(category_clips), **geometry.as_dict()}
        print(f"\n{category}: {len(category_clips)} clips, {geometry.frames} frames, "
              f"latent energy {geometry.latent_energy:.3f}")
        print("stage | residual energy in | cosine(out, residual) | prefix error (relative)")
        for stage in range(len(geometry.cosine)):
            print(f"{stage + 1:5d} | {geometry.residual_energy[stage]:18.3f} | {geometry.cosine[stage]:21.3f} | "
                  f"{geometry.prefix_error[stage]:.3f}")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"model": args.model, "clip_seconds": args.clip_seconds, "categories": results}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
