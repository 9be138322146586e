#!/usr/bin/env python
"""Build the offline training corpus (speech / music / general) as `datasets` audiofolders.

The paper trains on DAPS, VCTK, Common Voice, MUSDB18, MTG-Jamendo and AudioSet
(see ``vrvq_hf.data.PAPER_CORPORA``); none of these can be reached from an offline
machine. This script builds a small stand-in from recordings that Debian's and npm's
registries carry (see /work/shared/DATA.md), without installing anything system-wide:

* ``apt-get download NAME`` + ``dpkg -x`` for the Debian data packages,
* ``npm pack supersonic-scsynth-samples`` + ``tar`` for the general-sound samples.

Everything lives OUTSIDE the repository, by default in ``~/.cache/vrvq_corpus``
(``--root`` or ``$VRVQ_CORPUS_DIR`` override it)::

    <root>/downloads/                  .deb and .tgz files as fetched
    <root>/raw/<package>/              unpacked packages
    <root>/audiofolder_<sr>/<category>/{train,validation}/<package>/*.flac
    <root>/audiofolder_<sr>/<category>/{train,validation}/metadata.csv
    <root>/audiofolder_<sr>/items.jsonl         conversion log (makes re-runs skip work)
    <root>/audiofolder_<sr>/summary.json        hours per category and split

Each ``<category>`` folder loads with
``datasets.load_dataset("audiofolder", data_dir=<root>/audiofolder_<sr>/<category>)``
and yields the splits ``train`` and ``validation``; ``metadata.csv`` adds the columns
``category, source_package, licence, group, language, origin, duration_s``.
Audio is down-mixed to mono, resampled with soxr (high quality) and stored as 16-bit
FLAC at ``--sampling-rate`` (default 24000 Hz).

Categories and sources
----------------------
speech   tuxpaint-stamps-default (spoken stamp descriptions, digits, letters),
         fillets-ng-data-cs / -nl / fillets-ng-data (game dialogue, English lines)
music    wesnoth-1.16-music, warzone2100-music, singularity-music, fillets-ng-data music
general  supersonic-scsynth-samples (CC0 samples), tuxpaint-stamps-default sound effects
         (animal and object sounds: every tuxpaint sound that is not a description,
         a digit or a letter), fillets-ng-data game sounds (bubbles, impacts, creatures)

Split rule (train / validation): never by excerpt of one file
----------------------------------------------------------------
* tuxpaint speech: by language group (each language was recorded by its own
  translator(s), so a language is the best available speaker group). Languages
  ``el``, ``lt`` and ``nl`` go to validation, all others to train.
* fillets-ng dialogue (the -cs and -nl packages): by speaker. A line's speaker is the second dash-separated field
  of its file name (``vit-m-hlava.ogg``: level ``vit``, speaker ``m`` = small fish,
  ``v`` = big fish). Each language package has its own actors, so a speaker is the
  pair (language, character). The Dutch small fish (``nl``, ``m``) is held out whole
  for validation; every other (language, character) pair is train.
* music: by track. Per package, tracks are ordered by a CRC32 of their file name and
  the first ceil(10 %) (at least one) go to validation. Long tracks are cut into
  ``--chunk-seconds`` pieces (default 30 s; a tail shorter than 5 s is merged into the
  previous piece); all pieces of a track stay in the track's split.
* general: by file, with the same CRC32 ordering and 10 % rule per package.

Usage::

    nice python scripts/prepare_local_corpus.py                  # build everything
    python scripts/prepare_local_corpus.py --sampling-rate 44100 --max-hours-per-category 2

Re-running is idempotent: downloads, unpacked packages and converted items that
already exist are skipped, and the metadata files are rewritten from the log.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zlib
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DEB_PACKAGES: dict[str, str] = {
    "tuxpaint-stamps-default": "GPL-2",
    "fillets-ng-data-cs": "GPL-2",
    "fillets-ng-data-nl": "GPL-2",
    "fillets-ng-data": "GPL-2",
    "wesnoth-1.16-music": "GPL-2+",
    "warzone2100-music": "GPL-2+",
    "singularity-music": "CC-BY-SA-3.0",
}
NPM_PACKAGE = "supersonic-scsynth-samples"
NPM_LICENCE = "CC0-1.0"

TUXPAINT_VALIDATION_LANGUAGES = frozenset({"el", "lt", "nl"})
FILLETS_VALIDATION_SPEAKERS = frozenset({("nl", "m")})
VALIDATION_FRACTION = 0.10
MIN_TAIL_SECONDS = 5.0
AUDIO_SUFFIXES = (".ogg", ".opus", ".flac", ".wav", ".aiff", ".aif", ".mp3")
SPLITS = ("train", "validation")
CATEGORIES = ("speech", "music", "general")


@dataclass
class Item:
    """One source file to convert (a music track may yield several output pieces)."""

    src: str
    category: str
    package: str
    licence: str
    group: str
    language: str
    split: str
    out_stem: str  # path relative to <category>/<split>/, without suffix
    chunk: bool


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- fetching
def fetch_deb(name: str, downloads: Path, raw: Path) -> Path:
    """Download (apt-get download) and unpack (dpkg -x) one Debian package; idempotent."""
    target = raw / name
    if target.is_dir():
        return target
    debs = sorted(downloads.glob(f"{name}_*.deb"))
    if not debs:
        log(f"apt-get download {name}")
        subprocess.run(["apt-get", "-q", "download", name], cwd=downloads, check=True)
        debs = sorted(downloads.glob(f"{name}_*.deb"))
    if not debs:
        raise FileNotFoundError(f"apt-get download {name} produced no .deb in {downloads}")
    tmp = raw / f"{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(tmp)], check=True)
    tmp.rename(target)
    return target


def fetch_npm(name: str, downloads: Path, raw: Path) -> Path:
    """Download (npm pack) and unpack one npm package; idempotent."""
    target = raw / name
    if target.is_dir():
        return target
    tgzs = sorted(downloads.glob(f"{name}-*.tgz"))
    if not tgzs:
        log(f"npm pack {name}")
        subprocess.run(["npm", "pack", "--loglevel=error", name], cwd=downloads, check=True,
                       stdout=subprocess.DEVNULL)
        tgzs = sorted(downloads.glob(f"{name}-*.tgz"))
    if not tgzs:
        raise FileNotFoundError(f"npm pack {name} produced no .tgz in {downloads}")
    tmp = raw / f"{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(tgzs[-1]) as tar:
        tar.extractall(tmp, filter="data")
    tmp.rename(target)
    return target


# ----------------------------------------------------------------------------- inventory
def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _validation_set(keys: list[str]) -> set[str]:
    """The first ceil(10 %) keys (at least one) in CRC32 order: a fixed, name-based choice."""
    if not keys:
        return set()
    n_val = max(1, math.ceil(VALIDATION_FRACTION * len(keys)))
    return set(sorted(keys, key=lambda k: (_crc(k), k))[:n_val])


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


_LANG_SUFFIX = re.compile(r"_([a-z]{2,3}(?:_[a-zA-Z]{2})?)$")


def tuxpaint_items(root: Path) -> list[Item]:
    """Speech: descriptions, digits, letters (split by language); general: other sounds."""
    items = []
    licence = DEB_PACKAGES["tuxpaint-stamps-default"]
    sfx = []
    for path in _audio_files(root):
        rel = path.relative_to(root).as_posix()
        stem = path.name.split(".")[0]  # some names carry a doubled ".ogg.ogg"
        is_speech = "_desc" in stem or "/symbols/math/" in rel or "/symbols/alphabets/" in rel
        if not is_speech:
            sfx.append(path)
            continue
        tail = stem.split("_desc", 1)[1] if "_desc" in stem else stem
        match = _LANG_SUFFIX.search(tail) if tail else None
        language = match.group(1).lower() if match else "en"
        split = "validation" if language.split("_")[0] in TUXPAINT_VALIDATION_LANGUAGES else "train"
        items.append(Item(str(path), "speech", "tuxpaint-stamps-default", licence, f"tuxpaint-{language}",
                          language, split, f"tuxpaint-stamps-default/{_safe(rel.rsplit('.', 1)[0])}", False))
    val = _validation_set([p.relative_to(root).as_posix() for p in sfx])
    for path in sfx:
        rel = path.relative_to(root).as_posix()
        items.append(Item(str(path), "general", "tuxpaint-stamps-default", licence, f"file-{path.name}", "",
                          "validation" if rel in val else "train",
                          f"tuxpaint-stamps-default/{_safe(rel.rsplit('.', 1)[0])}", False))
    return items


def fillets_items(package: str, root: Path) -> list[Item]:
    """Language packages: dialogue (speech, split by (language, character)).

    Base package: its 15 music tracks (music) and its sounds (general: bubbles, impacts,
    creature noises and a few short non-dialogue voices; 30 of ~200 carry any text).
    """
    items, music, sounds = [], [], []
    licence = DEB_PACKAGES[package]
    for path in _audio_files(root):
        rel = path.relative_to(root).as_posix()
        if "/fillets-ng/music/" in rel:
            music.append(path)
        elif "/sound/" not in rel:
            continue
        elif package == "fillets-ng-data":
            sounds.append(path)
        else:
            language = path.parent.name
            parts = path.stem.split("-")
            character = parts[1] if len(parts) >= 3 else "other"
            split = "validation" if (language, character) in FILLETS_VALIDATION_SPEAKERS else "train"
            items.append(Item(str(path), "speech", package, licence, f"fillets-{language}-{character}",
                              language, split, f"{package}/{_safe(rel.rsplit('.', 1)[0])}", False))
    val = _validation_set([p.relative_to(root).as_posix() for p in sounds])
    for path in sounds:
        rel = path.relative_to(root).as_posix()
        items.append(Item(str(path), "general", package, licence, f"file-{_safe(rel)}", "",
                          "validation" if rel in val else "train",
                          f"{package}/{_safe(rel.rsplit('.', 1)[0])}", False))
    items += music_items(package, music, root)
    return items


def music_items(package: str, tracks: list[Path], root: Path) -> list[Item]:
    """Music tracks split by track, cut into pieces at conversion time."""
    licence = DEB_PACKAGES.get(package, NPM_LICENCE)
    rels = {p: p.relative_to(root).as_posix() for p in tracks}
    val = _validation_set(list(rels.values()))
    return [
        Item(str(p), "music", package, licence, f"track-{_safe(rel)}", "",
             "validation" if rel in val else "train", f"{package}/{_safe(rel.rsplit('.', 1)[0])}", True)
        for p, rel in rels.items()
    ]


def general_items(package: str, root: Path) -> list[Item]:
    """Every audio file of an npm sample package, one file per name (FLAC preferred)."""
    files, seen = [], set()
    for path in sorted(_audio_files(root), key=lambda p: (p.with_suffix(""), p.suffix.lower() != ".flac")):
        if path.with_suffix("") not in seen:  # e.g. bd_haus.aiff duplicates bd_haus.flac
            seen.add(path.with_suffix(""))
            files.append(path)
    rels = {p: p.relative_to(root).as_posix() for p in files}
    val = _validation_set(list(rels.values()))
    return [
        Item(str(p), "general", package, NPM_LICENCE, f"file-{_safe(rel)}", "",
             "validation" if rel in val else "train", f"{package}/{_safe(rel.rsplit('.', 1)[0])}", False)
        for p, rel in rels.items()
    ]


def inventory(raw: dict[str, Path]) -> list[Item]:
    items = tuxpaint_items(raw["tuxpaint-stamps-default"])
    for pkg in ("fillets-ng-data-cs", "fillets-ng-data-nl", "fillets-ng-data"):
        items += fillets_items(pkg, raw[pkg])
    for pkg in ("wesnoth-1.16-music", "warzone2100-music", "singularity-music"):
        items += music_items(pkg, _audio_files(raw[pkg]), raw[pkg])
    items += general_items(NPM_PACKAGE, raw[NPM_PACKAGE])
    return items


# ----------------------------------------------------------------------------- conversion
def read_mono(path: str, sampling_rate: int) -> np.ndarray:
    """Decode any supported file to mono float32 at `sampling_rate` (soundfile, ffmpeg fallback)."""
    import soundfile as sf
    import soxr

    try:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
    except Exception:  # formats libsndfile cannot read: let ffmpeg decode and resample
        proc = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", path, "-ac", "1", "-ar", str(sampling_rate), "-f", "f32le", "-"],
            check=True, capture_output=True,
        )
        return np.frombuffer(proc.stdout, dtype=np.float32).copy()
    if sr != sampling_rate:
        audio = soxr.resample(audio, sr, sampling_rate, quality="HQ").astype(np.float32)
    return audio


def piece_bounds(n_samples: int, piece: int, min_tail: int) -> list[tuple[int, int]]:
    """[start, stop) bounds of consecutive pieces; a short tail joins the previous piece."""
    if n_samples <= piece:
        return [(0, n_samples)]
    starts = list(range(0, n_samples, piece))
    bounds = [(s, min(s + piece, n_samples)) for s in starts]
    if bounds[-1][1] - bounds[-1][0] < min_tail:
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    return bounds


def convert_item(item: Item, out_root: str, sampling_rate: int, chunk_seconds: float) -> dict:
    """Convert one item; returns a log record with the written files (or an error)."""
    import soundfile as sf

    record = {"item": asdict(item), "files": [], "error": None}
    try:
        audio = read_mono(item.src, sampling_rate)
        if audio.size == 0:
            raise ValueError("decoded to zero samples")
        peak = float(np.max(np.abs(audio)))
        if peak > 1.0:  # FLAC PCM_16 would clip
            audio = audio / peak
        bounds = [(0, audio.size)]
        if item.chunk:
            bounds = piece_bounds(audio.size, int(chunk_seconds * sampling_rate),
                                  int(MIN_TAIL_SECONDS * sampling_rate))
        base = Path(out_root) / item.category / item.split
        for k, (a, b) in enumerate(bounds):
            rel = f"{item.out_stem}_part{k:03d}.flac" if item.chunk else f"{item.out_stem}.flac"
            dest = base / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".tmp")
            sf.write(tmp, audio[a:b], sampling_rate, subtype="PCM_16", format="FLAC")
            tmp.rename(dest)
            record["files"].append({"file_name": rel, "duration_s": round((b - a) / sampling_rate, 3)})
    except Exception as exc:  # reported and skipped by the caller
        record["error"] = f"{type(exc).__name__}: {exc}"
    return record


# ----------------------------------------------------------------------------- outputs
def load_log(path: Path) -> dict[str, dict]:
    done = {}
    if path.exists():
        with path.open() as fh:
            for line in fh:
                rec = json.loads(line)
                if rec["error"] is None and all(
                    (path.parent / rec["item"]["category"] / rec["item"]["split"] / f["file_name"]).exists()
                    for f in rec["files"]
                ):
                    done[rec["item"]["src"]] = rec
    return done


def write_metadata(out_root: Path, records: list[dict]) -> dict[str, dict[str, float]]:
    """Write one metadata.csv per category/split; return hours per category and split."""
    rows: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for rec in records:
        it = rec["item"]
        for f in rec["files"]:
            rows[(it["category"], it["split"])].append({
                "file_name": f["file_name"], "category": it["category"], "source_package": it["package"],
                "licence": it["licence"], "group": it["group"], "language": it["language"],
                "origin": it["src"].split("/raw/", 1)[-1], "duration_s": f["duration_s"],
            })
    hours: dict[str, dict[str, float]] = {c: {s: 0.0 for s in SPLITS} for c in CATEGORIES}
    for (category, split), entries in sorted(rows.items()):
        entries.sort(key=lambda r: r["file_name"])
        path = out_root / category / split / "metadata.csv"
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(entries[0]))
            writer.writeheader()
            writer.writerows(entries)
        hours[category][split] = sum(r["duration_s"] for r in entries) / 3600.0
    return hours


def cap_hours(items: list[Item], durations: dict[str, float], max_hours: float | None) -> list[Item]:
    """Keep items (in CRC32 order, per category and split) until `max_hours` of source audio."""
    if max_hours is None:
        return items
    kept, used = [], defaultdict(float)
    for it in sorted(items, key=lambda i: (_crc(i.src), i.src)):
        key = (it.category, it.split)
        limit = max_hours * 3600 * (VALIDATION_FRACTION if it.split == "validation" else 1.0)
        if used[key] < limit:
            kept.append(it)
            used[key] += durations.get(it.src, 0.0)
    return kept


def source_duration(path: str) -> float:
    import soundfile as sf

    try:
        return float(sf.info(path).duration)
    except Exception:
        return 0.0


def main(argv: list[str] | None = None) -> int:
    default_root = os.environ.get("VRVQ_CORPUS_DIR", str(Path.home() / ".cache" / "vrvq_corpus"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=default_root, help="cache folder outside the repo (default %(default)s)")
    parser.add_argument("--sampling-rate", type=int, default=24000)
    parser.add_argument("--chunk-seconds", type=float, default=30.0, help="music piece length")
    parser.add_argument("--max-hours-per-category", type=float, default=None,
                        help="cap on train hours per category (validation: 10 %% of it); default no cap")
    parser.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    args = parser.parse_args(argv)
    if args.sampling_rate < 8000:
        parser.error(f"--sampling-rate must be >= 8000 Hz, got {args.sampling_rate}")
    if args.chunk_seconds < 2 * MIN_TAIL_SECONDS:
        parser.error(f"--chunk-seconds must be >= {2 * MIN_TAIL_SECONDS}, got {args.chunk_seconds}")

    t0 = time.time()
    root = Path(args.root).expanduser().resolve()
    repo = Path(__file__).resolve().parents[1]
    if root == repo or repo in root.parents:
        parser.error(f"--root {root} is inside the repository {repo}; audio must stay out of git")
    downloads, raw_dir = root / "downloads", root / "raw"
    downloads.mkdir(parents=True, exist_ok=True)
    raw_dir.mkdir(parents=True, exist_ok=True)
    raw = {name: fetch_deb(name, downloads, raw_dir) for name in DEB_PACKAGES}
    raw[NPM_PACKAGE] = fetch_npm(NPM_PACKAGE, downloads, raw_dir)
    log(f"packages ready in {time.time() - t0:.0f} s")

    items = inventory(raw)
    if args.max_hours_per_category is not None:
        durations = {it.src: source_duration(it.src) for it in items}
        items = cap_hours(items, durations, args.max_hours_per_category)
    out_root = root / f"audiofolder_{args.sampling_rate}"
    out_root.mkdir(parents=True, exist_ok=True)
    log_path = out_root / "items.jsonl"
    done = load_log(log_path)
    todo = [it for it in items if it.src not in done]
    log(f"{len(items)} source files, {len(done)} already converted, {len(todo)} to convert")

    errors = []
    with log_path.open("a") as fh, ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = pool.map(convert_item, todo, [str(out_root)] * len(todo),
                           [args.sampling_rate] * len(todo), [args.chunk_seconds] * len(todo), chunksize=16)
        for k, rec in enumerate(futures, 1):
            if rec["error"] is not None:
                errors.append(rec)
                log(f"WARNING: skipped {rec['item']['src']}: {rec['error']}")
                continue
            done[rec["item"]["src"]] = rec
            fh.write(json.dumps(rec) + "\n")
            if k % 1000 == 0:
                log(f"  converted {k}/{len(todo)} ({time.time() - t0:.0f} s)")

    wanted = {it.src for it in items}
    hours = write_metadata(out_root, [rec for src, rec in done.items() if src in wanted])
    summary = {
        "root": str(out_root), "sampling_rate": args.sampling_rate, "chunk_seconds": args.chunk_seconds,
        "max_hours_per_category": args.max_hours_per_category, "hours": hours,
        "files": {c: {s: sum(1 for r in done.values() if r["item"]["category"] == c and r["item"]["split"] == s
                             and r["item"]["src"] in wanted for _ in r["files"]) for s in SPLITS}
                  for c in CATEGORIES},
        "skipped_files": [r["item"]["src"] for r in errors],
        "licences": {**DEB_PACKAGES, NPM_PACKAGE: NPM_LICENCE},
    }
    (out_root / "summary.json").write_text(json.dumps(summary, indent=2))
    log(f"\ncorpus: {out_root}")
    log(f"{'category':<10}{'train h':>10}{'valid h':>10}{'train files':>13}{'valid files':>13}")
    for c in CATEGORIES:
        log(f"{c:<10}{hours[c]['train']:>10.2f}{hours[c]['validation']:>10.2f}"
            f"{summary['files'][c]['train']:>13}{summary['files'][c]['validation']:>13}")
    log(f"skipped {len(errors)} unreadable files; total time {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
