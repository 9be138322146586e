"""Rate-distortion sweep of a VRVQ model: VBR over levels against CBR over codebook counts.

For every clip and every operating point the sweep encodes, decodes and records

* ``kbps``: the counted bitrate of SPEC section 6, side information included (``ceil(log2 Nq)`` bits on
  every frame), as the model reports it; ``side_info_kbps`` and ``payload_kbps`` (codes only) apart;
* ``mean_codebooks``: active codebooks per frame, averaged over the clip;
* the chosen metrics (:mod:`vrvq_hf.evaluation.metrics`).

BD-rate convention (honest against VBR): the CBR curve is placed at its *payload* bitrate (a fixed-rate
codec needs no per-frame side information), the VBR curve at its *total* bitrate including side
information. The BD-rate of VBR against CBR therefore charges VBR for every bit it sends. A sweep given a
``baseline`` model (a codec trained for constant bitrate) also codes every clip with it at the CBR counts
and places VBR against those points the same way; ``opus_kbps`` adds a classical anchor, Opus
(:mod:`~vrvq_hf.evaluation.anchors`), at the rate of its packets.

Clip sources are lazy (:class:`ClipSource`): a local folder (:func:`folder_sources`, category per
sub-folder or given) or a ``datasets`` dataset (:func:`dataset_sources`, by hub id or object).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .anchors import check_opus_targets, opus_round_trip
from .bd_rate import bd_rate, is_monotone
from .metrics import METRICS, compute_metrics

__all__ = [
    "AUDIO_EXTENSIONS",
    "CHEAP_METRICS",
    "DEFAULT_LEVELS",
    "Clip",
    "ClipSource",
    "OperatingPoint",
    "SamplingRateMismatchError",
    "SweepResult",
    "clips_by_category",
    "code_and_decode",
    "dataset_sources",
    "folder_sources",
    "is_speech_category",
    "prepare_clip",
    "run_evaluation",
    "run_sweep",
    "summarize",
    "summary_markdown",
    "write_rows_csv",
    "write_rows_json",
]

logger = logging.getLogger(__name__)

DEFAULT_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
CHEAP_METRICS: tuple[str, ...] = ("mel", "stft", "sisdr", "l1")
TORCH_METRICS: tuple[str, ...] = ("mel", "stft", "sisdr", "l1")  # computed in the sweep's own process
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aiff", ".aif")
ROW_FIELDS: tuple[str, ...] = (
    "clip", "category", "mode", "point", "level", "n_quantizers", "seconds",
    "kbps", "payload_kbps", "side_info_kbps", "mean_codebooks",
)


# ------------------------------------------------------------------------------------------------ sources
class SamplingRateMismatchError(ValueError):
    """A clip's sampling rate differs from the model's and resampling was not asked for."""


@dataclass
class ClipSource:
    """A clip not yet read: ``load()`` returns ``(audio, sampling_rate)`` with audio ``(T,)`` or
    ``(channels, T)`` (or ``(T, channels)``) and raises on unreadable data."""

    name: str
    category: str
    load: Callable[[], tuple[np.ndarray, int]]


@dataclass
class Clip:
    """A prepared clip: mono float32 ``audio`` ``(T,)`` at ``sampling_rate``."""

    name: str
    category: str
    audio: np.ndarray
    sampling_rate: int


def folder_sources(
    data_dir: str | os.PathLike,
    category: str | None = None,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
) -> list[ClipSource]:
    """Audio files under ``data_dir`` (recursive, sorted). Category: ``category`` if given, else the first
    sub-folder below ``data_dir`` (``data_dir/music/x.wav`` -> ``music``), else the folder's own name."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"--data-dir {root} is not a directory")
    suffixes = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    files = sorted(p for p in _walk(root) if p.suffix.lower() in suffixes)
    sources = []
    for path in files:
        relative = path.relative_to(root)
        clip_category = category or (relative.parts[0] if len(relative.parts) > 1 else root.resolve().name)
        sources.append(ClipSource(str(relative), clip_category, _file_loader(path)))
    return sources


def _walk(root: Path) -> list[Path]:
    """Files under ``root``, following symlinked folders (each real folder once)."""
    seen: set[str] = set()
    found = []
    for directory, subdirectories, names in os.walk(root, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirectories[:] = []
            continue
        seen.add(real)
        found += [Path(directory) / name for name in names if os.path.isfile(os.path.join(directory, name))]
    return found


def _file_loader(path: Path) -> Callable[[], tuple[np.ndarray, int]]:
    def load() -> tuple[np.ndarray, int]:
        from ..audio_io import read_audio

        return read_audio(path)

    return load


def dataset_sources(
    dataset: str | Any,
    split: str | None = None,
    audio_column: str = "audio",
    category: str | None = None,
    category_column: str | None = None,
) -> list[ClipSource]:
    """Clips of a ``datasets`` dataset: a hub id (loaded with ``datasets.load_dataset(id, split=split)``) or
    any indexable of mappings (a ``datasets.Dataset`` included). The audio column holds decoded audio
    (``{"array", "sampling_rate"}``). Category: ``category_column`` per item, else ``category``, else the
    dataset's name."""
    if isinstance(dataset, str):
        try:
            import datasets
        except ImportError as error:
            raise ImportError("--dataset needs the `datasets` package: pip install 'vrvq-hf[train]'") from error
        if split is None:
            raise ValueError("--dataset needs --split (e.g. test)")
        name = dataset
        dataset = datasets.load_dataset(dataset, split=split)
    else:
        name = getattr(getattr(dataset, "info", None), "dataset_name", None) or "dataset"
    columns = getattr(dataset, "column_names", None)
    if columns is not None:
        for wanted in (audio_column, category_column):
            if wanted is not None and wanted not in columns:
                raise ValueError(f"dataset has no column {wanted!r}; its columns are {columns}")
    prefix = f"{name}:{split}" if split else str(name)
    if category_column is not None:
        try:  # a datasets.Dataset reads one column without decoding the audio
            categories = [str(c) for c in dataset[category_column]]
        except (TypeError, KeyError, IndexError):
            categories = [str(item[category_column]) for item in dataset]
    else:
        categories = [category or str(name).rsplit("/", 1)[-1]] * len(dataset)
    return [
        ClipSource(f"{prefix}[{index}]", categories[index], _item_loader(dataset, index, audio_column))
        for index in range(len(dataset))
    ]


def _item_loader(dataset: Any, index: int, column: str) -> Callable[[], tuple[np.ndarray, int]]:
    def load() -> tuple[np.ndarray, int]:
        audio = dataset[index][column]
        if isinstance(audio, (np.ndarray, torch.Tensor, list, str, bytes)) or not hasattr(audio, "__getitem__"):
            raise ValueError(
                f"column {column!r} holds {type(audio).__name__}; expected decoded audio with 'array' and "
                "'sampling_rate' (a datasets Audio column)"
            )
        array, rate = audio["array"], audio["sampling_rate"]
        return np.asarray(array, dtype=np.float32), int(rate)

    return load


def is_speech_category(category: str, speech_categories: Iterable[str] | None = None) -> bool:
    """Speech categories get ViSQOL's speech mode, PESQ and STOI. Default: names containing "speech"."""
    if speech_categories is not None:
        return category in set(speech_categories)
    return "speech" in category.lower()


def _to_mono(audio: np.ndarray, name: str) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        channel_axis = 0 if audio.shape[0] <= audio.shape[1] else 1
        audio = audio.mean(axis=channel_axis)
    if audio.ndim != 1:
        raise ValueError(f"{name}: expected (samples,) or (channels, samples) audio, got {audio.shape}")
    if audio.size == 0:
        raise ValueError(f"{name}: holds no samples")
    if not np.isfinite(audio).all():
        raise ValueError(f"{name}: holds NaN or infinite samples")
    return audio


def prepare_clip(
    source: ClipSource,
    sampling_rate: int,
    clip_seconds: float | None = 10.0,
    resample: bool = False,
) -> Clip:
    """Loads, downmixes to mono, keeps the first ``clip_seconds`` and checks the rate.

    A rate other than ``sampling_rate`` is an error unless ``resample`` (then soxr resamples, logged).
    Loading errors propagate (the sweep turns them into skipped clips).
    """
    audio, rate = source.load()
    audio = _to_mono(audio, source.name)
    if rate != sampling_rate:
        if not resample:
            raise SamplingRateMismatchError(
                f"clip {source.name} is sampled at {rate} Hz but the model expects {sampling_rate} Hz; "
                "pass --resample (resample=True) to resample it"
            )
        from ..audio_io import resample as resample_audio

        logger.info("resampling %s from %d Hz to %d Hz", source.name, rate, sampling_rate)
        audio = resample_audio(audio, rate, sampling_rate)
    if clip_seconds is not None:
        audio = audio[: max(1, int(round(clip_seconds * sampling_rate)))]
    return Clip(source.name, source.category, np.ascontiguousarray(audio, dtype=np.float32), sampling_rate)


def readable_clips(
    sources: Iterable[ClipSource],
    sampling_rate: int,
    clip_seconds: float | None = 10.0,
    resample: bool = False,
    max_clips: int | None = None,
    on_skip: Callable[[ClipSource, Exception], None] | None = None,
) -> Iterator[Clip]:
    """Yields the first ``max_clips`` readable clips of each category, in source order, loading each one
    only when it is reached (:func:`prepare_clip`). An unreadable clip goes to ``on_skip(source, error)``
    and does not count; a sampling-rate mismatch without ``resample`` raises."""
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips must be >= 1, got {max_clips}")
    taken: dict[str, int] = {}
    for source in sources:
        if max_clips is not None and taken.get(source.category, 0) >= max_clips:
            continue  # this category is full
        try:
            clip = prepare_clip(source, sampling_rate, clip_seconds, resample)
        except SamplingRateMismatchError:
            raise
        except Exception as error:
            if on_skip is not None:
                on_skip(source, error)
            continue
        taken[source.category] = taken.get(source.category, 0) + 1
        yield clip


def clips_by_category(
    data_dir: str | os.PathLike,
    sampling_rate: int,
    clip_seconds: float | None = 10.0,
    max_clips: int | None = None,
    shuffle: int | None = None,
    on_skip: Callable[[ClipSource, Exception], None] | None = None,
) -> dict[str, list[torch.Tensor]]:
    """The clips `scripts/evaluate.py` measures with the same flags, as mono tensors (samples,) per
    category: the folder's files (sub-folders are categories), shuffled with seed `shuffle` if given, then
    the first `max_clips` readable ones of each category (:func:`readable_clips`)."""
    sources = folder_sources(data_dir)
    if shuffle is not None:
        random.Random(shuffle).shuffle(sources)
    clips: dict[str, list[torch.Tensor]] = {}
    for clip in readable_clips(sources, sampling_rate, clip_seconds, max_clips=max_clips, on_skip=on_skip):
        clips.setdefault(clip.category, []).append(torch.from_numpy(clip.audio))
    return clips


# -------------------------------------------------------------------------------------------------- sweep
@dataclass
class SweepResult:
    """Rows (one per clip x mode x point), the clips skipped as unreadable (name, reason), the number and
    names of the evaluated clips, and the sweep's settings."""

    rows: list[dict[str, Any]]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    n_clips: int = 0
    metrics: tuple[str, ...] = CHEAP_METRICS
    levels: tuple[float, ...] = DEFAULT_LEVELS
    n_quantizers: tuple[int, ...] = ()
    clips: list[str] = field(default_factory=list)
    baseline: bool = False  # rows of mode "baseline": a separate constant-bitrate model at the CBR counts
    opus_kbps: tuple[float, ...] = ()  # rows of mode "opus": the Opus anchor at these target bitrates


class OperatingPoint(NamedTuple):
    """One point of the sweep: "vbr" at a level, "cbr" / "baseline" at a codebook count, "opus" at a
    target bitrate."""

    mode: str
    level: float | None = None
    n_quantizers: int | None = None
    target_kbps: float | None = None

    @property
    def key(self) -> str:
        """The row's `point` label: l=1, n=4 or 6k."""
        if self.mode == "vbr":
            return f"l={self.level:g}"
        if self.mode == "opus":
            return f"{self.target_kbps:g}k"
        return f"n={self.n_quantizers}"


def _points(
    levels: Sequence[float], n_quantizers: Sequence[int], baseline: bool = False, opus_kbps: Sequence[float] = ()
) -> list[OperatingPoint]:
    points = [OperatingPoint("vbr", level=float(level)) for level in levels]
    points += [OperatingPoint("cbr", n_quantizers=int(n)) for n in n_quantizers]
    if baseline:
        points += [OperatingPoint("baseline", n_quantizers=int(n)) for n in n_quantizers]
    points += [OperatingPoint("opus", target_kbps=float(kbps)) for kbps in opus_kbps]
    return points


def _check_baseline(model: Any, baseline: Any, n_quantizers: Sequence[int]) -> None:
    """A baseline must code the same audio (sampling rate, frame rate) and have the swept codebook counts."""
    ours, theirs = model.config, baseline.config
    if (theirs.sampling_rate, theirs.hop_length) != (ours.sampling_rate, ours.hop_length):
        raise ValueError(
            f"the baseline codes {theirs.sampling_rate} Hz audio with a hop of {theirs.hop_length} samples, the "
            f"model {ours.sampling_rate} Hz with a hop of {ours.hop_length}: compare models of one sampling and "
            "frame rate"
        )
    bad = [n for n in n_quantizers if not 1 <= int(n) <= theirs.n_codebooks]
    if bad:
        raise ValueError(f"the baseline has {theirs.n_codebooks} codebooks; CBR counts {bad} are out of its range")


def _check_settings(model: Any, levels: Sequence[float], n_quantizers: Sequence[int], metrics: Sequence[str]) -> None:
    config = model.config
    if not levels and not n_quantizers:
        raise ValueError("nothing to sweep: give at least one VBR level or one CBR codebook count")
    bad_levels = [level for level in levels if not (math.isfinite(level) and level > 0)]
    if bad_levels:
        raise ValueError(f"levels must be positive numbers, got {bad_levels}")
    if levels and not getattr(config, "use_importance_subnet", True):
        raise ValueError("this model is constant-bitrate (no importance subnet): sweep it with levels=() (CBR only)")
    bad_n = [n for n in n_quantizers if not 1 <= int(n) <= config.n_codebooks]
    if bad_n:
        raise ValueError(f"CBR codebook counts must be in 1..{config.n_codebooks}, got {bad_n}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {sorted(METRICS)}")


@torch.inference_mode()
def code_and_decode(
    model: Any, audio: torch.Tensor, level: float | None, n_quantizers: int | None, entropy_tables: Any = None
) -> tuple[np.ndarray, dict[str, float]]:
    """Encodes (1, 1, T) audio at one operating point, decodes it -> (decoded (T,), rate fields). With
    `entropy_tables`, `coded_kbps` is the payload of the real `.vrvq` file (header excluded) over the clip."""
    config = model.config
    if level is not None:
        encoded = model.encode(audio, level=level)
    else:
        encoded = model.encode(audio, n_quantizers=n_quantizers)
    decoded = model.decode(
        encoded.audio_codes, num_codebooks=encoded.num_codebooks, padding_mask=encoded.padding_mask
    ).audio_values
    counts = encoded.num_codebooks[0]
    valid = counts > 0
    mean_codebooks = float(counts[valid].double().mean())
    kbps = float(encoded.bitrate_kbps[0])
    payload = mean_codebooks * config.bits_per_code * config.frame_rate / 1000.0
    rates = {
        "kbps": kbps,
        "payload_kbps": payload,
        "side_info_kbps": kbps - payload,
        "mean_codebooks": mean_codebooks,
    }
    if entropy_tables is not None:
        codes = encoded.audio_codes[0][:, valid]
        rates.update(_coded_rates(config, codes, counts[valid], audio.shape[-1], entropy_tables))
    return decoded[0, 0, : audio.shape[-1]].double().cpu().numpy(), rates


def _coded_rates(config: Any, codes: torch.Tensor, counts: torch.Tensor, num_samples: int, tables: Any) -> dict[str, float]:
    """Codes (Nq, F) and counts (F,) of the valid frames -> `coded_kbps`: the payload of the `.vrvq` file the
    CLI would write (entropy coded where that is smaller; header left out); `coded_codes_kbps`: the ideal
    code length of the codes alone, without the count stream (what a constant-bitrate codec, which sends
    no counts, would need)."""
    from ..bitstream import HEADER_SIZE, encode_bitstream

    data = encode_bitstream(
        codes, counts, sampling_rate=config.sampling_rate, hop_length=config.hop_length,
        codebook_size=config.codebook_size, num_samples=num_samples, model_id=None, entropy_tables=tables,
    )
    seconds = num_samples / config.sampling_rate
    return {
        "coded_kbps": (len(data) - HEADER_SIZE) * 8 / seconds / 1000.0,
        "coded_codes_kbps": tables.code_information_bits(codes, counts) / seconds / 1000.0,
    }


def _opus_point(clip: Clip, kbps: float, coded: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """The Opus anchor at one target: decoded (T,) and its rate fields (all of it payload; Opus is entropy
    coded already, so its coded rates are its packet rate)."""
    decoded, used = opus_round_trip(clip.audio, clip.sampling_rate, kbps)
    rates: dict[str, Any] = {"kbps": used, "payload_kbps": used, "side_info_kbps": 0.0, "mean_codebooks": None}
    if coded:
        rates.update(coded_kbps=used, coded_codes_kbps=used)
    return decoded.astype(np.float64), rates


def run_sweep(
    model: Any,
    sources: Sequence[ClipSource],
    levels: Sequence[float] = DEFAULT_LEVELS,
    n_quantizers: Sequence[int] | None = None,
    metrics: Sequence[str] = CHEAP_METRICS,
    clip_seconds: float | None = 10.0,
    resample: bool = False,
    max_clips: int | None = None,
    visqol_max_clips: int | None = None,
    speech_categories: Iterable[str] | None = None,
    metric_workers: int = 1,
    entropy_tables: Any = None,
    baseline: Any = None,
    baseline_tables: Any = None,
    opus_kbps: Sequence[float] = (),
    progress: bool = True,
) -> SweepResult:
    """Sweeps VBR ``levels`` and CBR ``n_quantizers`` (default 1..Nq) over the clips.

    metrics: names from :data:`~vrvq_hf.evaluation.metrics.METRICS`. PESQ / STOI / ESTOI run on speech
        categories only (:func:`is_speech_category`); ViSQOL in speech mode there, audio mode elsewhere.
    max_clips: at most this many clips per category (the first readable ones, in source order).
    visqol_max_clips: ViSQOL only on the first this-many evaluated clips per category (it costs ~8 s per
        10 s clip); None: all.
    metric_workers: processes computing ViSQOL / PESQ / STOI in parallel (1: in this process). ViSQOL is
        single-threaded, so on a many-core machine this is the main speed-up.
    entropy_tables: the model's :class:`~vrvq_hf.entropy.CodeTables`; rows then carry `coded_kbps`, the
        payload of the entropy-coded `.vrvq` file, and the summary a second BD-rate at those sizes.
    baseline: another model (typically a constant-bitrate codec trained with the DAC recipe) coded on the
        same clips at the CBR counts, as rows of mode "baseline"; the summary then adds the BD-rate of VBR
        against it. baseline_tables: its code tables (needed with `entropy_tables`).
    opus_kbps: target bitrates of a classical anchor, Opus (:mod:`~vrvq_hf.evaluation.anchors`), coded on
        the same clips as rows of mode "opus" at the rate of their packets.
    Unreadable clips are skipped with a warning and listed in ``result.skipped``. No clips, or a clip rate
    other than the model's without ``resample``, raise ``ValueError``.
    """
    from tqdm.auto import tqdm

    config = model.config
    n_quantizers = tuple(range(1, config.n_codebooks + 1)) if n_quantizers is None else tuple(int(n) for n in n_quantizers)
    levels = tuple(float(level) for level in levels)
    metrics = tuple(dict.fromkeys(metrics))
    _check_settings(model, levels, n_quantizers, metrics)
    if baseline is not None:
        _check_baseline(model, baseline, n_quantizers)
        if (entropy_tables is None) != (baseline_tables is None):
            raise ValueError("give code tables for both the model and the baseline, or for neither")
        baseline.eval()
    opus_kbps = tuple(float(kbps) for kbps in opus_kbps)
    if opus_kbps:
        check_opus_targets(opus_kbps)  # before any clip is coded
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips must be >= 1, got {max_clips}")
    if not sources:
        raise ValueError("no clips to evaluate: the folder or dataset holds no audio")

    if metric_workers < 1:
        raise ValueError(f"metric_workers must be >= 1, got {metric_workers}")
    model.eval()
    points = _points(levels, n_quantizers, opus_kbps=opus_kbps)
    baseline_points = [OperatingPoint("baseline", n_quantizers=n) for n in n_quantizers]
    rows: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    names: list[str] = []
    evaluated: dict[str, int] = {}  # clips evaluated per category
    totals: dict[str, int] = {}
    for source in sources:
        totals[source.category] = totals.get(source.category, 0) + 1
    expected = sum(n if max_clips is None else min(n, max_clips) for n in totals.values())
    bar = tqdm(total=expected, desc="clips", unit="clip", disable=not progress)
    pool = _metric_pool(metric_workers, metrics)
    try:
        def skip(source: ClipSource, error: Exception) -> None:
            warnings.warn(f"skipping unreadable clip {source.name}: {error}", stacklevel=3)
            skipped.append((source.name, str(error)))
            bar.update(1)

        for clip in readable_clips(sources, config.sampling_rate, clip_seconds, resample, max_clips, on_skip=skip):
            done = evaluated.get(clip.category, 0)
            speech = is_speech_category(clip.category, speech_categories)
            clip_metrics = [
                m for m in metrics
                if (speech or not METRICS[m].speech_only)
                and (m != "visqol" or visqol_max_clips is None or done < visqol_max_clips)
            ]
            rows += _evaluate_clip(model, clip, points, metrics, clip_metrics, speech, pool, entropy_tables)
            if baseline is not None:
                rows += _evaluate_clip(baseline, clip, baseline_points, metrics, clip_metrics, speech, pool, baseline_tables)
            evaluated[clip.category] = done + 1
            names.append(clip.name)
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if not rows:
        raise ValueError(f"no clip could be read: all {len(skipped)} were skipped ({skipped[:3]} ...)")
    return SweepResult(rows, skipped, len(names), metrics, levels, n_quantizers, names, baseline is not None, opus_kbps)


def _metric_pool(workers: int, metrics: Sequence[str]) -> Any:
    """A process pool for the CPU-bound perceptual metrics, or None (workers <= 1 or none asked for)."""
    if workers <= 1 or not set(metrics) - set(TORCH_METRICS):
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a forked child of a process that already ran torch can deadlock in its thread pools.
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def _evaluate_clip(
    model: Any,
    clip: Clip,
    points: list[OperatingPoint],
    metrics: tuple[str, ...],
    clip_metrics: list[str],
    speech: bool,
    pool: Any,
    entropy_tables: Any = None,
) -> list[dict[str, Any]]:
    """Rows of one clip: every operating point coded, decoded and measured (Opus points with the anchor,
    the others with `model`)."""
    device = next(model.parameters()).device
    audio = torch.from_numpy(clip.audio).to(device=device, dtype=torch.float32).view(1, 1, -1)
    reference = clip.audio.astype(np.float64)
    local = [m for m in clip_metrics if m in TORCH_METRICS or pool is None]
    remote = [m for m in clip_metrics if m not in local]
    rows, pending = [], []
    for point in points:
        if point.mode == "opus":
            decoded, rates = _opus_point(clip, point.target_kbps, coded=entropy_tables is not None)
        else:
            decoded, rates = code_and_decode(model, audio, point.level, point.n_quantizers, entropy_tables)
        row: dict[str, Any] = {
            "clip": clip.name,
            "category": clip.category,
            "mode": point.mode,
            "point": point.key,
            "level": point.level,
            "n_quantizers": point.n_quantizers,
            "seconds": clip.audio.size / clip.sampling_rate,
            **rates,
        }
        row.update(compute_metrics(decoded, reference, clip.sampling_rate, local, speech))
        if remote:
            pending.append(pool.submit(compute_metrics, decoded, reference, clip.sampling_rate, remote, speech))
        rows.append(row)
    for row, future in zip(rows, pending):
        row.update(future.result())
    for row in rows:
        values = {m: row.pop(m, None) for m in metrics}
        row.update(values)  # every asked metric present (None where not computed), in the asked order
        if "visqol" in metrics:
            measured = values["visqol"] is not None and math.isfinite(values["visqol"])
            row["visqol_mode"] = ("speech" if speech else "audio") if measured else None
    return rows


# ------------------------------------------------------------------------------------------------ summary
def _nanmean(values: list[Any]) -> tuple[float | None, int]:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return (float(np.mean(finite)) if finite else None), len(finite)


def summarize(result: SweepResult, bd_method: str = "pchip") -> dict[str, Any]:
    """Per category (plus "all" when there are several) and operating point: mean rate fields and
    metrics (NaN-skipping, with clip counts), and the BD-rate of VBR (total kbps) against CBR (payload
    kbps) per category and metric, in percent (negative: VBR saves bits). Rows with `coded_kbps` (a sweep
    given code tables) add `bd_rate_coded`: VBR at the size of its entropy-coded file, CBR at the ideal
    entropy-coded size of its codes alone. A sweep with a baseline adds `bd_rate_baseline` (and
    `bd_rate_baseline_coded`): VBR against the baseline model's CBR points, placed the same way; one with
    the Opus anchor `bd_rate_opus` (and `bd_rate_opus_coded`), Opus at the rate of its packets."""
    categories = sorted({row["category"] for row in result.rows})
    groups = {c: [row for row in result.rows if row["category"] == c] for c in categories}
    if len(categories) > 1:
        groups["all"] = list(result.rows)
    visqol_modes = {row.get("visqol_mode") for row in result.rows} - {None}
    coded = all("coded_kbps" in row for row in result.rows)
    coded_fields = ("coded_kbps", "coded_codes_kbps") if coded else ()
    rate_fields = ("kbps", "payload_kbps", "side_info_kbps", *coded_fields, "mean_codebooks")
    points: list[dict[str, Any]] = []
    comparisons = {}
    for reference in ("cbr", *(["baseline"] if result.baseline else []), *(["opus"] if result.opus_kbps else [])):
        name = "bd_rate" if reference == "cbr" else f"bd_rate_{reference}"
        comparisons[name] = (reference, ("kbps", "payload_kbps"))
        if coded:
            comparisons[f"{name}_coded"] = (reference, ("coded_kbps", "coded_codes_kbps"))
    bd: dict[str, list[dict[str, Any]]] = {name: [] for name in comparisons}
    for category, rows in groups.items():
        category_points = []
        for point in _points(result.levels, result.n_quantizers, result.baseline, result.opus_kbps):
            selected = [row for row in rows if row["mode"] == point.mode and row["point"] == point.key]
            entry: dict[str, Any] = {
                "category": category, "mode": point.mode, "point": point.key, "level": point.level,
                "n_quantizers": point.n_quantizers, "clips": len(selected),
            }
            for name in (*rate_fields, *result.metrics):
                if name == "visqol" and category == "all" and len(visqol_modes) > 1:
                    entry[name], count = None, 0  # speech- and audio-mode scores are not on one scale
                else:
                    entry[name], count = _nanmean([row.get(name) for row in selected])
                if name in result.metrics:
                    entry[f"{name}_clips"] = count
            category_points.append(entry)
        points += category_points
        for metric in result.metrics:
            for name, (reference, rate_keys) in comparisons.items():
                entry = _bd_entry(category_points, metric, bd_method, rate_keys, reference)
                bd[name].append({"category": category, "metric": metric, **entry})
    return {"points": points, **bd, "bd_method": bd_method}


def _bd_entry(
    points: list[dict[str, Any]],
    metric: str,
    method: str,
    rate_keys: tuple[str, str] = ("kbps", "payload_kbps"),
    reference: str = "cbr",
) -> dict[str, Any]:
    """BD-rate of VBR against the `reference` mode's points ("cbr"; "baseline": another model's CBR; "opus")
    for one metric; rate_keys: the rate field of the VBR and of the reference points."""
    curves = {}
    for mode, rate_key in zip(("vbr", reference), rate_keys):
        pairs = {(p[rate_key], p[metric]) for p in points if p["mode"] == mode and p[metric] is not None}
        curves[mode] = sorted(pairs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-monotone curves of a weak model: still a defined average
            value = bd_rate(
                [r for r, _ in curves[reference]], [q for _, q in curves[reference]],
                [r for r, _ in curves["vbr"]], [q for _, q in curves["vbr"]],
                higher_is_better=METRICS[metric].higher_is_better, method=method,
            )
        sign = 1.0 if METRICS[metric].higher_is_better else -1.0
        non_monotone = [
            mode for mode, curve in curves.items()
            if not is_monotone([r for r, _ in curve], [sign * q for _, q in curve])
        ]
        return {"bd_rate_percent": value, "error": None, "non_monotone": non_monotone}
    except ValueError as error:
        return {"bd_rate_percent": None, "error": str(error), "non_monotone": []}


# ------------------------------------------------------------------------------------------------ writing
def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return _plain(value.item())
    return value


def write_rows_csv(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Rows -> CSV (missing values empty)."""
    path = Path(path)
    fields = list(ROW_FIELDS) + [k for k in dict.fromkeys(k for row in rows for k in row) if k not in ROW_FIELDS]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if _plain(row.get(k)) is None else _plain(row.get(k)) for k in fields})
    return path


def write_rows_json(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Rows -> JSON list (missing values null)."""
    path = Path(path)
    path.write_text(json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows], indent=1))
    return path


def _cell(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _metric_cell(point: dict[str, Any], metric: str) -> str:
    """A metric's mean, with its clip count in brackets when it was measured on fewer clips than the row's."""
    count = point.get(f"{metric}_clips", point["clips"])
    return _cell(point[metric]) + (f" ({count})" if point[metric] is not None and count != point["clips"] else "")


def summary_markdown(summary: dict[str, Any], result: SweepResult, config: Any = None, title: str | None = None) -> str:
    """A markdown report (tables a model card can include)."""
    metrics = list(result.metrics)
    lines = [f"# {title or 'Rate-distortion evaluation'}", ""]
    lines.append(
        f"{result.n_clips} clips evaluated"
        + (f", {len(result.skipped)} unreadable clips skipped" if result.skipped else "")
        + ". VBR: levels " + ", ".join(f"{level:g}" for level in result.levels)
        + "; CBR: " + ", ".join(str(n) for n in result.n_quantizers) + " codebooks"
        + ("; BASELINE: a second, constant-bitrate model at the same counts" if result.baseline else "")
        + ("; OPUS: libopus at " + ", ".join(f"{kbps:g}" for kbps in result.opus_kbps) + " kbps targets"
           if result.opus_kbps else "")
        + "."
    )
    if config is not None:
        lines.append(
            f"Model: {config.sampling_rate} Hz, {config.n_codebooks} codebooks x {config.bits_per_code} bits at "
            f"{config.frame_rate:.2f} frames/s; side information {config.side_info_bits} bits/frame = "
            f"{config.side_info_kbps:.3f} kbps; counted range {config.min_kbps:.3f}..{config.max_kbps:.3f} kbps."
        )
    lines += [
        "",
        "`kbps` counts every transmitted bit: codes plus the per-frame side information (SPEC section 6); "
        "`payload` is the codes alone. Lower is better for mel, STFT and L1; higher for SI-SDR, ViSQOL, "
        "PESQ, STOI and ESTOI. ViSQOL uses speech mode on speech categories and audio mode elsewhere (the "
        "two scales differ, so `all` leaves ViSQOL out when both occur); PESQ and STOI run on speech only. "
        "A metric computed on fewer clips than the row's (ViSQOL on a subset, or a clip a metric cannot score, "
        "such as PESQ finding no speech) is averaged over those clips, and their number follows it in brackets.",
        "",
    ]
    coded = "bd_rate_coded" in summary
    if coded:
        lines += [
            "`coded kbps` is the payload of the real `.vrvq` file with the model's code tables (entropy coded "
            "codes and counts; the 64-byte header left out); `coded codes kbps` is the ideal entropy-coded "
            "size of the codes alone, without the count stream.",
            "",
        ]
    categories = list(dict.fromkeys(p["category"] for p in summary["points"]))
    for category in categories:
        lines += [f"## {category}", ""]
        header = ["mode", "point", "clips", "kbps", "payload kbps", *(["coded kbps", "coded codes kbps"] if coded else []),
                  "codebooks/frame", *metrics]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for p in summary["points"]:
            if p["category"] != category:
                continue
            cells = [p["mode"].upper(), p["point"], str(p["clips"]), _cell(p["kbps"]), _cell(p["payload_kbps"]),
                     *([_cell(p["coded_kbps"]), _cell(p["coded_codes_kbps"])] if coded else []),
                     _cell(p["mean_codebooks"], 2),
                     *(_metric_cell(p, m) for m in metrics)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## BD-rate of VBR against CBR",
        "",
        f"Percent bitrate change at equal quality ({summary['bd_method']} interpolation of log-rate over the "
        "shared quality range); negative means VBR needs fewer bits. VBR is placed at its total bitrate "
        "(side information included), CBR at its payload bitrate (a fixed-rate codec sends no side "
        "information), so the figure charges VBR for every bit it sends.",
        "",
        *_bd_table(summary["bd_rate"], categories, metrics),
    ]
    if coded:
        lines += [
            "",
            "### With entropy coding",
            "",
            "The same comparison after entropy coding: VBR at the size of its real file (coded kbps, count "
            "stream included), CBR at the entropy-coded size of its codes alone (coded codes kbps: a "
            "constant-bitrate codec sends no counts).",
            "",
            *_bd_table(summary["bd_rate_coded"], categories, metrics),
        ]
    references = {
        "baseline": (
            "the baseline", "The same comparison against the baseline model's constant-bitrate points (BASELINE "
            "rows), placed at its payload bitrate: VBR against a codec trained for constant bitrate rather than "
            "against this model's own CBR mode.",
            "VBR at its coded kbps, the baseline at the entropy-coded size of its codes alone (coded codes kbps)",
        ),
        "opus": (
            "Opus", "VBR against the classical anchor (OPUS rows: libopus, its own VBR, default audio "
            "application), placed at the bitrate of its packets (the Ogg container's overhead left out). n/a "
            "where the two quality ranges do not overlap.",
            "VBR at its coded kbps, Opus at its packets as above",
        ),
    }
    for reference, (name, text, coded_text) in references.items():
        if f"bd_rate_{reference}" not in summary:
            continue
        lines += ["", f"## BD-rate of VBR against {name}", "", text, "",
                  *_bd_table(summary[f"bd_rate_{reference}"], categories, metrics)]
        if coded:
            lines += ["", f"With entropy coding ({coded_text}):", "",
                      *_bd_table(summary[f"bd_rate_{reference}_coded"], categories, metrics)]
    if result.skipped:
        lines += ["", "Skipped clips: " + "; ".join(f"{name} ({reason[:80]})" for name, reason in result.skipped)]
    return "\n".join(lines) + "\n"


def _bd_table(entries: list[dict[str, Any]], categories: list[str], metrics: list[str]) -> list[str]:
    """Markdown lines: one BD-rate row per category, then notes on non-monotone curves and failures."""
    lines = ["| category | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for category in categories:
        by_metric = {e["metric"]: e for e in entries if e["category"] == category}
        cells = []
        for metric in metrics:
            value = by_metric[metric]["bd_rate_percent"]
            mark = " †" if by_metric[metric].get("non_monotone") else ""
            cells.append("n/a" if value is None else f"{value:+.1f}%{mark}")
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    bent = [e for e in entries if e.get("non_monotone")]
    if bent:
        lines += [
            "",
            "†: quality gets worse somewhere as the bitrate rises on the "
            + "; ".join(f"{e['category']}/{e['metric']} ({' and '.join(m.upper() for m in e['non_monotone'])})"
                        for e in bent)
            + " curve; the figure still averages over the shared range, but read it with care.",
        ]
    failures = [e for e in entries if e["error"]]
    if failures:
        lines += ["", "n/a: " + "; ".join(f"{e['category']}/{e['metric']}: {e['error']}" for e in failures[:8])]
    return lines


def run_evaluation(
    model: Any,
    sources: Sequence[ClipSource],
    output_dir: str | os.PathLike,
    figures: bool = True,
    title: str | None = None,
    bd_method: str = "pchip",
    usage_levels: Sequence[float] = (0.2, 0.5, 1.0, 2.0),
    **sweep_kwargs: Any,
) -> tuple[SweepResult, dict[str, Any], list[Path]]:
    """Sweep, then write rows.csv, rows.json, summary.json, summary.md and (optionally) figures:
    one rate-distortion PNG per metric and one codebook-use PNG per category (its first clip).
    Returns (result, summary, written paths)."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    result = run_sweep(model, sources, **sweep_kwargs)
    summary = summarize(result, bd_method=bd_method)
    written = [write_rows_csv(result.rows, output / "rows.csv"), write_rows_json(result.rows, output / "rows.json")]
    summary_path = output / "summary.json"
    summary_path.write_text(json.dumps(_plain_tree(summary), indent=1))
    written.append(summary_path)
    markdown = output / "summary.md"
    markdown.write_text(summary_markdown(summary, result, model.config, title))
    written.append(markdown)
    if figures:
        from .plots import plot_codebook_usage, plot_rate_distortion

        for metric in result.metrics:
            written.append(plot_rate_distortion(summary, metric, output / f"rd_{metric}.png"))
        if result.levels:
            written += _usage_figures(model, sources, result, output, usage_levels, sweep_kwargs, plot_codebook_usage)
    return result, summary, written


def _usage_figures(model, sources, result, output, levels, sweep_kwargs, plot) -> list[Path]:
    """One codebook-use figure per category, on its first readable evaluated clip."""
    done: set[str] = set()
    evaluated = set(result.clips)
    paths = []
    for source in sources:
        if source.category in done or source.name not in evaluated:
            continue
        clip = prepare_clip(
            source, model.config.sampling_rate, sweep_kwargs.get("clip_seconds", 10.0), sweep_kwargs.get("resample", False)
        )
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in source.category)
        paths.append(plot(model, clip.audio, levels, output / f"codebooks_{safe}.png", title=f"{source.category}: {clip.name}"))
        done.add(source.category)
    return paths


def _plain_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_tree(v) for v in value]
    return _plain(value)
