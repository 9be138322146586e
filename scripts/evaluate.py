#!/usr/bin/env python
"""Rate-distortion evaluation of a VRVQ model: VBR over levels against CBR over codebook counts.

Examples:
    python scripts/evaluate.py --model path/to/model --data-dir clips/ --output-dir eval/
    python scripts/evaluate.py --model user/vrvq --dataset user/set --split test --audio-column audio \\
        --category-column category --metrics mel,stft,sisdr,visqol,pesq,stoi --visqol-clips 5 --output-dir eval/

A local folder gives one category per sub-folder (``clips/speech/*.wav``, ``clips/music/*.flac``) unless
``--category`` names one for all. Categories whose name contains "speech" (or listed in
``--speech-categories``) get ViSQOL's speech mode, PESQ-WB and STOI/ESTOI; the others ViSQOL's audio mode.

``--baseline`` names a second, constant-bitrate model (e.g. one trained with the DAC recipe, quantizer dropout
0.5); its CBR points are measured on the same clips and the summary adds the BD-rate of VBR against it.
``--opus 6,8,12`` adds a classical anchor: Opus (libopus through ffmpeg) at those target bitrates.

Writes to --output-dir: rows.csv, rows.json (one row per clip x mode x point), summary.json, summary.md
(per-category tables and the BD-rate of VBR against CBR) and PNG figures (rd_<metric>.png, codebooks_*.png).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from collections.abc import Sequence


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    from vrvq_hf.evaluation.sweep import CHEAP_METRICS, DEFAULT_LEVELS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="local directory or hub id of a saved VRVQModel")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", help="folder of audio files (sub-folders = categories)")
    source.add_argument("--dataset", help="a `datasets` hub id (needs --split)")
    parser.add_argument("--split", help="dataset split, e.g. test")
    parser.add_argument("--audio-column", default="audio", help="dataset column with decoded audio (default: audio)")
    parser.add_argument("--category-column", help="dataset column naming each clip's category")
    parser.add_argument("--category", help="one category for every clip (overrides sub-folder names)")
    parser.add_argument("--speech-categories", type=_names, help="comma-separated categories treated as speech")
    parser.add_argument("--levels", type=_floats, default=list(DEFAULT_LEVELS), help="VBR levels (comma-separated)")
    parser.add_argument("--cbr", type=_ints, default=None, help="CBR codebook counts (default 1..Nq)")
    parser.add_argument("--max-clips", type=int, default=None, help="at most this many clips per category")
    parser.add_argument(
        "--shuffle", type=int, default=None, metavar="SEED",
        help="shuffle the clips with this seed before --max-clips takes the first ones (a random subset)",
    )
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="seconds kept from each clip (default 10)")
    parser.add_argument(
        "--metrics", type=_names, default=list(CHEAP_METRICS),
        help="comma-separated from mel,stft,sisdr,l1,visqol,pesq,stoi,estoi (default mel,stft,sisdr,l1)",
    )
    parser.add_argument("--visqol-clips", type=int, default=None, help="ViSQOL on at most this many clips per category")
    parser.add_argument(
        "--workers", type=int, default=1,
        help="processes for ViSQOL / PESQ / STOI (ViSQOL is single-threaded: use the spare cores)",
    )
    parser.add_argument("--resample", action="store_true", help="resample clips whose rate differs from the model's")
    parser.add_argument(
        "--entropy", action="store_true",
        help="also measure each point's entropy-coded .vrvq file (needs the model's code_tables.safetensors) "
        "and report a second BD-rate at those sizes",
    )
    parser.add_argument(
        "--baseline", metavar="MODEL",
        help="a constant-bitrate model (local directory or hub id) measured at the --cbr counts on the same clips; "
        "adds the BD-rate of VBR against it",
    )
    parser.add_argument(
        "--opus", type=_floats, default=[], metavar="KBPS",
        help="also code every clip with Opus (ffmpeg's libopus) at these target bitrates, e.g. 6,8,12: a classical "
        "anchor in the tables and figures, placed at the rate of its packets",
    )
    parser.add_argument("--bd-method", choices=("pchip", "cubic"), default="pchip", help="BD-rate interpolation")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    parser.add_argument("--title", help="title of summary.md")
    parser.add_argument("--output-dir", required=True, help="where the results go")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from vrvq_hf import VRVQModel
    from vrvq_hf.evaluation.sweep import dataset_sources, folder_sources, run_evaluation

    if args.data_dir:
        sources = folder_sources(args.data_dir, category=args.category)
    else:
        sources = dataset_sources(
            args.dataset, split=args.split, audio_column=args.audio_column,
            category=args.category, category_column=args.category_column,
        )
    if args.shuffle is not None:
        random.Random(args.shuffle).shuffle(sources)
    model = VRVQModel.from_pretrained(args.model).to(args.device).eval()
    baseline = VRVQModel.from_pretrained(args.baseline).to(args.device).eval() if args.baseline else None
    tables = _code_tables(args.model) if args.entropy else None
    baseline_tables = _code_tables(args.baseline) if args.entropy and args.baseline else None
    result, summary, written = run_evaluation(
        model, sources, args.output_dir, figures=not args.no_figures, title=args.title, bd_method=args.bd_method,
        levels=args.levels, n_quantizers=args.cbr, metrics=args.metrics, clip_seconds=args.clip_seconds,
        resample=args.resample, max_clips=args.max_clips, visqol_max_clips=args.visqol_clips,
        speech_categories=args.speech_categories, metric_workers=args.workers, entropy_tables=tables,
        baseline=baseline, baseline_tables=baseline_tables, opus_kbps=args.opus,
    )
    print(f"evaluated {result.n_clips} clips ({len(result.skipped)} unreadable skipped); wrote:")
    for path in written:
        print(f"  {path}")
    _print_bd(summary["bd_rate"], "BD-rate VBR vs CBR")
    _print_bd(summary.get("bd_rate_coded", []), "BD-rate VBR vs CBR, entropy coded")
    _print_bd(summary.get("bd_rate_baseline", []), "BD-rate VBR vs baseline")
    _print_bd(summary.get("bd_rate_baseline_coded", []), "BD-rate VBR vs baseline, entropy coded")
    _print_bd(summary.get("bd_rate_opus", []), "BD-rate VBR vs Opus")
    return 0


def _code_tables(model: str):
    from vrvq_hf.entropy import find_code_tables

    tables = find_code_tables(model)
    if tables is None:
        raise ValueError(
            f"--entropy needs code tables, but {model} has no code_tables.safetensors; create them with "
            "scripts/estimate_code_tables.py"
        )
    return tables


def _print_bd(entries: list[dict], label: str) -> None:
    for entry in entries:
        value = entry["bd_rate_percent"]
        print(f"  {label} [{entry['category']}/{entry['metric']}]: "
              + ("n/a (" + entry["error"] + ")" if value is None else f"{value:+.2f}%"))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, ImportError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
