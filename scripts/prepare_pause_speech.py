#!/usr/bin/env python
"""Build an evaluation set of *speech with pauses* from the held-out dialogue lines of the local corpus.

Each clip joins consecutive held-out lines of one game level (one speaker, one scene, in file-name order)
as they were recorded, with nothing inserted between them: the pauses are the lines' own lead-ins,
lead-outs and pauses within lines. A clip ends after ``--seconds`` (the line that crosses the boundary is
cut there); a level whose lines do not fill ``--seconds`` gives no clip.

    python scripts/prepare_pause_speech.py ~/.cache/vrvq_corpus/audiofolder_24000/speech/validation \\
        --output pause_clips [--seconds 10 --max-clips 16 --groups fillets-nl-m]

Writes ``OUTPUT/speech_pauses/<level>.wav`` (so ``scripts/evaluate.py --data-dir OUTPUT`` sees one speech
category) and ``OUTPUT/manifest.csv``: per clip its source lines and how much of it is pause, measured on
20 ms frames: ``pause_fraction`` (frames more than ``--pause-db`` below the clip's active level, the 95th
percentile of its frame levels) and ``below_-60dBFS`` (frames below the shipped silence gate's level; the
gate itself works on the model's hop-length frames and their neighbours, so this is an estimate of its share).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FRAME_SECONDS = 0.02


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("split_dir", help="an audiofolder split (metadata.csv with file_name, group, origin)")
    parser.add_argument("--output", required=True, help="folder to write speech_pauses/*.wav and manifest.csv")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each clip (default %(default)g)")
    parser.add_argument("--max-clips", type=int, default=16, help="at most this many clips (default %(default)s)")
    parser.add_argument("--groups", default="fillets-nl-m",
                        help="comma-separated metadata groups to draw lines from (default %(default)s)")
    parser.add_argument("--pause-db", type=float, default=35.0,
                        help="a frame this many dB below the active level is pause (default %(default)g)")
    return parser


def frame_levels_db(audio: np.ndarray, sampling_rate: int) -> np.ndarray:
    """RMS level in dBFS of consecutive 20 ms frames of ``audio`` ``(T,)`` (the last partial frame dropped)."""
    size = max(1, round(FRAME_SECONDS * sampling_rate))
    frames = audio[: len(audio) // size * size].reshape(-1, size).astype(np.float64)
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def pause_fraction(audio: np.ndarray, sampling_rate: int, pause_db: float = 35.0) -> float:
    """Share of 20 ms frames more than ``pause_db`` below the clip's active level (95th percentile)."""
    levels = frame_levels_db(audio, sampling_rate)
    return float(np.mean(levels < np.percentile(levels, 95) - pause_db))


def scene_of(origin: str) -> str:
    """The game level a fillets line belongs to: the folder two above the file (``.../airplane/nl/x.ogg``)."""
    parts = Path(origin).parts
    if len(parts) < 3:
        raise ValueError(f"cannot tell the level of {origin!r}: expected .../<level>/<language>/<line>")
    return parts[-3]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import soundfile

    from vrvq_hf.audio_io import read_audio

    if args.seconds <= 0 or args.max_clips < 1:
        raise SystemExit("--seconds must be > 0 and --max-clips >= 1")
    split = Path(args.split_dir)
    metadata = split / "metadata.csv"
    if not metadata.is_file():
        raise SystemExit(f"{metadata} does not exist: give an audiofolder split made by prepare_local_corpus.py")
    groups = {g.strip() for g in args.groups.split(",") if g.strip()}
    with open(metadata, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("group") in groups]
    if not rows:
        raise SystemExit(f"no lines of groups {sorted(groups)} in {metadata}")
    scenes: dict[str, list[dict[str, str]]] = {}
    for row in sorted(rows, key=lambda r: r["file_name"]):
        scenes.setdefault(scene_of(row["origin"]), []).append(row)

    out_dir = Path(args.output) / "speech_pauses"
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = []
    for scene, lines in sorted(scenes.items()):
        if len(manifest) >= args.max_clips:
            break
        pieces, used, rate, length = [], [], None, 0
        for row in lines:
            audio, line_rate = read_audio(split / row["file_name"])
            if rate is not None and line_rate != rate:
                raise SystemExit(f"{row['file_name']} is at {line_rate} Hz, the other lines at {rate} Hz")
            rate = line_rate
            audio = audio.mean(axis=0)  # read_audio gives (channels, samples)
            pieces.append(audio)
            used.append(row["file_name"])
            length += len(audio)
            if length >= args.seconds * rate:
                break
        if rate is None or length < args.seconds * rate:
            continue  # the level's lines are too short for one clip
        clip = np.concatenate(pieces)[: round(args.seconds * rate)]
        soundfile.write(out_dir / f"{scene}.wav", clip, rate, subtype="PCM_16")
        manifest.append({
            "clip": f"speech_pauses/{scene}.wav", "lines": len(used),
            "pause_fraction": round(pause_fraction(clip, rate, args.pause_db), 3),
            "below_-60dBFS": round(float(np.mean(frame_levels_db(clip, rate) < -60.0)), 3),
            "sources": " ".join(used),
        })
    if not manifest:
        raise SystemExit(f"no level has {args.seconds:g} s of lines; lower --seconds")
    with open(Path(args.output) / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(manifest[0]))
        writer.writeheader()
        writer.writerows(manifest)
    pauses = [m["pause_fraction"] for m in manifest]
    silent = [m["below_-60dBFS"] for m in manifest]
    print(f"wrote {len(manifest)} clips of {args.seconds:g} s to {out_dir}; pause fraction mean "
          f"{np.mean(pauses):.3f} (min {min(pauses):.3f}, max {max(pauses):.3f}); below -60 dBFS mean {np.mean(silent):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
