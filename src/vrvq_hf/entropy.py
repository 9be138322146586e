"""Optional entropy coding of VRVQ codes with static tables (lossless; same codes, fewer bits).

Model (all tables are integer counts estimated from code arrays, with add-one smoothing so every
symbol stays codable):

- `code_counts` (Nq, codebook_size): how often each code occurs at each codebook index;
  code k of a frame is coded with P_k(code) = (count + 1) / (total_k + codebook_size).
- `count_transitions` (Nq + 1, Nq): how often a frame has n codebooks given the previous frame had m
  (row m, column n - 1; row 0 is the first frame of an item). Counts change slowly over time, so this
  first-order model codes the side information in far fewer than ceil(log2 Nq) bits.

Payload (the `.vrvq` entropy-coded mode, see `vrvq_hf.bitstream`): one range-coded stream
(`constriction.stream.queue.RangeEncoder`, categorical models with `perfect=False`) of, in order:
the F counts (frame by frame, each under the row of the previous count; omitted when Nq = 1), then
for k = 0..Nq-1 the codes of codebook k on the frames with n_t > k. The encoder's 32-bit words are
stored big-endian, all of them (so the payload length bounds the information it holds, which lets the
decoder refuse forged frame counts before allocating; see `max_frames`).

Tables live beside the model as `code_tables.safetensors` (`CodeTables.save` / `CodeTables.load`);
the file names the tables it needs by `CodeTables.table_id`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

TABLES_FILENAME = "code_tables.safetensors"
_TABLES_FORMAT = "vrvq-code-tables"
_TABLES_VERSION = "1"


@dataclass(eq=False)
class CodeTables:
    """Static statistics of a model's codes. Treat as immutable once used for coding."""

    code_counts: np.ndarray  # (Nq, codebook_size) int64
    count_transitions: np.ndarray  # (Nq + 1, Nq) int64

    def __post_init__(self) -> None:
        self.code_counts = np.asarray(self.code_counts, dtype=np.int64)
        self.count_transitions = np.asarray(self.count_transitions, dtype=np.int64)
        if self.code_counts.ndim != 2 or self.code_counts.shape[0] < 1 or self.code_counts.shape[1] < 2:
            raise ValueError(f"code_counts must have shape (Nq, codebook_size), got {self.code_counts.shape}")
        n = self.code_counts.shape[0]
        if self.count_transitions.shape != (n + 1, n):
            raise ValueError(
                f"count_transitions must have shape (Nq + 1, Nq) = {(n + 1, n)}, got {self.count_transitions.shape}"
            )
        if (self.code_counts < 0).any() or (self.count_transitions < 0).any():
            raise ValueError("table counts must be >= 0")

    @classmethod
    def empty(cls, n_codebooks: int, codebook_size: int) -> CodeTables:
        """All-zero counts: uniform models after smoothing."""
        return cls(
            np.zeros((n_codebooks, codebook_size), dtype=np.int64),
            np.zeros((n_codebooks + 1, n_codebooks), dtype=np.int64),
        )

    @property
    def n_codebooks(self) -> int:
        return self.code_counts.shape[0]

    @property
    def codebook_size(self) -> int:
        return self.code_counts.shape[1]

    @property
    def table_id(self) -> bytes:
        """8 bytes naming these exact tables (stored in entropy-coded files)."""
        digest = hashlib.sha256(f"{_TABLES_FORMAT}/{_TABLES_VERSION}/{self.code_counts.shape}".encode())
        digest.update(self.code_counts.astype("<i8").tobytes())
        digest.update(self.count_transitions.astype("<i8").tobytes())
        return digest.digest()[:8]

    def code_probabilities(self) -> np.ndarray:
        """(Nq, codebook_size) float64, add-one smoothed, each row sums to 1."""
        smoothed = self.code_counts + 1.0
        return smoothed / smoothed.sum(axis=1, keepdims=True)

    def count_probabilities(self) -> np.ndarray:
        """(Nq + 1, Nq) float64: row m = previous count (0 at the start), column n - 1."""
        smoothed = self.count_transitions + 1.0
        return smoothed / smoothed.sum(axis=1, keepdims=True)

    def add(self, audio_codes: Any, num_codebooks: Any) -> None:
        """Accumulate counts of codes (Nq, F) or (B, Nq, F) with num_codebooks (F,) or (B, F).

        Frames with count 0 (padding) are skipped; transitions follow each item's valid frames in order.
        """
        codes, counts = _as_numpy(audio_codes).astype(np.int64), _as_numpy(num_codebooks).astype(np.int64)
        if codes.ndim == 2:
            codes, counts = codes[None], counts[None]
        if (
            codes.ndim != 3
            or counts.shape != (codes.shape[0], codes.shape[2])
            or codes.shape[1] != self.n_codebooks
        ):
            raise ValueError(
                f"expected audio_codes (B, {self.n_codebooks}, F) and num_codebooks (B, F), "
                f"got {codes.shape} and {counts.shape}"
            )
        if counts.size and (counts.min() < 0 or counts.max() > self.n_codebooks):
            raise ValueError(
                f"num_codebooks must be in 0..{self.n_codebooks}, got {counts.min()}..{counts.max()}"
            )
        mask = np.arange(self.n_codebooks)[None, :, None] < counts[:, None, :]  # (B, Nq, F)
        used = codes[mask]
        if used.size and (used.min() < 0 or used.max() >= self.codebook_size):
            raise ValueError(f"codes must be in [0, {self.codebook_size}), got {used.min()}..{used.max()}")
        rows = np.broadcast_to(np.arange(self.n_codebooks)[None, :, None], mask.shape)[mask]
        np.add.at(self.code_counts, (rows, used), 1)
        for item in counts:
            valid = item[item > 0]
            previous = np.concatenate([[0], valid[:-1]])
            np.add.at(self.count_transitions, (previous, valid - 1), 1)

    def information_bits(self, audio_codes: Any, num_codebooks: Any) -> float:
        """Ideal code length (-log2 probability, in bits) of one item's codes (Nq, F), counts (F,)."""
        return self.count_information_bits(num_codebooks) + self.code_information_bits(audio_codes, num_codebooks)

    def count_information_bits(self, num_codebooks: Any) -> float:
        """Ideal code length in bits of the count stream (F,) alone: the side information."""
        counts = _as_numpy(num_codebooks).astype(np.int64)
        if self.n_codebooks == 1:
            return 0.0
        previous = np.concatenate([[0], counts[:-1]])
        return float(-np.log2(self.count_probabilities()[previous, counts - 1]).sum())

    def code_information_bits(self, audio_codes: Any, num_codebooks: Any) -> float:
        """Ideal code length in bits of the transmitted codes (Nq, F) alone, given the counts (F,)."""
        codes, counts = _as_numpy(audio_codes).astype(np.int64), _as_numpy(num_codebooks).astype(np.int64)
        log_p = np.log2(self.code_probabilities())
        return float(-sum(log_p[k, codes[k, counts > k]].sum() for k in range(self.n_codebooks)))

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `code_tables.safetensors` into `directory` (created if needed); returns its path."""
        from safetensors.numpy import save_file

        path = Path(directory) / TABLES_FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"code_counts": self.code_counts, "count_transitions": self.count_transitions}
        save_file(tensors, str(path), metadata={"format": _TABLES_FORMAT, "version": _TABLES_VERSION})
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> CodeTables:
        """Read tables saved by `save` (a directory holding `code_tables.safetensors`, or the file)."""
        from safetensors import safe_open

        path = Path(directory)
        if path.is_dir():
            path = path / TABLES_FILENAME
        if not path.is_file():
            raise FileNotFoundError(
                f"no code tables at {path} (expected {TABLES_FILENAME} saved by CodeTables.save)"
            )
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != _TABLES_FORMAT or metadata.get("version") != _TABLES_VERSION:
                raise ValueError(
                    f"{path} is not a version-{_TABLES_VERSION} VRVQ code-tables file: metadata {metadata}"
                )
            return cls(f.get_tensor("code_counts"), f.get_tensor("count_transitions"))


def estimate_tables(
    items: Iterable[tuple[Any, Any]], *, codebook_size: int, n_codebooks: int | None = None
) -> CodeTables:
    """Tables from (audio_codes, num_codebooks) pairs: (Nq, F) with (F,), or batches (B, Nq, F) with (B, F).

    Nq is read from the first item unless given.
    """
    tables = None if n_codebooks is None else CodeTables.empty(n_codebooks, codebook_size)
    for codes, counts in items:
        if tables is None:
            tables = CodeTables.empty(_as_numpy(codes).shape[-2], codebook_size)
        tables.add(codes, counts)
    if tables is None:
        raise ValueError("no items to estimate code tables from (give n_codebooks for empty tables)")
    return tables


def find_code_tables(source: str | os.PathLike) -> CodeTables | None:
    """The `CodeTables` of a model: `code_tables.safetensors` in its folder (or that file itself, or in its
    hub repo when online); None when the model has none."""
    path = Path(os.path.expanduser(str(source)))
    if path.is_dir():
        return CodeTables.load(path) if (path / TABLES_FILENAME).is_file() else None
    if path.is_file():
        return CodeTables.load(path)
    try:  # a hub id
        from huggingface_hub import hf_hub_download

        return CodeTables.load(hf_hub_download(str(source), TABLES_FILENAME))
    except Exception:  # no such file, offline, ...: no tables
        return None


def max_frames(payload_bytes: int, tables: CodeTables) -> int:
    """Generous bound on the frames a payload of this size can hold under these tables.

    Every frame codes a count and codebook 0, so it costs at least the smallest code length of those
    symbols; the bound halves that cost and allows the coder's 64-bit state, so legal files always pass
    while a forged frame count cannot make the decoder allocate far more than the payload justifies.
    """
    count_bits = -np.log2(tables.count_probabilities().max(axis=1)).min() if tables.n_codebooks > 1 else 0.0
    code_bits = -np.log2(tables.code_probabilities()[0].max())
    per_frame = max(0.5 * float(count_bits + code_bits), 1e-6)
    return int((8 * payload_bytes + 64) / per_frame) + 16


def encode_payload(codes: np.ndarray, counts: np.ndarray, tables: CodeTables) -> bytes:
    """codes (Nq, F) int, counts (F,) in 1..Nq -> range-coded payload bytes."""
    Categorical, RangeEncoder = _constriction().model.Categorical, _constriction().queue.RangeEncoder

    if codes.shape[0] != tables.n_codebooks:
        raise ValueError(f"tables are for {tables.n_codebooks} codebooks, codes have {codes.shape[0]}")
    encoder = RangeEncoder()
    if tables.n_codebooks > 1 and counts.size:
        previous = np.concatenate([[0], counts[:-1]])
        rows = tables.count_probabilities()[previous]  # (F, Nq): each frame's model
        encoder.encode((counts - 1).astype(np.int32), Categorical(perfect=False), rows)
    probabilities = tables.code_probabilities()
    for k in range(tables.n_codebooks):
        symbols = codes[k, counts > k].astype(np.int32)
        if symbols.size:
            encoder.encode(symbols, Categorical(probabilities[k], perfect=False))
    words = encoder.get_compressed()
    return words.astype(">u4").tobytes()


def decode_payload(payload: bytes, num_frames: int, tables: CodeTables) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `encode_payload` -> (codes (Nq, F) int64 zero outside the mask, counts (F,) int64)."""
    Categorical, RangeDecoder = _constriction().model.Categorical, _constriction().queue.RangeDecoder

    if len(payload) % 4:
        raise ValueError(f"an entropy-coded payload is whole 32-bit words, got {len(payload)} bytes")
    decoder = RangeDecoder(np.frombuffer(payload, dtype=">u4").astype(np.uint32))
    n_codebooks = tables.n_codebooks
    if n_codebooks > 1:
        models = [Categorical(row, perfect=False) for row in tables.count_probabilities()]
        counts_list = [0] * num_frames
        previous = 0
        for t in range(num_frames):
            previous = decoder.decode(models[previous]) + 1
            counts_list[t] = previous
        counts = np.array(counts_list, dtype=np.int64)
    else:
        counts = np.ones(num_frames, dtype=np.int64)
    codes = np.zeros((n_codebooks, num_frames), dtype=np.int64)
    probabilities = tables.code_probabilities()
    for k in range(n_codebooks):
        active = counts > k
        amount = int(active.sum())
        if amount:
            codes[k, active] = decoder.decode(Categorical(probabilities[k], perfect=False), amount)
    return codes, counts


def _constriction() -> Any:
    """The `constriction.stream` module (an optional dependency: pip install "vrvq-hf[codec]")."""
    try:
        import constriction
    except ImportError as error:
        raise ImportError(
            'entropy coding needs the constriction package: pip install "vrvq-hf[codec]"'
        ) from error
    return constriction.stream


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


__all__ = [
    "TABLES_FILENAME",
    "CodeTables",
    "decode_payload",
    "encode_payload",
    "estimate_tables",
    "find_code_tables",
    "max_frames",
]
