"""VRVQ codes as tokens for speech language models, and back, exactly.

Vocabulary (`TokenVocabulary`, for Nq codebooks of `codebook_size` codes)::

    id                                        token
    0                                         <pad>
    1                                         <bos>   begin of audio
    2                                         <eos>   end of audio
    3 + (n - 1),            n = 1..Nq         <frame:n>  a frame starts; it carries n codes
    3 + Nq + k * codebook_size + c            code c of codebook k (k = 0..Nq-1)

    vocab_size = 3 + Nq + Nq * codebook_size

Flat form (one variable-length sequence per item)::

    <bos> <frame:n_0> c_0,0 .. c_0,n_0-1 <frame:n_1> c_1,0 .. <eos>

The frame token carries the frame's count (the bitstream's side information), so frame boundaries and
counts are exact; codes inside a frame come in codebook order, each from its own codebook's id range.
Padded frames (count 0) are not written; they must trail the valid frames. Length of an item:
`tokens_for_counts` = 2 + sum over valid frames of (1 + n_t).

Dense form (B, F, Nq): one slot per codebook and frame, `pad_id` where a code is not transmitted or a
frame is padding. With `offsets=True` slots hold vocabulary ids (pad: `<pad>`); with `offsets=False`
they hold raw codes 0..codebook_size-1 (pad: codebook_size), for per-codebook embedding tables.

Decoding model output: `strict=True` raises ValueError naming the first problem and its position.
`strict=False` repairs instead, by these rules, in order:
  1. ids outside the vocabulary and <pad> are dropped; everything from the first <eos> on is ignored;
     <bos> tokens are dropped;
  2. code tokens before the first frame token are dropped;
  3. in each frame, the codes kept are the longest run from its start whose codebooks are 0, 1, 2, ...
     and no longer than the declared count; the frame's count becomes that length; later code tokens
     of the frame are dropped; a frame left without codes is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class TokenVocabulary:
    """Token ids for Nq codebooks of `codebook_size` codes (layout in the module docstring)."""

    n_codebooks: int
    codebook_size: int

    def __post_init__(self) -> None:
        if self.n_codebooks < 1 or self.codebook_size < 1:
            raise ValueError(
                f"need n_codebooks >= 1 and codebook_size >= 1, got {self.n_codebooks}, {self.codebook_size}"
            )

    @classmethod
    def from_config(cls, config: Any) -> TokenVocabulary:
        """From a `VRVQConfig` (or anything with `n_codebooks` and `codebook_size`)."""
        return cls(int(config.n_codebooks), int(config.codebook_size))

    pad_id = 0
    bos_id = 1
    eos_id = 2
    frame_offset = 3

    @property
    def code_offset(self) -> int:
        return self.frame_offset + self.n_codebooks

    @property
    def vocab_size(self) -> int:
        return self.code_offset + self.n_codebooks * self.codebook_size

    def frame_token(self, count: int) -> int:
        """Id of <frame:count>, count in 1..Nq."""
        if not 1 <= count <= self.n_codebooks:
            raise ValueError(f"frame count must be in 1..{self.n_codebooks}, got {count}")
        return self.frame_offset + count - 1

    def code_token(self, codebook: int, code: int) -> int:
        """Id of code `code` of codebook `codebook`."""
        if not (0 <= codebook < self.n_codebooks and 0 <= code < self.codebook_size):
            raise ValueError(
                f"need codebook in 0..{self.n_codebooks - 1}, code in 0..{self.codebook_size - 1}"
            )
        return self.code_offset + codebook * self.codebook_size + code

    def describe(self, token_id: int) -> str:
        """Readable name of a token id, e.g. '<frame:3>' or 'code 17 of codebook 2'."""
        token_id = int(token_id)
        specials = {self.pad_id: "<pad>", self.bos_id: "<bos>", self.eos_id: "<eos>"}
        if token_id in specials:
            return specials[token_id]
        if self.frame_offset <= token_id < self.code_offset:
            return f"<frame:{token_id - self.frame_offset + 1}>"
        if self.code_offset <= token_id < self.vocab_size:
            k, c = divmod(token_id - self.code_offset, self.codebook_size)
            return f"code {c} of codebook {k}"
        return f"id {token_id} (outside the vocabulary of {self.vocab_size})"


# ----------------------------------------------------------------------------------------------
# Lengths


def frames_for_samples(num_samples: int | torch.Tensor, hop_length: int) -> int | torch.Tensor:
    """Frames the codec makes of `num_samples` samples: ceil(num_samples / hop_length)."""
    if isinstance(num_samples, torch.Tensor):
        return torch.div(num_samples + hop_length - 1, hop_length, rounding_mode="floor")
    return -(-int(num_samples) // hop_length)


def tokens_for_counts(num_codebooks: Any) -> int | torch.LongTensor:
    """Flat sequence length: 2 + sum over valid frames (n_t > 0) of 1 + n_t. (F,) -> int; (B, F) -> (B,)."""
    counts = torch.as_tensor(_as_numpy(num_codebooks)).long()
    lengths = 2 + ((counts + 1) * (counts > 0)).sum(dim=-1)
    return int(lengths) if counts.ndim == 1 else lengths


# ----------------------------------------------------------------------------------------------
# Flat sequences


def codes_to_tokens(audio_codes: Any, num_codebooks: Any, vocab: TokenVocabulary) -> list[torch.LongTensor]:
    """audio_codes (B, Nq, F) and num_codebooks (B, F) (or one item: (Nq, F), (F,)) -> B sequences (L_b,)."""
    codes, counts = _check_codes(audio_codes, num_codebooks, vocab)
    n = vocab.n_codebooks
    sequences = []
    for item_codes, item_counts in zip(codes, counts):
        valid = int((item_counts > 0).sum())
        c, m = item_codes[:, :valid], item_counts[:valid]
        grid = np.empty((valid, 1 + n), dtype=np.int64)
        grid[:, 0] = vocab.frame_offset + m - 1
        grid[:, 1:] = vocab.code_offset + np.arange(n)[None, :] * vocab.codebook_size + c.T
        keep = np.arange(1 + n)[None, :] <= m[:, None]  # the frame token and n_t codes
        body = grid[keep]
        sequences.append(torch.from_numpy(np.concatenate([[vocab.bos_id], body, [vocab.eos_id]])))
    return sequences


def pad_token_sequences(
    sequences: Sequence[Any], vocab: TokenVocabulary, padding_side: str = "right"
) -> dict[str, torch.LongTensor]:
    """B sequences -> {"input_ids": (B, L_max) padded with <pad>, "attention_mask": (B, L_max) 1 = token}."""
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    sequences = [torch.as_tensor(_as_numpy(s)).long().reshape(-1) for s in sequences]
    length = max((len(s) for s in sequences), default=0)
    input_ids = torch.full((len(sequences), length), vocab.pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, s in enumerate(sequences):
        where = slice(0, len(s)) if padding_side == "right" else slice(length - len(s), length)
        input_ids[i, where] = s
        attention_mask[i, where] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def codes_to_padded_tokens(
    audio_codes: Any, num_codebooks: Any, vocab: TokenVocabulary, padding_side: str = "right"
) -> dict[str, torch.LongTensor]:
    """`codes_to_tokens` then `pad_token_sequences`: input_ids and attention_mask (B, L_max)."""
    return pad_token_sequences(codes_to_tokens(audio_codes, num_codebooks, vocab), vocab, padding_side)


def tokens_to_codes(
    tokens: Any, vocab: TokenVocabulary, attention_mask: Any = None, strict: bool = True
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Token sequences -> audio_codes (B, Nq, F_max) (0 where not transmitted), num_codebooks (B, F_max).

    tokens: one sequence (L,), a list of sequences, or a padded batch (B, L) with an optional
    attention_mask (B, L) (positions with 0 are ignored; without a mask, <pad> tokens at either end are).
    Frames past an item's end get count 0. strict: raise ValueError on malformed input, else repair
    (rules in the module docstring).
    """
    if isinstance(tokens, (list, tuple)):
        items = [_as_numpy(t).reshape(-1) for t in tokens]
        masks = (
            [None] * len(items)
            if attention_mask is None
            else [_as_numpy(m).reshape(-1) for m in attention_mask]
        )
    else:
        array = _as_numpy(tokens)
        if array.ndim not in (1, 2):
            raise ValueError(f"tokens must be a sequence (L,) or a batch (B, L), got shape {array.shape}")
        items = list(array.reshape(-1, array.shape[-1]))
        masks = (
            [None] * len(items)
            if attention_mask is None
            else list(_as_numpy(attention_mask).reshape(len(items), -1))
        )
    if len(masks) != len(items):
        raise ValueError(f"attention_mask has {len(masks)} rows for {len(items)} sequences")
    parsed = []
    for i, (sequence, mask) in enumerate(zip(items, masks)):
        try:
            parsed.append(sequence_to_codes(sequence, vocab, attention_mask=mask, strict=strict))
        except ValueError as error:
            raise ValueError(f"sequence {i}: {error}") from None
    frames = max((c.shape[1] for c, _ in parsed), default=0)
    audio_codes = torch.zeros((len(parsed), vocab.n_codebooks, frames), dtype=torch.long)
    num_codebooks = torch.zeros((len(parsed), frames), dtype=torch.long)
    for i, (c, n) in enumerate(parsed):
        audio_codes[i, :, : c.shape[1]] = c
        num_codebooks[i, : n.shape[0]] = n
    return audio_codes, num_codebooks


def sequence_to_codes(
    sequence: Any, vocab: TokenVocabulary, attention_mask: Any = None, strict: bool = True
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """One token sequence (L,) -> audio_codes (Nq, F), num_codebooks (F,) in 1..Nq."""
    x = _as_numpy(sequence).reshape(-1)
    if x.size and not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"token ids must be integers, got {x.dtype}")
    x = x.astype(np.int64)
    positions = np.arange(x.size)
    if attention_mask is not None:
        keep = _as_numpy(attention_mask).reshape(-1).astype(bool)
        if keep.shape != x.shape:
            raise ValueError(f"attention_mask has shape {keep.shape}, tokens {x.shape}")
        x, positions = x[keep], positions[keep]
    if strict:
        x, positions = _strip_end_padding(x, positions, vocab)
        return _build(*_check_strict(x, positions, vocab), vocab)
    return _build(*_repair(x, vocab), vocab)


def _strip_end_padding(
    x: np.ndarray, positions: np.ndarray, vocab: TokenVocabulary
) -> tuple[np.ndarray, np.ndarray]:
    content = np.flatnonzero(x != vocab.pad_id)
    if content.size == 0:
        return x[:0], positions[:0]
    return x[content[0] : content[-1] + 1], positions[content[0] : content[-1] + 1]


def _check_strict(x: np.ndarray, positions: np.ndarray, vocab: TokenVocabulary):
    """Validate a well-formed sequence; returns (code tokens' ids, frame index, codebook, counts)."""
    if x.size == 0:
        raise ValueError("empty sequence: expected <bos> <frame:n> codes ... <eos>")
    outside = np.flatnonzero((x < 0) | (x >= vocab.vocab_size))
    if outside.size:
        raise ValueError(f"position {positions[outside[0]]}: {vocab.describe(x[outside[0]])}")
    if x[0] != vocab.bos_id:
        raise ValueError(f"position {positions[0]}: expected <bos>, found {vocab.describe(x[0])}")
    if x.size < 2 or x[-1] != vocab.eos_id:
        raise ValueError(
            f"position {positions[-1]}: expected <eos> at the end, found {vocab.describe(x[-1])} "
            "(a cut-off generation? strict=False decodes what is complete)"
        )
    body, where = x[1:-1], positions[1:-1]
    special = np.flatnonzero(body < vocab.frame_offset)
    if special.size:
        raise ValueError(
            f"position {where[special[0]]}: unexpected {vocab.describe(body[special[0]])} inside the sequence"
        )
    is_frame = body < vocab.code_offset
    if body.size and not is_frame[0]:
        raise ValueError(f"position {where[0]}: {vocab.describe(body[0])} before the first frame token")
    segment, offset, declared = _segments(body, is_frame, vocab)
    codebook = (body - vocab.code_offset) // vocab.codebook_size
    is_code = ~is_frame
    too_many = np.flatnonzero(is_code & (offset >= declared[segment]))
    if too_many.size:
        t = too_many[0]
        raise ValueError(
            f"position {where[t]}: frame {segment[t]} declares {declared[segment[t]]} codes but has more"
        )
    wrong = np.flatnonzero(is_code & (codebook != offset))
    if wrong.size:
        t = wrong[0]
        raise ValueError(
            f"position {where[t]}: {vocab.describe(body[t])} where frame {segment[t]} expects a code of codebook {offset[t]}"
        )
    found = np.bincount(segment[is_code], minlength=declared.size)
    short = np.flatnonzero(found < declared)
    if short.size:
        s = short[0]
        raise ValueError(f"frame {s} declares {declared[s]} codes but has {found[s]}")
    return body[is_code], segment[is_code], codebook[is_code], declared


def _repair(x: np.ndarray, vocab: TokenVocabulary):
    """Best-effort parse of model output (rules in the module docstring); same returns as _check_strict."""
    x = x[(x >= 0) & (x < vocab.vocab_size) & (x != vocab.pad_id)]
    ends = np.flatnonzero(x == vocab.eos_id)
    if ends.size:
        x = x[: ends[0]]
    x = x[x != vocab.bos_id]
    is_frame = x < vocab.code_offset
    if is_frame.any():
        x, is_frame = x[np.argmax(is_frame) :], is_frame[np.argmax(is_frame) :]
    else:
        x, is_frame = x[:0], is_frame[:0]
    segment, offset, declared = _segments(x, is_frame, vocab)
    codebook = (x - vocab.code_offset) // vocab.codebook_size
    is_code = ~is_frame
    good = is_code & (codebook == offset) & (offset < declared[segment])
    bad = is_code & ~good
    kept = np.minimum(declared, np.bincount(segment[is_code], minlength=declared.size))
    np.minimum.at(kept, segment[bad], offset[bad])  # a frame ends at its first bad code
    keep = is_code & (offset < kept[segment])
    new_index = np.cumsum(kept > 0) - 1  # frames without codes are dropped
    return x[keep], new_index[segment[keep]], codebook[keep], kept[kept > 0]


def _segments(body: np.ndarray, is_frame: np.ndarray, vocab: TokenVocabulary):
    """For tokens that start with a frame token: frame index of each token, offset after its frame token
    (0 for the first code), and each frame's declared count."""
    starts = np.flatnonzero(is_frame)
    segment = np.cumsum(is_frame) - 1
    offset = np.arange(body.size) - starts[segment] - 1
    declared = body[starts] - vocab.frame_offset + 1
    return segment, offset, declared


def _build(
    code_ids, frame, codebook, counts, vocab: TokenVocabulary
) -> tuple[torch.LongTensor, torch.LongTensor]:
    codes = np.zeros((vocab.n_codebooks, counts.size), dtype=np.int64)
    codes[codebook, frame] = (code_ids - vocab.code_offset) % vocab.codebook_size
    return torch.from_numpy(codes), torch.from_numpy(counts.astype(np.int64))


# ----------------------------------------------------------------------------------------------
# Dense form


def codes_to_dense(
    audio_codes: Any, num_codebooks: Any, vocab: TokenVocabulary, offsets: bool = True
) -> dict[str, torch.Tensor]:
    """audio_codes (B, Nq, F), num_codebooks (B, F) -> {"input_ids": (B, F, Nq) long (pad where not
    transmitted), "codebook_mask": (B, F, Nq) bool, "frame_mask": (B, F) long, 1 = valid frame}.

    offsets=True: vocabulary ids, pad `vocab.pad_id`; False: raw codes, pad `vocab.codebook_size`.
    """
    codes, counts = _check_codes(audio_codes, num_codebooks, vocab)
    codes = codes.transpose(0, 2, 1)  # (B, F, Nq)
    mask = np.arange(vocab.n_codebooks)[None, None, :] < counts[:, :, None]
    if offsets:
        ids = np.where(
            mask, vocab.code_offset + np.arange(vocab.n_codebooks) * vocab.codebook_size + codes, vocab.pad_id
        )
    else:
        ids = np.where(mask, codes, vocab.codebook_size)
    return {
        "input_ids": torch.from_numpy(ids.astype(np.int64)),
        "codebook_mask": torch.from_numpy(mask),
        "frame_mask": torch.from_numpy((counts > 0).astype(np.int64)),
    }


def dense_to_codes(
    input_ids: Any, vocab: TokenVocabulary, frame_mask: Any = None, offsets: bool = True, strict: bool = True
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Dense (B, F, Nq) (or (F, Nq)) -> audio_codes (B, Nq, F), num_codebooks (B, F) (0 on padded frames).

    A frame's codes are its non-pad slots, which must be a prefix (codebooks 0..n-1) holding codes of the
    right codebook. strict=False: each frame keeps its leading run of valid slots instead of raising.
    frame_mask (B, F): frames with 0 become padding whatever they hold.
    """
    ids = _as_numpy(input_ids).astype(np.int64)
    if ids.ndim == 2:
        ids = ids[None]
    if ids.ndim != 3 or ids.shape[2] != vocab.n_codebooks:
        raise ValueError(f"expected input_ids of shape (B, F, {vocab.n_codebooks}), got {ids.shape}")
    k = np.arange(vocab.n_codebooks)
    if offsets:
        pad, codes = vocab.pad_id, ids - vocab.code_offset - k * vocab.codebook_size
    else:
        pad, codes = vocab.codebook_size, ids
    valid = (codes >= 0) & (codes < vocab.codebook_size)
    if frame_mask is not None:
        in_frame = _as_numpy(frame_mask).reshape(ids.shape[:2]).astype(bool)
        valid &= in_frame[:, :, None]
    counts = np.cumprod(valid, axis=2).sum(axis=2)  # leading run of valid slots
    if strict:
        rest = np.arange(vocab.n_codebooks)[None, None, :] >= counts[:, :, None]
        stray = rest & (ids != pad)
        if frame_mask is not None:
            stray &= in_frame[:, :, None]
        if stray.any():
            b, t, slot = np.argwhere(stray)[0]
            raise ValueError(
                f"item {b}, frame {t}, codebook {slot}: id {ids[b, t, slot]} is not a code of codebook {slot} "
                f"following codebooks 0..{slot - 1}, nor the pad id {pad}"
            )
    mask = k[None, None, :] < counts[:, :, None]
    audio_codes = np.where(mask, codes, 0).transpose(0, 2, 1)
    return torch.from_numpy(np.ascontiguousarray(audio_codes)), torch.from_numpy(counts.astype(np.int64))


# ----------------------------------------------------------------------------------------------


def _check_codes(
    audio_codes: Any, num_codebooks: Any, vocab: TokenVocabulary
) -> tuple[np.ndarray, np.ndarray]:
    """Batch-shaped int64 copies (B, Nq, F), (B, F), validated against the vocabulary."""
    codes, counts = _as_numpy(audio_codes).astype(np.int64), _as_numpy(num_codebooks).astype(np.int64)
    if codes.ndim == 2:
        codes = codes[None]
    if counts.ndim == 1:
        counts = counts[None]
    if (
        codes.ndim != 3
        or codes.shape[1] != vocab.n_codebooks
        or counts.shape != (codes.shape[0], codes.shape[2])
    ):
        raise ValueError(
            f"expected audio_codes (B, {vocab.n_codebooks}, F) and num_codebooks (B, F), got {codes.shape} and {counts.shape}"
        )
    if counts.size and (counts.min() < 0 or counts.max() > vocab.n_codebooks):
        raise ValueError(
            f"num_codebooks must be in 0..{vocab.n_codebooks}, got {counts.min()}..{counts.max()}"
        )
    valid = counts > 0
    if (valid[:, 1:] & ~valid[:, :-1]).any():
        raise ValueError("padded frames (num_codebooks 0) must come after all valid frames of an item")
    mask = np.arange(vocab.n_codebooks)[None, :, None] < counts[:, None, :]
    used = codes[mask]
    if used.size and (used.min() < 0 or used.max() >= vocab.codebook_size):
        raise ValueError(
            f"transmitted codes must be in [0, {vocab.codebook_size}), got {used.min()}..{used.max()}"
        )
    return codes, counts


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


__all__ = [
    "TokenVocabulary",
    "codes_to_dense",
    "codes_to_padded_tokens",
    "codes_to_tokens",
    "dense_to_codes",
    "frames_for_samples",
    "pad_token_sequences",
    "sequence_to_codes",
    "tokens_for_counts",
    "tokens_to_codes",
]
