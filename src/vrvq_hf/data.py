"""Training and validation data for VRVQ: mixed-category excerpt streams built on `datasets`.

The paper (SPEC section 5) trains on 0.38 s excerpts drawn with equal shares from six
categories (DAPS, VCTK, Common Voice, MUSDB18, MTG-Jamendo, AudioSet), keeps excerpts
whose loudness exceeds -40 dB and augments them with a random gain and a random
polarity. This module implements that recipe for any mixture of sources:

* hub datasets by id (``PAPER_CORPORA`` lists the paper's six; needs network),
* local ``audiofolder`` directories (``scripts/prepare_local_corpus.py`` builds the
  offline speech / music / general corpus in ``~/.cache/vrvq_corpus``),
* plain lists of audio files.

Usage (one training process; ``accelerator`` from `accelerate`)::

    from vrvq_hf.data import DataSourceConfig, build_train_stream, train_dataloader
    from vrvq_hf.data import build_validation_set, validation_dataloader
    root = "~/.cache/vrvq_corpus/audiofolder_24000"
    sources = [DataSourceConfig(name=c, path=f"{root}/{c}") for c in ("speech", "music", "general")]
    stream = build_train_stream(sources, sampling_rate=24000, hop_length=model.config.hop_length, seed=0,
                                process_index=accelerator.process_index, num_processes=accelerator.num_processes)
    stream.skip_to(samples_seen)                 # resume: items THIS process consumed before
    for batch in train_dataloader(stream, batch_size=32, num_workers=2):
        audio = batch["input_values"].to(accelerator.device)   # (B, 1, T) float32
        samples_seen += audio.shape[0]
    val = validation_dataloader(build_validation_set(sources, sampling_rate=24000), batch_size=8)

Contract
--------
* Item ``p`` of process ``r`` is a pure function of ``(seed, r, p)`` for map-style
  sources (local folders, file lists, non-streaming hub datasets): its category,
  source, file, offset, gain and polarity all come from
  ``numpy.random.default_rng([seed, r, p])``. Resuming is therefore exact and O(1):
  ``stream.skip_to(p)`` (or ``load_state_dict(state_dict())``) makes the next item
  the one at position ``p``. Keep ``samples_seen`` in your checkpoint.
* ``train_dataloader(stream, batch_size, num_workers)`` gives the same batches for
  any ``num_workers``: worker ``k`` computes the whole batches ``k, k+W, ...`` and the
  DataLoader returns them in order.
* Do NOT pass the training DataLoader through ``accelerator.prepare``: the stream is
  already sharded per process (``process_index`` / ``num_processes``: a disjoint,
  seeded share of each source's files; ``split_dataset_by_node`` for streaming
  sources) and accelerate would shard it again. Move batches to the device yourself.
* Category mixing: each category gets ``category_weights[c]`` (default: equal shares)
  of the items; within a category, sources share it in proportion to their ``weight``.
* Excerpts: ``excerpt_seconds`` (default 0.38 s) rounded down to a multiple of
  ``hop_length`` (``stream.excerpt_samples``). Loudness is the RMS level in dBFS of the
  mono excerpt, ``10 log10(mean(x^2))``; up to ``loudness_tries`` random offsets are
  tried, then every quarter-excerpt offset of the file is scanned and a random loud one
  is taken; a file with no loud excerpt yields its loudest tried excerpt. Files shorter
  than one excerpt are zero-padded at the end.
* Augmentation (after selection): gain uniform in ``gain_db`` dB, polarity flipped
  with probability ``polarity_prob``, then scaled down if the peak exceeds 1.
* Unreadable or missing files are logged (``logging`` warning with the path) and
  replaced by another file of the same source; after ``max_bad_files`` distinct bad
  files ``TooManyBadFilesError`` (a ``ValueError``) is raised.
* Streaming sources (``streaming=True``) are read in order (shuffle buffer), so
  resuming replays the per-source example counts kept in ``state_dict()``
  (exact with ``num_workers=0``; with workers each worker reads its own shard).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "PAPER_CORPORA",
    "PaperCorpus",
    "DataSourceConfig",
    "DataConfigError",
    "TooManyBadFilesError",
    "ExcerptStream",
    "build_train_stream",
    "train_dataloader",
    "collate_audio",
    "build_validation_set",
    "validation_dataloader",
    "rms_db",
    "select_excerpt",
]


class DataConfigError(ValueError):
    """A data configuration that cannot work; the message names the offending field."""


class TooManyBadFilesError(ValueError):
    """More unreadable / missing audio files than ``max_bad_files``."""


# --------------------------------------------------------------------------- paper corpora
@dataclass(frozen=True)
class PaperCorpus:
    """Where one of the paper's training corpora lives on the Hugging Face hub.

    Found with a web search, NOT verified from this (offline) machine: check the
    dataset card, the audio column and the access conditions before a long run.
    """

    name: str
    category: str
    hub_id: str
    config_name: str | None
    split: str
    audio_column: str
    licence: str
    gated: bool
    access: str
    streaming_recommended: bool = False
    verified_offline: bool = False


PAPER_CORPORA: dict[str, PaperCorpus] = {
    c.name: c
    for c in (
        PaperCorpus(
            "daps", "speech_fullband", "corvj/daps", None, "train", "clean_audio", "CC-BY-NC-4.0", False,
            "Community upload driven by a loading script (daps.py); datasets>=4 no longer runs loading "
            "scripts, so download the original DAPS corpus (Mysore 2014) and point a local audiofolder "
            "at its 'clean' folder instead. The paper evaluates on speakers F10 and M10: keep them out.",
        ),
        PaperCorpus(
            "vctk", "speech_hq", "CSTR-Edinburgh/vctk", "main", "train", "audio", "CC-BY-4.0", False,
            "Official CSTR repo; converted to Parquet (folder main/), 48 kHz, 110 speakers, ~44 h. "
            "Only a train split: hold out speakers yourself for validation.",
        ),
        PaperCorpus(
            "common_voice", "speech_everyday", "mozilla-foundation/common_voice_17_0", "en", "train",
            "audio", "CC0-1.0", True,
            "Gated: log in and accept the terms (share contact details) on the dataset page, then use a "
            "token. Script-based repo (datasets>=4 cannot run it). Since October 2025 Mozilla distributes "
            "Common Voice only through Mozilla Data Collective: the hub copy may be gone.",
            streaming_recommended=True,
        ),
        PaperCorpus(
            "musdb18", "music_hq", "jxie/musdb18", None, "train", "audio",
            "MUSDB18 terms: academic / non-commercial use only", True,
            "Community Parquet upload (columns unverified). The official MUSDB18(-HQ) is on Zenodo "
            "(record 1117372) behind an access request; the paper uses the mixtures and evaluates on the "
            "MUSDB18 test split.",
        ),
        PaperCorpus(
            "mtg_jamendo", "music_everyday", "rkstgr/mtg-jamendo", None, "train", "audio",
            "Creative Commons per track (mostly BY-NC-SA), Jamendo", False,
            "Community repo with a loading script that fetches the MTG-Jamendo archives (datasets>=4 "
            "cannot run it): download MTG-Jamendo from its GitHub instructions and use an audiofolder.",
            streaming_recommended=True,
        ),
        PaperCorpus(
            "audioset", "general", "agkphysics/AudioSet", "balanced", "train", "audio",
            "CC-BY-4.0 (labels); audio from YouTube, rights stay with the uploaders", False,
            "Parquet, configs 'balanced' (~20k clips, ~26 GB; split 'test' = AudioSet eval) and "
            "'unbalanced' (~1.7 M clips, ~2.4 TB: use streaming=True). 48 kHz / 44.1 kHz FLAC.",
            streaming_recommended=True,
        ),
    )
}


# --------------------------------------------------------------------------- source config
@dataclass
class DataSourceConfig:
    """One source of training audio.

    Give ``path`` (a hub dataset id, or a local ``audiofolder`` directory) or ``files``
    (a list of audio files). With neither, ``name`` must be a key of ``PAPER_CORPORA``,
    which fills in hub id, config, split, audio column and category.

    Attributes:
        name: unique label of the source (also the key in ``state_dict``).
        category: mixing group; defaults to the registry category or to ``name``.
        path: hub id or local directory (``datasets.load_dataset("audiofolder", data_dir=path)``).
        files: explicit audio files (alternative to ``path``).
        split: dataset split (default "train"; registry default for paper corpora).
        audio_column: column holding the audio (default "audio").
        config_name: hub configuration name, if any.
        weight: share of this source inside its category (>= 0).
        streaming: read a hub dataset as a stream (for corpora too big to download).
    """

    name: str
    category: str | None = None
    path: str | None = None
    files: Sequence[str] | None = None
    split: str | None = None
    audio_column: str | None = None
    config_name: str | None = None
    weight: float = 1.0
    streaming: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DataConfigError(f"DataSourceConfig.name must be a non-empty string, got {self.name!r}")
        if self.path is not None and self.files is not None:
            raise DataConfigError(f"DataSourceConfig(name={self.name!r}): give either path or files, not both")
        if self.path is None and self.files is None:
            corpus = PAPER_CORPORA.get(self.name)
            if corpus is None:
                raise DataConfigError(
                    f"DataSourceConfig.name={self.name!r} is not a known corpus (PAPER_CORPORA has "
                    f"{sorted(PAPER_CORPORA)}) and neither path nor files was given"
                )
            self.path = corpus.hub_id
            self.config_name = self.config_name if self.config_name is not None else corpus.config_name
            self.split = self.split or corpus.split
            self.audio_column = self.audio_column or corpus.audio_column
            self.category = self.category or corpus.category
        if self.path is not None:
            self.path = os.fspath(self.path)
            looks_local = self.path.startswith(("/", ".", "~")) or self.path.count("/") > 1  # hub: owner/name
            if looks_local and not os.path.isdir(os.path.expanduser(self.path)):
                raise DataConfigError(
                    f"DataSourceConfig(name={self.name!r}).path={self.path!r} is not an existing directory "
                    "(expected a local audiofolder directory or a hub id 'owner/name')"
                )
        if self.files is not None:
            self.files = [os.fspath(f) for f in self.files]
            if not self.files:
                raise DataConfigError(f"DataSourceConfig(name={self.name!r}).files is empty")
            if self.streaming:
                raise DataConfigError(f"DataSourceConfig(name={self.name!r}).streaming needs a path, not files")
        self.split = self.split or "train"
        self.audio_column = self.audio_column or "audio"
        self.category = self.category or self.name
        if not np.isfinite(self.weight) or self.weight < 0:
            raise DataConfigError(f"DataSourceConfig(name={self.name!r}).weight must be >= 0, got {self.weight}")

    @property
    def is_local_folder(self) -> bool:
        return self.path is not None and os.path.isdir(os.path.expanduser(self.path))


def _load_source_dataset(cfg: DataSourceConfig, sampling_rate: int, cache_dir: str | None):
    """The source as a `datasets` (Iterable)Dataset with only the audio column, decode=False."""
    import datasets

    feature = datasets.Audio(sampling_rate=sampling_rate, num_channels=1, decode=False)
    if cfg.files is not None:
        ds = datasets.Dataset.from_dict({cfg.audio_column: list(cfg.files)})
    elif cfg.is_local_folder:
        data_dir = os.path.expanduser(cfg.path)
        try:
            ds = datasets.load_dataset("audiofolder", data_dir=data_dir, split=cfg.split,
                                       streaming=cfg.streaming, cache_dir=cache_dir)
        except Exception as exc:
            raise DataConfigError(
                f"DataSourceConfig(name={cfg.name!r}): cannot load audiofolder {data_dir!r} split "
                f"{cfg.split!r} ({type(exc).__name__}: {exc})"
            ) from exc
    else:
        ds = datasets.load_dataset(cfg.path, cfg.config_name, split=cfg.split, streaming=cfg.streaming,
                                   cache_dir=cache_dir)
    columns = list(ds.column_names or []) if ds.column_names is not None else None
    if columns is not None and cfg.audio_column not in columns:
        raise DataConfigError(
            f"DataSourceConfig(name={cfg.name!r}).audio_column={cfg.audio_column!r} not found; "
            f"columns are {columns}"
        )
    ds = ds.select_columns([cfg.audio_column]).cast_column(cfg.audio_column, feature)
    return ds


def _decode_mono(value: Any, sampling_rate: int) -> np.ndarray:
    """Decode one encoded audio value ({'path','bytes'}) to mono float32 at `sampling_rate`. (T,)"""
    import datasets

    decoder = datasets.Audio(sampling_rate=sampling_rate, num_channels=1).decode_example(value)
    samples = decoder.get_all_samples()
    if int(samples.sample_rate) != sampling_rate:
        raise RuntimeError(f"decoded at {samples.sample_rate} Hz instead of {sampling_rate} Hz")
    audio = samples.data.numpy().astype(np.float32, copy=False)
    audio = audio.mean(axis=0) if audio.ndim == 2 else audio
    if audio.size == 0:
        raise RuntimeError("decoded to zero samples")
    return np.ascontiguousarray(audio)


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("path") or "<bytes>")
    return str(value)


# --------------------------------------------------------------------------- excerpts
def rms_db(x: np.ndarray) -> float:
    """RMS level in dBFS of a float signal in [-1, 1]: 10 log10(mean(x^2)); -100 for silence."""
    power = float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0
    return 10.0 * np.log10(max(power, 1e-10))


def select_excerpt(
    audio: np.ndarray, length: int, rng: np.random.Generator, threshold_db: float = -40.0, tries: int = 8
) -> tuple[np.ndarray, int, float]:
    """Pick a ``length``-sample excerpt of ``audio`` (T,) louder than ``threshold_db``.

    Returns (excerpt (length,), offset, loudness_db). See the module docstring for the rule.
    """
    n = audio.size
    if n <= length:
        out = np.zeros(length, dtype=np.float32)
        out[:n] = audio
        return out, 0, rms_db(out)
    best = (-np.inf, 0)
    for _ in range(tries):
        off = int(rng.integers(0, n - length + 1))
        level = rms_db(audio[off : off + length])
        if level > threshold_db:
            return audio[off : off + length].copy(), off, level
        best = max(best, (level, off))
    energy = np.concatenate([[0.0], np.cumsum(np.square(audio, dtype=np.float64))])
    offsets = np.arange(0, n - length + 1, max(1, length // 4))
    levels = 10.0 * np.log10(np.maximum((energy[offsets + length] - energy[offsets]) / length, 1e-10))
    loud = offsets[levels > threshold_db]
    if loud.size:
        off = int(loud[rng.integers(loud.size)])
        return audio[off : off + length].copy(), off, rms_db(audio[off : off + length])
    level, off = best
    return audio[off : off + length].copy(), off, level


# --------------------------------------------------------------------------- the stream
class _Source:
    """A loaded source: the dataset plus this process's rows (map-style) or stream."""

    def __init__(self, cfg: DataSourceConfig, index: int, ds: Any, seed: int, process_index: int,
                 num_processes: int) -> None:
        self.cfg, self.index, self.ds = cfg, index, ds
        self.streaming = cfg.streaming
        if self.streaming:
            from datasets.distributed import split_dataset_by_node

            self.node_ds = split_dataset_by_node(ds, rank=process_index, world_size=num_processes)
            self.rows = None
            return
        n = len(ds)
        if n == 0:
            raise DataConfigError(f"DataSourceConfig(name={cfg.name!r}) has no audio files (split {cfg.split!r})")
        order = np.random.default_rng([seed, 0x5EED, index]).permutation(n)
        if n < num_processes:
            logger.warning("source %r has %d files for %d processes: every process uses all of them",
                           cfg.name, n, num_processes)
            self.rows = order
        else:
            self.rows = order[process_index::num_processes]

    def shard_files(self) -> list[str]:
        """Paths of this process's files (map-style sources)."""
        col = self.cfg.audio_column
        return [_describe(self.ds[int(r)][col]) for r in self.rows]


class ExcerptStream(torch.utils.data.IterableDataset):
    """Endless stream of augmented mono excerpts mixed over categories; see the module docstring.

    Yields dicts: ``input_values`` np.float32 (excerpt_samples,), ``category`` str,
    ``source`` str, ``file`` str (path, or "<bytes>"), ``position`` int.
    """

    def __init__(
        self,
        sources: Sequence[DataSourceConfig],
        *,
        sampling_rate: int,
        hop_length: int,
        excerpt_seconds: float = 0.38,
        category_weights: Mapping[str, float] | None = None,
        loudness_threshold_db: float = -40.0,
        loudness_tries: int = 8,
        gain_db: tuple[float, float] = (-6.0, 6.0),
        polarity_prob: float = 0.5,
        seed: int = 0,
        process_index: int = 0,
        num_processes: int = 1,
        max_bad_files: int = 10,
        shuffle_buffer: int = 1000,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        _check_positive_int("sampling_rate", sampling_rate)
        _check_positive_int("hop_length", hop_length)
        _check_positive_int("num_processes", num_processes)
        if not isinstance(process_index, int) or not 0 <= process_index < num_processes:
            raise DataConfigError(f"process_index must be in [0, num_processes={num_processes}), got {process_index}")
        if not excerpt_seconds > 0:
            raise DataConfigError(f"excerpt_seconds must be > 0, got {excerpt_seconds}")
        samples = int(round(excerpt_seconds * sampling_rate))
        if samples < hop_length:
            raise DataConfigError(
                f"excerpt_seconds={excerpt_seconds} gives {samples} samples at {sampling_rate} Hz, shorter than "
                f"one hop (hop_length={hop_length}); need excerpt_seconds >= {hop_length / sampling_rate:.4f}"
            )
        if len(gain_db) != 2 or not gain_db[0] <= gain_db[1]:
            raise DataConfigError(f"gain_db must be a (low, high) pair with low <= high, got {gain_db}")
        if not 0.0 <= polarity_prob <= 1.0:
            raise DataConfigError(f"polarity_prob must be in [0, 1], got {polarity_prob}")
        if not isinstance(max_bad_files, int) or max_bad_files < 0:
            raise DataConfigError(f"max_bad_files must be an int >= 0, got {max_bad_files}")
        _check_positive_int("loudness_tries", loudness_tries)
        self.excerpt_samples = samples // hop_length * hop_length
        self.sampling_rate, self.hop_length = sampling_rate, hop_length
        self.threshold_db, self.tries = float(loudness_threshold_db), loudness_tries
        self.gain_db, self.polarity_prob = (float(gain_db[0]), float(gain_db[1])), float(polarity_prob)
        self.seed, self.process_index, self.num_processes = int(seed), process_index, num_processes
        self.max_bad_files, self.shuffle_buffer = max_bad_files, shuffle_buffer
        self.configs = _check_sources(sources)
        self.categories, self.category_probs, self.source_probs = _mixing(self.configs, category_weights)
        self.sources = [
            _Source(cfg, i, _load_source_dataset(cfg, sampling_rate, cache_dir), self.seed, process_index,
                    num_processes)
            for i, cfg in enumerate(self.configs)
        ]
        self.position = 0
        self.worker_chunk = 1
        self._consumed = {s.cfg.name: 0 for s in self.sources if s.streaming}
        self._iters: dict[str, Iterator] = {}
        self._bad: set[tuple[str, str]] = set()

    # ---- resume API
    def skip_to(self, position: int) -> None:
        """Make the next item the one at ``position`` (items this process consumed so far)."""
        if not isinstance(position, int) or position < 0:
            raise DataConfigError(f"position must be an int >= 0, got {position!r}")
        if self._consumed:
            counts = {name: 0 for name in self._consumed}
            for p in range(position):
                counts[self.sources[self._draw_source(self._rng(p))].cfg.name] += 1
            self._consumed, self._iters = counts, {}
        self.position = position

    def state_dict(self) -> dict[str, Any]:
        """Resume state: next position (and per-source counts of streaming sources)."""
        return {"position": self.position, "seed": self.seed, "process_index": self.process_index,
                "num_processes": self.num_processes, "streaming_consumed": dict(self._consumed)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("seed", "process_index", "num_processes"):
            if key in state and state[key] != getattr(self, key):
                raise DataConfigError(f"state_dict {key}={state[key]} does not match this stream's {getattr(self, key)}")
        self.position = int(state["position"])
        self._consumed = {name: int(state.get("streaming_consumed", {}).get(name, 0)) for name in self._consumed}
        self._iters = {}

    # ---- items
    def _rng(self, position: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.process_index, position])

    def _draw_source(self, rng: np.random.Generator) -> int:
        cat = int(rng.choice(len(self.categories), p=self.category_probs))
        members, probs = self.source_probs[cat]
        return members[int(rng.choice(len(members), p=probs))]

    def item(self, position: int) -> dict[str, Any]:
        """The item at ``position`` (map-style sources: a pure function of seed, process, position)."""
        rng = self._rng(position)
        src = self.sources[self._draw_source(rng)]
        audio, path = self._next_stream_audio(src) if src.streaming else self._random_file_audio(src, rng)
        excerpt, _, _ = select_excerpt(audio, self.excerpt_samples, rng, self.threshold_db, self.tries)
        gain = 10.0 ** (rng.uniform(*self.gain_db) / 20.0)
        if rng.random() < self.polarity_prob:
            gain = -gain
        excerpt = (excerpt * gain).astype(np.float32)
        peak = float(np.max(np.abs(excerpt)))
        if peak > 1.0:
            excerpt /= peak
        return {"input_values": excerpt, "category": src.cfg.category, "source": src.cfg.name,
                "file": path, "position": position}

    def _random_file_audio(self, src: _Source, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """Decode a random file of this process's shard; bad files are redrawn (same source)."""
        col = src.cfg.audio_column
        while True:
            row = int(src.rows[rng.integers(len(src.rows))])
            value = src.ds[row][col]
            key = (src.cfg.name, f"{_describe(value)}#{row}")
            if key in self._bad:
                continue
            try:
                return _decode_mono(value, self.sampling_rate), _describe(value)
            except Exception as exc:
                self._report_bad(key, src, value, exc)
                if sum(k[0] == src.cfg.name for k in self._bad) >= len(src.rows):
                    raise TooManyBadFilesError(
                        f"all {len(src.rows)} files of source {src.cfg.name!r} in this shard are unreadable"
                    ) from exc

    def _next_stream_audio(self, src: _Source) -> tuple[np.ndarray, str]:
        """Decode the next example of a streaming source; bad examples are skipped."""
        name, col = src.cfg.name, src.cfg.audio_column
        while True:
            if name not in self._iters:
                self._iters[name] = self._stream_iter(src, self._consumed[name])
            value = next(self._iters[name])[col]
            self._consumed[name] += 1
            try:
                return _decode_mono(value, self.sampling_rate), _describe(value)
            except Exception as exc:
                self._report_bad((name, f"{_describe(value)}#{self._consumed[name]}"), src, value, exc)

    def _stream_iter(self, src: _Source, start: int) -> Iterator[dict]:
        """Endless epochs over this process's (and worker's) stream, skipping ``start`` examples."""
        ds = src.node_ds
        info = torch.utils.data.get_worker_info()
        if info is not None and info.num_workers > 1:
            from datasets.distributed import split_dataset_by_node

            ds = split_dataset_by_node(ds, rank=info.id, world_size=info.num_workers)
        ds = ds.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
        seen, epoch = 0, 0
        while True:
            ds.set_epoch(epoch)
            empty = True
            for example in ds:
                empty = False
                seen += 1
                if seen > start:
                    yield example
            if empty:
                raise DataConfigError(f"streaming source {src.cfg.name!r} yielded no examples")
            epoch += 1

    def _report_bad(self, key: tuple[str, str], src: _Source, value: Any, exc: Exception) -> None:
        self._bad.add(key)
        logger.warning("skipping unreadable audio %s (source %r): %s: %s", _describe(value), src.cfg.name,
                       type(exc).__name__, exc)
        if len(self._bad) > self.max_bad_files:
            listed = ", ".join(sorted(k[1] for k in self._bad)[:20])
            raise TooManyBadFilesError(
                f"{len(self._bad)} unreadable audio files (max_bad_files={self.max_bad_files}): {listed}"
            )

    # ---- iteration
    def _positions(self) -> Iterator[int]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        chunk = self.worker_chunk if workers > 1 else 1
        block, first = worker, self.position
        while True:
            start = first + block * chunk
            yield from range(start, start + chunk)
            block += workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        in_worker = torch.utils.data.get_worker_info() is not None
        for position in self._positions():
            item = self.item(position)
            if not in_worker:
                self.position = position + 1
            yield item


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise DataConfigError(f"{name} must be a positive int, got {value!r}")


def _check_sources(sources: Sequence[DataSourceConfig]) -> list[DataSourceConfig]:
    if not sources:
        raise DataConfigError("sources is empty: give at least one DataSourceConfig")
    sources = list(sources)
    for s in sources:
        if not isinstance(s, DataSourceConfig):
            raise DataConfigError(f"sources must hold DataSourceConfig objects, got {type(s).__name__}")
    names = [s.name for s in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataConfigError(f"DataSourceConfig.name must be unique; repeated: {dup}")
    return sources


def _mixing(
    sources: list[DataSourceConfig], category_weights: Mapping[str, float] | None
) -> tuple[list[str], np.ndarray, list[tuple[list[int], np.ndarray]]]:
    """Category list, category probabilities and (source indices, probabilities) per category."""
    categories = list(dict.fromkeys(s.category for s in sources))
    if category_weights is None:
        weights = {c: 1.0 for c in categories}
    else:
        unknown = sorted(set(category_weights) - set(categories))
        if unknown:
            raise DataConfigError(f"category_weights has categories without a source: {unknown} "
                                  f"(source categories: {categories})")
        weights = {c: float(category_weights.get(c, 0.0)) for c in categories}
    for c, w in weights.items():
        if not np.isfinite(w) or w < 0:
            raise DataConfigError(f"category_weights[{c!r}]={w} must be >= 0")
    per_cat = []
    for c in categories:
        members = [i for i, s in enumerate(sources) if s.category == c]
        w = np.array([sources[i].weight for i in members], dtype=np.float64)
        if weights[c] > 0 and w.sum() == 0:
            raise DataConfigError(f"all sources of category {c!r} have weight 0 but category_weights[{c!r}] > 0")
        per_cat.append((members, w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))))
    total = sum(weights.values())
    if total <= 0:
        raise DataConfigError(f"category_weights are all zero: {weights}")
    probs = np.array([weights[c] / total for c in categories])
    return categories, probs, per_cat


def build_train_stream(sources: Sequence[DataSourceConfig], **kwargs: Any) -> ExcerptStream:
    """Build the training :class:`ExcerptStream` (keyword arguments as in its constructor)."""
    return ExcerptStream(sources, **kwargs)


# --------------------------------------------------------------------------- batching
def collate_audio(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack items into ``input_values`` (B, 1, T) float32 and ``padding_mask`` (B, T) long.

    Shorter items are zero-padded at the end (padding_mask 0 there). Also passes
    ``categories`` / ``sources`` (lists of str) and ``positions`` (B,) when present.
    """
    if not items:
        raise ValueError("collate_audio got an empty batch")
    arrays = [np.asarray(it["input_values"], dtype=np.float32).reshape(-1) for it in items]
    length = max(a.size for a in arrays)
    values = torch.zeros(len(arrays), 1, length, dtype=torch.float32)
    mask = torch.zeros(len(arrays), length, dtype=torch.long)
    for b, a in enumerate(arrays):
        values[b, 0, : a.size] = torch.from_numpy(a)
        mask[b, : a.size] = 1
    batch: dict[str, Any] = {"input_values": values, "padding_mask": mask}
    for key, out in (("category", "categories"), ("source", "sources"), ("file", "files")):
        if key in items[0]:
            batch[out] = [it[key] for it in items]
    if "position" in items[0]:
        batch["positions"] = torch.tensor([it["position"] for it in items], dtype=torch.long)
    return batch


def train_dataloader(stream: ExcerptStream, batch_size: int, num_workers: int = 0,
                     **kwargs: Any) -> torch.utils.data.DataLoader:
    """DataLoader over ``stream`` giving identical batches for any ``num_workers``.

    The stream draws from its own seeded generators, so the loader gets a private torch generator for
    its base seed: starting an iterator then leaves the global torch generator (the training's levels and
    masks, restored on resume) untouched."""
    _check_positive_int("batch_size", batch_size)
    stream.worker_chunk = batch_size
    kwargs.setdefault("generator", torch.Generator())
    return torch.utils.data.DataLoader(stream, batch_size=batch_size, num_workers=num_workers,
                                       collate_fn=collate_audio, **kwargs)


# --------------------------------------------------------------------------- validation
def build_validation_set(
    sources: Sequence[DataSourceConfig],
    *,
    sampling_rate: int,
    clip_seconds: float = 5.0,
    max_clips_per_source: int | None = 32,
    split: str | None = "validation",
    loudness_threshold_db: float = -40.0,
    max_bad_files: int = 10,
    cache_dir: str | None = None,
) -> list[dict[str, Any]]:
    """Fixed validation clips: the same every call (no randomness).

    For each source (with its split replaced by ``split`` unless None), files are taken
    at evenly spaced indices (all if ``max_clips_per_source`` is None). Each clip is
    ``clip_seconds`` long and starts at the first 10 ms frame whose RMS exceeds
    ``loudness_threshold_db`` (or at 0; earlier if the file ends too soon); shorter files give shorter clips (see
    ``collate_audio``'s padding_mask). Returns dicts with ``input_values`` np.float32 (T,),
    ``category``, ``source`` and ``file``.
    """
    _check_positive_int("sampling_rate", sampling_rate)
    if not clip_seconds > 0:
        raise DataConfigError(f"clip_seconds must be > 0, got {clip_seconds}")
    if max_clips_per_source is not None:
        _check_positive_int("max_clips_per_source", max_clips_per_source)
    configs = _check_sources(sources)
    clip_len = int(round(clip_seconds * sampling_rate))
    clips, bad = [], []
    for cfg in configs:
        cfg = dataclasses.replace(cfg, split=split, streaming=False) if split is not None else cfg
        ds = _load_source_dataset(cfg, sampling_rate, cache_dir)
        n = len(ds)
        rows = range(n) if max_clips_per_source is None or n <= max_clips_per_source else \
            np.unique(np.linspace(0, n - 1, max_clips_per_source).round().astype(int))
        for row in rows:
            value = ds[int(row)][cfg.audio_column]
            try:
                audio = _decode_mono(value, sampling_rate)
            except Exception as exc:
                bad.append(_describe(value))
                logger.warning("skipping unreadable validation audio %s: %s: %s", _describe(value),
                               type(exc).__name__, exc)
                if len(bad) > max_bad_files:
                    raise TooManyBadFilesError(
                        f"{len(bad)} unreadable validation files (max_bad_files={max_bad_files}): {bad[:20]}"
                    ) from exc
                continue
            start = _first_loud_sample(audio, sampling_rate, loudness_threshold_db)
            start = max(0, min(start, audio.size - clip_len))
            clips.append({"input_values": audio[start : start + clip_len].copy(), "category": cfg.category,
                          "source": cfg.name, "file": _describe(value)})
    return clips


def _first_loud_sample(audio: np.ndarray, sampling_rate: int, threshold_db: float) -> int:
    hop = win = max(1, sampling_rate // 100)
    if audio.size <= win:
        return 0
    energy = np.concatenate([[0.0], np.cumsum(np.square(audio, dtype=np.float64))])
    starts = np.arange(0, audio.size - win + 1, hop)
    levels = 10.0 * np.log10(np.maximum((energy[starts + win] - energy[starts]) / win, 1e-10))
    loud = np.flatnonzero(levels > threshold_db)
    return int(starts[loud[0]]) if loud.size else 0


def validation_dataloader(clips: Sequence[Mapping[str, Any]], batch_size: int = 8) -> torch.utils.data.DataLoader:
    """Deterministic DataLoader (no shuffling) over :func:`build_validation_set` clips."""
    _check_positive_int("batch_size", batch_size)
    return torch.utils.data.DataLoader(list(clips), batch_size=batch_size, shuffle=False, collate_fn=collate_audio)

