"""The `.vrvq` compressed file: a versioned container for one item's variable-bitrate codes.

A file holds the codes of one item, `audio_codes` (Nq, F), and its per-frame active-codebook counts
`num_codebooks` (F,), n_t in 1..Nq (frame t transmits codebooks 0..n_t-1). Integers are unsigned
and big-endian.

Byte layout, format version 1 (header: `HEADER_SIZE` = 64 bytes)::

    offset size field
         0    4 magic            b"VRVQ"
         4    1 version          1
         5    1 flags            bit 0: payload is entropy coded (see `vrvq_hf.entropy`); other bits 0
         6    2 reserved         0
         8    4 sampling_rate    Hz, > 0
        12    4 hop_length       audio samples per frame, > 0
        16    2 n_codebooks      Nq, 1..256
        18    2 codebook_bits    log2(codebook_size), 1..16
        20    4 num_frames       F
        24    8 num_samples      original length in samples, <= F * hop_length
        32   16 model_id         identifies the model that wrote the file (`model_fingerprint`)
        48    8 table_id         entropy tables used (`CodeTables.table_id`); zeros when not entropy coded
        56    4 payload_bytes    length of the payload that follows the header
        60    4 crc32            zlib CRC-32 of header bytes 0..59 followed by the payload
        64    - payload

Fixed-length payload (flags bit 0 clear): for each frame t in order, n_t - 1 in S = ceil(log2 Nq) bits
(S = 0 when Nq = 1), then the codes of codebooks 0..n_t-1 in B = log2(codebook_size) bits each; all
fields MSB first, packed without gaps, the last byte padded with zero bits. Its size is therefore
exactly `ceil(payload_bits(num_codebooks, Nq, codebook_size) / 8)` bytes, the bitrate the model
reports (`bitrate_kbps * duration`, side information included) rounded up to whole bytes.

Entropy-coded payload (flags bit 0 set): a range-coded stream of the same symbols under static
per-codebook tables; see `vrvq_hf.entropy`. The decoder needs the same tables (checked by table_id).

Every problem with a file raises `BitstreamError` (a `ValueError`) saying what is wrong; the decoder
checks all header sizes against the payload length before it allocates anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

if TYPE_CHECKING:
    from .entropy import CodeTables

MAGIC = b"VRVQ"
FORMAT_VERSION = 1
FLAG_ENTROPY_CODED = 1
MAX_CODEBOOKS = 256
MAX_CODEBOOK_BITS = 16
MODEL_ID_SIZE = 16
TABLE_ID_SIZE = 8

_HEADER = struct.Struct(">4sBBHIIHHIQ16s8sII")
HEADER_SIZE = _HEADER.size  # 64 bytes


class Header(NamedTuple):
    """The header fields, in file order (layout in the module docstring)."""

    magic: bytes
    version: int
    flags: int
    reserved: int
    sampling_rate: int
    hop_length: int
    n_codebooks: int
    codebook_bits: int
    num_frames: int
    num_samples: int
    model_id: bytes
    table_id: bytes
    payload_bytes: int
    crc32: int

    def pack(self) -> bytes:
        return _HEADER.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> Header:
        return cls._make(_HEADER.unpack_from(data))


FILE_EXTENSION = ".vrvq"


class BitstreamError(ValueError):
    """A `.vrvq` file (or bytes) that cannot be decoded: truncated, corrupted, forged or foreign."""


@dataclass
class VRVQBitstream:
    """A decoded file. Tensors are on the CPU; codes are 0 where not transmitted."""

    audio_codes: torch.LongTensor  # (Nq, F)
    codebook_mask: torch.BoolTensor  # (Nq, F), per frame a prefix of n_t True entries
    num_codebooks: torch.LongTensor  # (F,), 1..Nq
    sampling_rate: int
    hop_length: int
    num_samples: int
    codebook_size: int
    model_id: bytes  # 16 bytes
    entropy_coded: bool
    payload_bytes: int
    version: int = FORMAT_VERSION

    @property
    def n_codebooks(self) -> int:
        return self.audio_codes.shape[0]

    @property
    def num_frames(self) -> int:
        return self.audio_codes.shape[1]

    @property
    def frame_rate(self) -> float:
        return self.sampling_rate / self.hop_length

    @property
    def duration_s(self) -> float:
        """Duration of the coded frames (F / frame_rate), the time base of the model's bitrate."""
        return self.num_frames / self.frame_rate

    @property
    def counted_bits(self) -> int:
        """Fixed-length bits of the codes, side information included (what the model reports)."""
        return payload_bits(self.num_codebooks, self.n_codebooks, self.codebook_size)

    @property
    def bitrate_kbps(self) -> float:
        """Counted bitrate: mean over frames of n_t * log2(codebook_size) + side bits, per second."""
        return self.counted_bits / self.duration_s / 1000 if self.num_frames else 0.0

    @property
    def payload_kbps(self) -> float:
        """Bitrate of the payload as stored (below `bitrate_kbps` when entropy coded)."""
        return 8 * self.payload_bytes / self.duration_s / 1000 if self.num_frames else 0.0

    def check_compatible(self, config: Any) -> None:
        """Raise BitstreamError unless the file matches a model config (sampling_rate, hop_length,
        n_codebooks, codebook_size), e.g. before decoding it with that model."""
        for name, value in (
            ("sampling_rate", self.sampling_rate),
            ("hop_length", self.hop_length),
            ("n_codebooks", self.n_codebooks),
            ("codebook_size", self.codebook_size),
        ):
            if getattr(config, name) != value:
                raise BitstreamError(f"file has {name}={value} but the model has {getattr(config, name)}")

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Batch of one for `VRVQModel.decode`: audio_codes (1, Nq, F) and num_codebooks (1, F)."""
        return {"audio_codes": self.audio_codes[None], "num_codebooks": self.num_codebooks[None]}


# ----------------------------------------------------------------------------------------------
# Small helpers


def side_info_bits(n_codebooks: int) -> int:
    """Bits per frame for its active-codebook count: ceil(log2 Nq) (0 for Nq = 1)."""
    return math.ceil(math.log2(n_codebooks)) if n_codebooks > 1 else 0


def codebook_bits(codebook_size: int) -> int:
    """log2(codebook_size); the size must be a power of two in 2..65536."""
    size = int(codebook_size)
    if size < 2 or size & (size - 1) or size > 2**MAX_CODEBOOK_BITS:
        raise ValueError(
            f"codebook_size must be a power of two in 2..{2**MAX_CODEBOOK_BITS}, got {codebook_size}"
        )
    return size.bit_length() - 1


def payload_bits(num_codebooks: Any, n_codebooks: int, codebook_size: int) -> int | np.ndarray:
    """Counted bits: sum over valid frames (n_t > 0) of n_t * log2(codebook_size) + ceil(log2 Nq).

    num_codebooks (F,) -> int; (B, F) -> int64 array (B,). Padded frames (n_t = 0) cost nothing.
    """
    counts = _as_numpy(num_codebooks).astype(np.int64)
    bits = (counts * codebook_bits(codebook_size) + side_info_bits(n_codebooks)) * (counts > 0)
    total = bits.sum(axis=-1)
    return int(total) if counts.ndim == 1 else total


def counts_from_mask(codebook_mask: Any) -> torch.LongTensor:
    """codebook_mask (..., Nq, F) bool, a prefix per frame -> num_codebooks (..., F) long."""
    mask = torch.as_tensor(_as_numpy(codebook_mask)).bool()
    counts = mask.sum(dim=-2)
    prefix = torch.arange(mask.shape[-2])[:, None] < counts.unsqueeze(-2)
    if not torch.equal(prefix, mask):
        raise ValueError(
            "codebook_mask must be a prefix on every frame: codebooks 0..n-1 True, the rest False"
        )
    return counts


def normalize_model_id(model_id: bytes | str | None) -> bytes:
    """16 bytes: bytes of at most 16 (zero padded), a 32-digit hex string, any other string of at most
    16 UTF-8 bytes (zero padded), or None (all zeros: anonymous)."""
    if model_id is None:
        return bytes(MODEL_ID_SIZE)
    if isinstance(model_id, str):
        text = model_id
        try:
            raw = bytes.fromhex(text) if len(text) == 2 * MODEL_ID_SIZE else text.encode()
        except ValueError:
            raw = text.encode()
    elif isinstance(model_id, (bytes, bytearray)):
        raw = bytes(model_id)
    else:
        raise TypeError(f"model_id must be bytes, str or None, got {type(model_id).__name__}")
    if len(raw) > MODEL_ID_SIZE:
        raise ValueError(
            f"model_id must fit in {MODEL_ID_SIZE} bytes, got {len(raw)}: use model_fingerprint()"
        )
    return raw.ljust(MODEL_ID_SIZE, b"\0")


def model_fingerprint(state_dict: Mapping[str, Any], config: Any) -> bytes:
    """16-byte identifier of a model: SHA-256 of its config and weights, truncated.

    state_dict: name -> torch tensor or numpy array. config: a dict or an object with `to_dict()`
    (e.g. a `PretrainedConfig`); keys starting with "_" and "transformers_version" are ignored, so the
    id does not change with the library version or the path the model was loaded from.
    """
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    config_dict = {
        k: v for k, v in config_dict.items() if not k.startswith("_") and k != "transformers_version"
    }
    digest = hashlib.sha256()
    digest.update(json.dumps(config_dict, sort_keys=True, default=str).encode())
    for name in sorted(state_dict):
        value = state_dict[name]
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous().reshape(-1)
            dtype = str(tensor.dtype).removeprefix("torch.")  # same name as numpy's for the same data
            shape, raw = tuple(value.shape), tensor.view(torch.uint8).numpy().tobytes()
        else:
            array = np.ascontiguousarray(value)
            dtype, shape, raw = str(array.dtype), tuple(array.shape), array.tobytes()
        digest.update(f"{name}|{dtype}|{shape}|".encode())
        digest.update(raw)
    return digest.digest()[:MODEL_ID_SIZE]


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# ----------------------------------------------------------------------------------------------
# Fixed-length bit packing


def pack_fixed(codes: np.ndarray, counts: np.ndarray, codebook_size: int) -> bytes:
    """codes (Nq, F) int, counts (F,) in 1..Nq -> fixed-length payload (see module docstring)."""
    n_codebooks, frames = codes.shape
    s, b = side_info_bits(n_codebooks), codebook_bits(codebook_size)
    values = np.empty((frames, 1 + n_codebooks), dtype=np.int32)  # fields have at most 16 bits
    values[:, 0] = counts - 1
    values[:, 1:] = codes.T
    widths = np.zeros((frames, 1 + n_codebooks), dtype=np.int32)
    widths[:, 0] = s
    widths[:, 1:] = np.where(np.arange(n_codebooks)[None, :] < counts[:, None], b, 0)
    keep = widths > 0  # row-major: frame by frame, count field first
    values, widths = values[keep], widths[keep]
    shifts = widths[:, None] - 1 - np.arange(max(s, b), dtype=np.int32)[None, :]  # MSB first
    bits = (values[:, None] >> np.maximum(shifts, 0)) & 1
    return np.packbits(bits[shifts >= 0].astype(np.uint8)).tobytes()


def unpack_fixed(
    payload: bytes, num_frames: int, n_codebooks: int, codebook_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `pack_fixed` -> (codes (Nq, F) int64 zero outside the mask, counts (F,) int64).

    Raises BitstreamError when the payload does not hold exactly `num_frames` frames.
    """
    s, b = side_info_bits(n_codebooks), codebook_bits(codebook_size)
    total_bits = 8 * len(payload)
    if num_frames * (s + b) > total_bits:
        raise BitstreamError(
            f"header announces {num_frames} frames but the {len(payload)}-byte payload holds at most "
            f"{total_bits // (s + b)} (file truncated or header corrupted)"
        )
    if math.ceil(num_frames * (s + n_codebooks * b) / 8) < len(payload):
        raise BitstreamError(
            f"payload of {len(payload)} bytes is longer than {num_frames} frames can fill "
            f"({math.ceil(num_frames * (s + n_codebooks * b) / 8)} bytes at most)"
        )
    if s == 0:
        counts = np.ones(num_frames, dtype=np.int64)
        starts = np.arange(num_frames, dtype=np.int64) * b
        end = num_frames * b
    else:
        counts, starts, end = _walk_frames(payload, num_frames, n_codebooks, s, b)
    if end > total_bits:
        raise BitstreamError(f"payload is truncated: its frames need {end} bits, it has {total_bits}")
    if (end + 7) // 8 != len(payload):
        raise BitstreamError(
            f"payload has {len(payload)} bytes but its {num_frames} frames fill {(end + 7) // 8}"
        )
    bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
    if bits[end:].any():
        raise BitstreamError("non-zero padding bits after the last frame (corrupted payload)")
    mask = np.arange(n_codebooks)[:, None] < counts[None, :]  # (Nq, F)
    positions = (starts[None, :] + np.arange(n_codebooks)[:, None] * b)[mask]
    weights = 1 << np.arange(b - 1, -1, -1, dtype=np.int64)
    codes = np.zeros((n_codebooks, num_frames), dtype=np.int64)
    codes[mask] = bits[positions[:, None] + np.arange(b)[None, :]].astype(np.int64) @ weights
    return codes, counts


def _walk_frames(
    payload: bytes, num_frames: int, n_codebooks: int, s: int, b: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Read each frame's s-bit count field, following the frames: counts, code start bits, end bit."""
    buffer = payload + b"\0\0"  # a count field (s <= 8 bits) spans at most 2 bytes
    total_bits = 8 * len(payload)
    counts = [0] * num_frames
    starts = [0] * num_frames
    field_mask = (1 << s) - 1
    pos = 0
    for t in range(num_frames):
        if pos + s > total_bits:
            raise BitstreamError(f"payload is truncated: it ends inside frame {t} of {num_frames}")
        i = pos >> 3
        n = (((buffer[i] << 8 | buffer[i + 1]) >> (16 - (pos & 7) - s)) & field_mask) + 1
        if n > n_codebooks:
            raise BitstreamError(f"frame {t} claims {n} active codebooks but the file has only {n_codebooks}")
        counts[t] = n
        starts[t] = pos + s
        pos += s + n * b
    return np.array(counts, dtype=np.int64), np.array(starts, dtype=np.int64), pos


# ----------------------------------------------------------------------------------------------
# Files


def encode_bitstream(
    audio_codes: Any,
    num_codebooks: Any,
    *,
    sampling_rate: int,
    hop_length: int,
    codebook_size: int,
    num_samples: int,
    model_id: bytes | str | None,
    entropy_tables: CodeTables | None = None,
) -> bytes:
    """Codes of one item -> the bytes of a `.vrvq` file.

    audio_codes (Nq, F) or (1, Nq, F) integers in [0, codebook_size) (values where not transmitted are
    ignored); num_codebooks (F,) or (1, F) in 1..Nq (cut off padded frames first); num_samples <=
    F * hop_length. With `entropy_tables` the payload is entropy coded, unless that would not be
    smaller than the fixed-length payload (then the file is written fixed-length and needs no tables).
    """
    codes = _as_numpy(audio_codes)
    counts = _as_numpy(num_codebooks)
    if codes.ndim == 3 and codes.shape[0] == 1:
        codes = codes[0]
    if counts.ndim == 2 and counts.shape[0] == 1:
        counts = counts[0]
    if codes.ndim != 2 or counts.ndim != 1 or codes.shape[1] != counts.shape[0]:
        raise ValueError(
            f"expected audio_codes (Nq, F) and num_codebooks (F,) of one item, got shapes {codes.shape} and {counts.shape}"
        )
    if not (np.issubdtype(codes.dtype, np.integer) and np.issubdtype(counts.dtype, np.integer)):
        raise ValueError(
            f"audio_codes and num_codebooks must be integers, got {codes.dtype} and {counts.dtype}"
        )
    n_codebooks, frames = codes.shape
    bits = codebook_bits(codebook_size)
    if not 1 <= n_codebooks <= MAX_CODEBOOKS:
        raise ValueError(f"the format stores 1..{MAX_CODEBOOKS} codebooks, got Nq = {n_codebooks}")
    codes, counts = codes.astype(np.int64), counts.astype(np.int64)
    if frames and (counts.min() < 1 or counts.max() > n_codebooks):
        raise ValueError(
            f"num_codebooks must be in 1..{n_codebooks} on every frame, got {counts.min()}..{counts.max()} "
            "(drop padded frames, whose count is 0, before writing)"
        )
    mask = np.arange(n_codebooks)[:, None] < counts[None, :]
    if frames and (codes[mask].min(initial=0) < 0 or codes[mask].max(initial=0) >= codebook_size):
        raise ValueError(
            f"transmitted codes must be in [0, {codebook_size}), got {codes[mask].min()}..{codes[mask].max()}"
        )
    codes = np.where(mask, codes, 0)
    for name, value, low, high in (
        ("sampling_rate", sampling_rate, 1, 2**32 - 1),
        ("hop_length", hop_length, 1, 2**32 - 1),
        ("num_samples", num_samples, 0, frames * int(hop_length)),
    ):
        if int(value) != value or not low <= value <= high:
            raise ValueError(f"{name} must be an integer in {low}..{high}, got {value}")
    if frames >= 2**32:
        raise ValueError(f"too many frames for one file: {frames}")

    flags, table_id = 0, bytes(TABLE_ID_SIZE)
    payload = pack_fixed(codes, counts, codebook_size)
    if entropy_tables is not None:
        from .entropy import encode_payload

        coded = encode_payload(codes, counts, entropy_tables)
        if len(coded) < len(payload):
            flags, table_id, payload = FLAG_ENTROPY_CODED, entropy_tables.table_id, coded
    header = Header(
        magic=MAGIC,
        version=FORMAT_VERSION,
        flags=flags,
        reserved=0,
        sampling_rate=int(sampling_rate),
        hop_length=int(hop_length),
        n_codebooks=n_codebooks,
        codebook_bits=bits,
        num_frames=frames,
        num_samples=int(num_samples),
        model_id=normalize_model_id(model_id),
        table_id=table_id,
        payload_bytes=len(payload),
        crc32=0,
    ).pack()
    crc = zlib.crc32(payload, zlib.crc32(header[:-4]))
    return header[:-4] + struct.pack(">I", crc) + payload


def decode_bitstream(
    data: bytes,
    *,
    expected_model_id: bytes | str | None = None,
    entropy_tables: CodeTables | None = None,
) -> VRVQBitstream:
    """The bytes of a `.vrvq` file -> `VRVQBitstream`. Raises `BitstreamError` on any bad input.

    expected_model_id: when given, a file written by another model is refused.
    entropy_tables: needed for entropy-coded files (the model's `CodeTables`).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if data[:4] != MAGIC[: len(data[:4])]:
        raise BitstreamError(f"not a VRVQ file: starts with {data[:4]!r}, expected {MAGIC!r}")
    if len(data) < 5:
        raise BitstreamError(f"file is truncated: {len(data)} bytes, the header alone has {HEADER_SIZE}")
    if data[4] != FORMAT_VERSION:
        raise BitstreamError(
            f"unsupported format version {data[4]}; this reader understands version {FORMAT_VERSION}"
        )
    if len(data) < HEADER_SIZE:
        raise BitstreamError(f"file is truncated: {len(data)} bytes, the header alone has {HEADER_SIZE}")
    header = Header.unpack(data)
    payload = data[HEADER_SIZE:]
    if len(payload) < header.payload_bytes:
        raise BitstreamError(
            f"file is truncated: header announces a {header.payload_bytes}-byte payload, found {len(payload)}"
        )
    if len(payload) > header.payload_bytes:
        raise BitstreamError(
            f"{len(payload) - header.payload_bytes} unexpected bytes after the {header.payload_bytes}-byte payload"
        )
    if zlib.crc32(payload, zlib.crc32(data[: HEADER_SIZE - 4])) != header.crc32:
        raise BitstreamError("checksum mismatch: the file is corrupted")
    _check_header(header)
    if expected_model_id is not None and normalize_model_id(expected_model_id) != header.model_id:
        raise BitstreamError(
            f"file was written by another model (model id {header.model_id.hex()}, expected "
            f"{normalize_model_id(expected_model_id).hex()}): decode it with the model that wrote it"
        )
    n_codebooks, frames, codebook_size = header.n_codebooks, header.num_frames, 1 << header.codebook_bits
    entropy_coded = bool(header.flags & FLAG_ENTROPY_CODED)
    if entropy_coded:
        codes, counts = _decode_entropy(payload, header, entropy_tables)
    else:
        codes, counts = unpack_fixed(payload, frames, n_codebooks, codebook_size)
    codes_t = torch.from_numpy(codes)
    counts_t = torch.from_numpy(counts)
    return VRVQBitstream(
        audio_codes=codes_t,
        codebook_mask=torch.arange(n_codebooks)[:, None] < counts_t[None, :],
        num_codebooks=counts_t,
        sampling_rate=header.sampling_rate,
        hop_length=header.hop_length,
        num_samples=header.num_samples,
        codebook_size=codebook_size,
        model_id=header.model_id,
        entropy_coded=entropy_coded,
        payload_bytes=header.payload_bytes,
        version=header.version,
    )


def _check_header(h: Header) -> None:
    """Header values that no writer produces (the checksum is already known to be right)."""
    if h.flags & ~FLAG_ENTROPY_CODED:
        raise BitstreamError(f"unknown flags {h.flags:#04x} in the header")
    if h.reserved:
        raise BitstreamError(f"reserved header field is {h.reserved}, expected 0")
    if h.sampling_rate == 0:
        raise BitstreamError("header gives a sampling rate of 0 Hz")
    if h.hop_length == 0:
        raise BitstreamError("header gives a hop length of 0 samples")
    if not 1 <= h.n_codebooks <= MAX_CODEBOOKS:
        raise BitstreamError(f"header gives {h.n_codebooks} codebooks, expected 1..{MAX_CODEBOOKS}")
    if not 1 <= h.codebook_bits <= MAX_CODEBOOK_BITS:
        raise BitstreamError(f"header gives {h.codebook_bits} bits per code, expected 1..{MAX_CODEBOOK_BITS}")
    if h.num_samples > h.num_frames * h.hop_length:
        raise BitstreamError(
            f"header gives {h.num_samples} samples but {h.num_frames} frames of {h.hop_length} "
            f"cover only {h.num_frames * h.hop_length}"
        )
    if not h.flags & FLAG_ENTROPY_CODED and any(h.table_id):
        raise BitstreamError("a fixed-length file must have an all-zero table id")


def _decode_entropy(payload: bytes, h: Header, tables: CodeTables | None) -> tuple[np.ndarray, np.ndarray]:
    codebook_size = 1 << h.codebook_bits
    if tables is None:
        raise BitstreamError(
            "file is entropy coded: pass the model's code tables (entropy_tables=CodeTables.load(...))"
        )
    if (tables.n_codebooks, tables.codebook_size) != (h.n_codebooks, codebook_size):
        raise BitstreamError(
            f"code tables are for Nq={tables.n_codebooks}, codebook size {tables.codebook_size}; "
            f"the file has Nq={h.n_codebooks}, codebook size {codebook_size}"
        )
    if tables.table_id != h.table_id:
        raise BitstreamError(
            f"file was entropy coded with other tables (id {h.table_id.hex()}, given {tables.table_id.hex()})"
        )
    from .entropy import decode_payload, max_frames

    limit = max_frames(len(payload), tables)
    if h.num_frames > limit:
        raise BitstreamError(
            f"header announces {h.num_frames} frames; a {len(payload)}-byte payload can hold at most {limit}"
        )
    try:
        return decode_payload(payload, h.num_frames, tables)
    except Exception as error:  # the range decoder's own errors on forged data
        raise BitstreamError(f"entropy-coded payload cannot be decoded: {error}") from error


def write_file(path: str | os.PathLike, audio_codes: Any, num_codebooks: Any, **kwargs: Any) -> int:
    """`encode_bitstream(audio_codes, num_codebooks, **kwargs)` written to `path`; returns the file size."""
    data = encode_bitstream(audio_codes, num_codebooks, **kwargs)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def read_file(path: str | os.PathLike, **kwargs: Any) -> VRVQBitstream:
    """`decode_bitstream` of the file at `path` (kwargs: expected_model_id, entropy_tables)."""
    with open(path, "rb") as f:
        data = f.read()
    return decode_bitstream(data, **kwargs)


__all__ = [
    "BitstreamError",
    "FILE_EXTENSION",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "Header",
    "MAGIC",
    "VRVQBitstream",
    "codebook_bits",
    "counts_from_mask",
    "decode_bitstream",
    "encode_bitstream",
    "model_fingerprint",
    "normalize_model_id",
    "pack_fixed",
    "payload_bits",
    "read_file",
    "side_info_bits",
    "unpack_fixed",
    "write_file",
]
