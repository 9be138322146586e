#!/usr/bin/env python
"""Estimate a model's code tables for the entropy-coded `.vrvq` mode and measure what they save.

    python scripts/estimate_code_tables.py MODEL_DIR --data-dir clips/ [--levels 0.25,0.5,1,1.5,2,3]
    python scripts/estimate_code_tables.py MODEL_DIR --audiofolder corpus/ --split train --max-files 400

Each file is encoded once with every codebook (chunked, so any length works), then the model's
inference rule is applied at each level (or CBR codebook count for a constant-bitrate model). A share
of the files (--held-out, chosen at random with --seed, whole files) is kept aside; `CodeTables` are
estimated from the codes of the others at all levels and saved into MODEL_DIR as
code_tables.safetensors (`vrvq encode --entropy` finds them there). The script then prints, per level
and in total, the payload of the held-out files fixed-length (the counted bitrate, rounded up to bytes)
against entropy-coded with the new tables (real range-coder output): bits and the saving in percent.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers >= 0, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model folder (save_pretrained); the tables are saved into it")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", help="folder of audio files (searched recursively)")
    source.add_argument("--audiofolder", help="a `datasets` audiofolder directory (with --split)")
    parser.add_argument("--split", default="train", help="audiofolder split (default %(default)s)")
    parser.add_argument("--levels", type=_floats, default=[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0],
                        help="VBR levels, comma-separated (default %(default)s)")
    parser.add_argument("--held-out", type=float, default=0.2, help="share of files for measuring (default 0.2)")
    parser.add_argument("--max-files", type=int, default=None, help="use at most this many files (random)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="use at most the first S seconds of each file (default %(default)g)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dry-run", action="store_true", help="measure, but do not save the tables")
    return parser


def load_sources(args: argparse.Namespace) -> list:
    from vrvq_hf.evaluation.sweep import dataset_sources, folder_sources

    if args.data_dir:
        return folder_sources(args.data_dir)
    import datasets

    dataset = datasets.load_dataset("audiofolder", data_dir=args.audiofolder, split=args.split)
    return dataset_sources(dataset, category="audiofolder")


def split_files(sources: list, held_out: float, max_files: int | None, seed: int) -> tuple[list, list]:
    """Whole files: (estimation, held-out) lists, shuffled with `seed`; at least one of each."""
    if len(sources) < 2:
        raise ValueError(f"need at least 2 audio files (one to estimate, one to measure), found {len(sources)}")
    if not 0 < held_out < 1:
        raise ValueError(f"--held-out must be in (0, 1), got {held_out}")
    order = list(sources)
    random.Random(seed).shuffle(order)
    if max_files is not None:
        order = order[: max(2, max_files)]
    n_held = min(len(order) - 1, max(1, round(held_out * len(order))))
    return order[n_held:], order[:n_held]


def modes(model, levels: list[float]) -> list[tuple[str, dict]]:
    """(label, select_num_codebooks kwargs): levels for a VBR model, every codebook count for a CBR one."""
    if model.importance_subnet is None:
        return [(f"n={n}", {"n_quantizers": n}) for n in range(1, model.config.n_codebooks + 1)]
    return [(f"level {level:g}", {"level": level}) for level in levels]


def encode_all_modes(model, audio: np.ndarray, mode_list: list) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One encode with every codebook, then the inference rule per mode -> [(codes (Nq, F), counts (F,))]."""
    from vrvq_hf.chunking import encode_chunked
    from vrvq_hf.importance import prefix_mask

    full = encode_chunked(model, torch.from_numpy(audio)[None, None])
    valid = torch.ones_like(full.num_codebooks, dtype=torch.bool)
    items = []
    for _, kwargs in mode_list:
        counts, _ = model.select_num_codebooks(full.importance_map, valid, **kwargs)
        codes = full.audio_codes * prefix_mask(counts, model.config.n_codebooks)
        items.append((codes[0], counts[0]))
    return items


def main(argv: list[str] | None = None) -> int:
    import transformers

    from vrvq_hf import VRVQModel
    from vrvq_hf.bitstream import payload_bits
    from vrvq_hf.entropy import CodeTables, encode_payload
    from vrvq_hf.evaluation.sweep import prepare_clip

    args = build_parser().parse_args(argv)
    transformers.utils.logging.disable_progress_bar()
    model = VRVQModel.from_pretrained(args.model).eval()
    config = model.config
    estimation, held_out = split_files(load_sources(args), args.held_out, args.max_files, args.seed)
    mode_list = modes(model, args.levels)
    print(f"{len(estimation)} files to estimate, {len(held_out)} held out; modes: "
          f"{', '.join(label for label, _ in mode_list)}", file=sys.stderr)

    start = time.perf_counter()
    tables = CodeTables.empty(config.n_codebooks, config.codebook_size)
    estimation_seconds = 0.0
    for index, source in enumerate(estimation):
        clip = prepare_clip(source, config.sampling_rate, clip_seconds=args.max_seconds, resample=True)
        estimation_seconds += clip.audio.size / config.sampling_rate
        for codes, counts in encode_all_modes(model, clip.audio, mode_list):
            tables.add(codes, counts)
        if (index + 1) % 50 == 0:
            print(f"  estimated on {index + 1}/{len(estimation)} files ({time.perf_counter() - start:.0f} s)",
                  file=sys.stderr)

    fixed = {label: 0 for label, _ in mode_list}
    coded = dict(fixed)
    held_seconds = 0.0
    for source in held_out:
        clip = prepare_clip(source, config.sampling_rate, clip_seconds=args.max_seconds, resample=True)
        held_seconds += clip.audio.size / config.sampling_rate
        for (label, _), (codes, counts) in zip(mode_list, encode_all_modes(model, clip.audio, mode_list)):
            fixed[label] += 8 * math.ceil(payload_bits(counts, config.n_codebooks, config.codebook_size) / 8)
            coded[label] += 8 * len(encode_payload(codes.numpy(), counts.numpy(), tables))

    print(f"\nheld-out payload ({len(held_out)} files, {held_seconds:.1f} s; tables from {len(estimation)} files, "
          f"{estimation_seconds:.1f} s):")
    print(f"{'mode':<12} {'fixed bits':>12} {'entropy bits':>13} {'fixed kbps':>11} {'entropy kbps':>13} {'saving':>8}")
    for label, _ in mode_list:
        saving = 100 * (1 - coded[label] / fixed[label]) if fixed[label] else 0.0
        print(f"{label:<12} {fixed[label]:>12} {coded[label]:>13} {fixed[label] / held_seconds / 1000:>11.3f} "
              f"{coded[label] / held_seconds / 1000:>13.3f} {saving:>7.1f}%")
    total_fixed, total_coded = sum(fixed.values()), sum(coded.values())
    print(f"{'all':<12} {total_fixed:>12} {total_coded:>13} {'':>11} {'':>13} "
          f"{100 * (1 - total_coded / max(1, total_fixed)):>7.1f}%")
    if args.dry_run:
        print("dry run: tables not saved")
    else:
        path = tables.save(Path(args.model))
        print(f"saved {path} (table id {tables.table_id.hex()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
