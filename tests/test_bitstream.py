import math
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vrvq_hf.bitstream import (
    HEADER_SIZE,
    BitstreamError,
    Header,
    decode_bitstream,
    encode_bitstream,
    model_fingerprint,
    normalize_model_id,
    payload_bits,
    read_file,
    write_file,
)
from vrvq_hf.entropy import CodeTables, estimate_tables, max_frames
from vrvq_hf.importance import bitrate_kbps

from .conftest import speech_like, tiny_config

FUZZ = settings(max_examples=1000, deadline=500, database=None, suppress_health_check=[HealthCheck.too_slow])


def random_item(rng, n_codebooks, codebook_size, frames):
    """codes (Nq, F) with junk outside the mask, counts (F,) in 1..Nq."""
    codes = rng.integers(0, codebook_size, size=(n_codebooks, frames))
    counts = rng.integers(1, n_codebooks + 1, size=frames)
    return codes, counts


def encode(codes, counts, codebook_size, hop=512, **kwargs):
    kwargs.setdefault("model_id", "test-model")
    return encode_bitstream(
        codes,
        counts,
        sampling_rate=44100,
        hop_length=hop,
        codebook_size=codebook_size,
        num_samples=len(counts) * hop - 7 if len(counts) else 0,
        **kwargs,
    )


def masked(codes, counts):
    return np.where(np.arange(codes.shape[0])[:, None] < counts[None, :], codes, 0)


def skewed_item(rng, n_codebooks=8, codebook_size=1024, frames=2000):
    """Codes with Zipf-like usage (sharper in early codebooks) and slowly varying counts."""
    codes = np.empty((n_codebooks, frames), dtype=np.int64)
    for k in range(n_codebooks):
        weights = 1.0 / np.arange(1, codebook_size + 1) ** (1.1 - 0.08 * k)
        ranking = np.random.default_rng(100 + k).permutation(
            codebook_size
        )  # fixed: the "model's" favourite codes
        codes[k] = ranking[rng.choice(codebook_size, size=frames, p=weights / weights.sum())]
    level = np.cumsum(rng.normal(0, 0.4, size=frames)) % (2 * n_codebooks)
    counts = np.clip(np.abs(level - n_codebooks).round().astype(np.int64), 1, n_codebooks)
    return codes, counts


def reheader(data: bytes, **fields) -> bytes:
    """Rewrite header fields (and optionally the payload) and recompute the checksum: a forged file."""
    fields = dict(fields)
    payload = fields.pop("payload", data[HEADER_SIZE:])
    header = Header.unpack(data)._replace(payload_bytes=len(payload))._replace(**fields).pack()[:-4]
    return header + struct.pack(">I", zlib.crc32(payload, zlib.crc32(header))) + payload


# ------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("n_codebooks", range(1, 17))
def test_round_trip_every_nq_and_codebook_size(n_codebooks):
    rng = np.random.default_rng(n_codebooks)
    for bits in range(1, 13):
        size = 2**bits
        for frames in (0, 1, int(rng.integers(2, 60))):
            codes, counts = random_item(rng, n_codebooks, size, frames)
            data = encode(codes, counts, size)
            counted = payload_bits(counts, n_codebooks, size)
            assert counted == int((counts * bits + math.ceil(math.log2(n_codebooks))).sum())
            assert len(data) - HEADER_SIZE == math.ceil(counted / 8)
            out = decode_bitstream(data, expected_model_id="test-model")
            assert out.audio_codes.dtype == torch.long and out.audio_codes.shape == (n_codebooks, frames)
            np.testing.assert_array_equal(out.audio_codes.numpy(), masked(codes, counts))
            np.testing.assert_array_equal(out.num_codebooks.numpy(), counts)
            np.testing.assert_array_equal(out.codebook_mask.sum(0).numpy(), counts)
            assert (out.codebook_size, out.n_codebooks, out.num_frames) == (size, n_codebooks, frames)
            assert (out.sampling_rate, out.hop_length, out.num_samples) == (
                44100,
                512,
                max(frames * 512 - 7, 0),
            )
            assert not out.entropy_coded and out.counted_bits == counted


def test_payload_bits_matches_the_models_bitrate():
    rng = np.random.default_rng(0)
    config = tiny_config(n_codebooks=5, codebook_size=64)
    counts = torch.from_numpy(rng.integers(0, 6, size=(3, 40)))
    counts[counts == 0] = 1
    counts[1, 30:] = 0  # padded frames cost nothing
    kbps = bitrate_kbps(counts, config.bits_per_code, config.side_info_bits, config.frame_rate)
    frames = (counts > 0).sum(1)
    bits = payload_bits(counts, 5, 64)
    np.testing.assert_allclose(kbps.numpy() * 1000 * frames.numpy() / config.frame_rate, bits, rtol=1e-12)
    for b in range(3):
        f = int(frames[b])
        data = encode_bitstream(
            torch.zeros(5, f, dtype=torch.long),
            counts[b, :f],
            sampling_rate=config.sampling_rate,
            hop_length=config.hop_length,
            codebook_size=64,
            num_samples=f * config.hop_length,
            model_id=None,
        )
        assert len(data) - HEADER_SIZE == math.ceil(bits[b] / 8)
        assert decode_bitstream(data).bitrate_kbps == pytest.approx(float(kbps[b]), rel=1e-12)


def test_model_codes_survive_the_file(tiny_model, tmp_path):
    config = tiny_model.config
    x = speech_like(0.3)
    with torch.no_grad():
        enc = tiny_model.encode(x, level=0.6)
    model_id = model_fingerprint(tiny_model.state_dict(), config)
    size = write_file(
        tmp_path / "a.vrvq",
        enc.audio_codes,
        enc.num_codebooks,
        sampling_rate=config.sampling_rate,
        hop_length=config.hop_length,
        codebook_size=config.codebook_size,
        num_samples=x.shape[-1],
        model_id=model_id,
    )
    seconds = enc.audio_codes.shape[-1] / config.frame_rate
    assert size - HEADER_SIZE == math.ceil(round(float(enc.bitrate_kbps[0]) * 1000 * seconds) / 8)
    got = read_file(tmp_path / "a.vrvq", expected_model_id=model_id)
    assert torch.equal(got.audio_codes, enc.audio_codes[0]) and torch.equal(
        got.num_codebooks, enc.num_codebooks[0]
    )
    assert got.bitrate_kbps == pytest.approx(float(enc.bitrate_kbps[0]))
    got.check_compatible(config)
    with pytest.raises(BitstreamError, match="file has codebook_size=16 but the model has 32"):
        got.check_compatible(tiny_config(codebook_size=32))
    with torch.no_grad():
        direct = tiny_model.decode(enc.audio_codes, num_codebooks=enc.num_codebooks).audio_values
        from_file = tiny_model.decode(**got.model_inputs()).audio_values
    assert torch.equal(direct, from_file)


def test_ten_minutes_pack_and_unpack_fast():
    rng = np.random.default_rng(1)
    frames = round(600 * 44100 / 512)
    codes, counts = random_item(rng, 8, 1024, frames)
    start = time.perf_counter()
    data = encode(codes, counts, 1024)
    packed = time.perf_counter()
    out = decode_bitstream(data)
    unpacked = time.perf_counter()
    np.testing.assert_array_equal(out.audio_codes.numpy(), masked(codes, counts))
    assert packed - start < 1.0 and unpacked - packed < 1.0, (packed - start, unpacked - packed)


# ------------------------------------------------------------------------------------------ entropy coding
def test_entropy_mode_is_lossless_and_smaller_on_skewed_codes(tmp_path):
    rng = np.random.default_rng(2)
    tables = estimate_tables([skewed_item(rng) for _ in range(4)], codebook_size=1024)
    tables.save(tmp_path)
    tables = CodeTables.load(tmp_path)
    codes, counts = skewed_item(rng)
    fixed = encode(codes, counts, 1024)
    coded = encode(codes, counts, 1024, entropy_tables=tables)
    out = decode_bitstream(coded, entropy_tables=tables)
    assert out.entropy_coded
    np.testing.assert_array_equal(out.audio_codes.numpy(), masked(codes, counts))
    np.testing.assert_array_equal(out.num_codebooks.numpy(), counts)
    saving = 1 - (len(coded) - HEADER_SIZE) / (len(fixed) - HEADER_SIZE)
    assert saving > 0.05, saving
    ideal = tables.information_bits(codes, counts)
    assert 8 * (len(coded) - HEADER_SIZE) < ideal * 1.01 + 64  # the range coder is near the ideal length
    assert out.payload_kbps < out.bitrate_kbps


@pytest.mark.parametrize(
    "n_codebooks,codebook_size", [(1, 2), (1, 256), (2, 2), (3, 16), (8, 1024), (16, 4096)]
)
def test_entropy_round_trip_shapes(n_codebooks, codebook_size):
    rng = np.random.default_rng(n_codebooks)
    train = [random_item(rng, n_codebooks, codebook_size, 50) for _ in range(3)]
    tables = estimate_tables(train, codebook_size=codebook_size)
    for frames in (0, 1, 2, 37):
        codes, counts = random_item(rng, n_codebooks, codebook_size, frames)
        codes[0] = 0  # a little skew so that coding is worth it at least sometimes
        data = encode(codes, counts, codebook_size, entropy_tables=tables)
        out = decode_bitstream(data, entropy_tables=tables)
        np.testing.assert_array_equal(out.audio_codes.numpy(), masked(codes, counts))
        np.testing.assert_array_equal(out.num_codebooks.numpy(), counts)
        assert len(data) - HEADER_SIZE <= math.ceil(payload_bits(counts, n_codebooks, codebook_size) / 8)


def test_entropy_falls_back_to_fixed_when_not_smaller():
    rng = np.random.default_rng(3)
    codes, counts = random_item(rng, 4, 16, 100)
    data = encode(codes, counts, 16, entropy_tables=CodeTables.empty(4, 16))  # uniform: never smaller
    out = decode_bitstream(data)  # no tables needed
    assert not out.entropy_coded
    np.testing.assert_array_equal(out.audio_codes.numpy(), masked(codes, counts))


def test_entropy_tables_missing_or_mismatched():
    rng = np.random.default_rng(4)
    codes, counts = skewed_item(rng, 4, 64, 500)
    tables = estimate_tables([(codes, counts)], codebook_size=64)
    data = encode(codes, counts, 64, entropy_tables=tables)
    with pytest.raises(BitstreamError, match="entropy coded: pass"):
        decode_bitstream(data)
    other = estimate_tables([skewed_item(rng, 4, 64, 500)], codebook_size=64)
    with pytest.raises(BitstreamError, match="other tables"):
        decode_bitstream(data, entropy_tables=other)
    with pytest.raises(BitstreamError, match="tables are for Nq=4, codebook size 32"):
        decode_bitstream(data, entropy_tables=CodeTables.empty(4, 32))


def test_code_tables_counts_and_files(tmp_path):
    codes = torch.tensor([[[1, 2, 3, 0], [0, 1, 1, 0]]])  # (B=1, Nq=2, F=4)
    counts = torch.tensor([[2, 1, 2, 0]])  # last frame padded
    tables = estimate_tables([(codes, counts)], codebook_size=4)
    np.testing.assert_array_equal(tables.code_counts, [[0, 1, 1, 1], [1, 1, 0, 0]])
    np.testing.assert_array_equal(tables.count_transitions, [[0, 1], [0, 1], [1, 0]])
    assert np.allclose(tables.code_probabilities().sum(1), 1) and (tables.code_probabilities() > 0).all()
    path = tables.save(tmp_path / "model")
    assert path.name == "code_tables.safetensors"
    again = CodeTables.load(tmp_path / "model")
    assert again.table_id == tables.table_id and len(tables.table_id) == 8
    with pytest.raises(FileNotFoundError, match="no code tables"):
        CodeTables.load(tmp_path)
    with pytest.raises(ValueError, match="codes must be in"):
        estimate_tables([(codes + 4, counts)], codebook_size=4)


# ------------------------------------------------------------------------------------------ model ids
def test_model_fingerprint_and_ids():
    weights = {"a": torch.ones(3), "b": torch.zeros(2, 2, dtype=torch.bfloat16)}
    config = {"n_codebooks": 8, "transformers_version": "5.0", "_name_or_path": "x"}
    fp = model_fingerprint(weights, config)
    assert len(fp) == 16
    assert fp == model_fingerprint(
        dict(reversed(weights.items())), {**config, "transformers_version": "6", "_name_or_path": "y"}
    )
    assert fp != model_fingerprint({**weights, "a": torch.tensor([1.0, 1.0, 1.0001])}, config)
    assert fp != model_fingerprint(weights, {**config, "n_codebooks": 9})
    assert fp == model_fingerprint(
        {k: v.float().numpy() if k == "a" else v for k, v in weights.items()}, config
    )
    assert normalize_model_id(fp.hex()) == fp == normalize_model_id(fp)
    assert normalize_model_id("abc") == b"abc" + bytes(13) and normalize_model_id(None) == bytes(16)
    with pytest.raises(ValueError, match="fit in 16 bytes"):
        normalize_model_id(b"x" * 17)


def test_config_object_fingerprint():
    config = tiny_config()
    weights = {"w": torch.arange(4.0)}
    assert model_fingerprint(weights, config) == model_fingerprint(weights, config.to_dict())
    assert model_fingerprint(weights, config) != model_fingerprint(weights, tiny_config(codebook_size=32))


# ------------------------------------------------------------------------------------------ errors
def small_file(n_codebooks=5, codebook_size=16, frames=30, seed=0, **kwargs):
    codes, counts = random_item(np.random.default_rng(seed), n_codebooks, codebook_size, frames)
    return encode(codes, counts, codebook_size, **kwargs)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d[:10], "truncated"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: b"", "truncated"),
        (lambda d: d + b"\0", "unexpected bytes"),
        (lambda d: b"RIFF" + d[4:], "not a VRVQ file"),
        (lambda d: d[:4] + b"\x02" + d[5:], "unsupported format version 2"),
        (lambda d: d[: HEADER_SIZE + 3] + bytes([d[HEADER_SIZE + 3] ^ 4]) + d[HEADER_SIZE + 4 :], "checksum"),
        (lambda d: d[:20] + bytes([d[20] ^ 1]) + d[21:], "checksum"),
        (lambda d: reheader(d, sampling_rate=0), "sampling rate of 0"),
        (lambda d: reheader(d, hop_length=0), "hop length of 0"),
        (lambda d: reheader(d, n_codebooks=0), "0 codebooks"),
        (lambda d: reheader(d, codebook_bits=0), "0 bits per code"),
        (lambda d: reheader(d, num_frames=2**32 - 1), "header announces 4294967295 frames"),
        (lambda d: reheader(d, num_frames=3, num_samples=0), "longer than 3 frames"),
        (lambda d: reheader(d, num_samples=2**63), "samples but"),
        (lambda d: reheader(d, flags=6), "unknown flags"),
        (lambda d: reheader(d, reserved=1), "reserved"),
        (lambda d: reheader(d, table_id=b"x" * 8), "all-zero table id"),
        (lambda d: reheader(d, payload_bytes=10**6), "truncated"),
    ],
)
def test_bad_files_say_what_is_wrong(mutate, message):
    with pytest.raises(BitstreamError, match=message):
        decode_bitstream(mutate(small_file()))


def test_nonzero_padding_is_refused():
    data = small_file(n_codebooks=1, codebook_size=2, frames=1)  # 1 bit of payload, 7 bits of padding
    with pytest.raises(BitstreamError, match="non-zero padding"):
        decode_bitstream(reheader(data, payload=bytes([data[HEADER_SIZE] | 1])))


def test_count_above_nq_and_foreign_model():
    # Nq = 5 stores counts in 3 bits; 7 - 1 = 0b110 in the first frame's field is a count of 7.
    data = small_file(n_codebooks=5, codebook_size=16, frames=1)
    payload = bytes([0b11000000 | (data[HEADER_SIZE] & 0b00011111)]) + data[HEADER_SIZE + 1 :]
    with pytest.raises(BitstreamError, match="claims 7 active codebooks but the file has only 5"):
        decode_bitstream(reheader(data, payload=payload))
    with pytest.raises(BitstreamError, match="written by another model"):
        decode_bitstream(small_file(), expected_model_id="other-model")
    assert decode_bitstream(small_file(), expected_model_id=b"test-model").model_id.startswith(b"test-model")
    with pytest.raises(BitstreamError, match="expected bytes"):
        decode_bitstream("VRVQ")


def test_encoder_rejects_bad_input():
    codes, counts = random_item(np.random.default_rng(0), 4, 16, 10)
    with pytest.raises(ValueError, match="drop padded frames"):
        encode(codes, np.where(np.arange(10) > 7, 0, counts), 16)
    with pytest.raises(ValueError, match=r"in \[0, 16\)"):
        encode(codes + 16, counts, 16)
    with pytest.raises(ValueError, match="power of two"):
        encode(codes, counts, 12)
    with pytest.raises(ValueError, match="num_samples"):
        encode_bitstream(
            codes, counts, sampling_rate=16000, hop_length=8, codebook_size=16, num_samples=81, model_id=None
        )
    with pytest.raises(ValueError, match=r"\(Nq, F\)"):
        encode(codes[None].repeat(2, 0), counts, 16)
    encode(codes + 100 * (np.arange(4)[:, None] >= counts), counts, 16)  # junk outside the mask is ignored


# ------------------------------------------------------------------------------------------ fuzzing
BASE_FILES = [
    small_file(5, 16, 30, seed=1),
    small_file(1, 2, 17, seed=2),
    small_file(8, 1024, 40, seed=3),
    small_file(16, 4096, 3, seed=4),
    small_file(3, 8, 0, seed=5),
]
_rng = np.random.default_rng(6)
_skewed = [skewed_item(_rng, 6, 256, 300) for _ in range(2)]
TABLES = estimate_tables(_skewed, codebook_size=256)
ENTROPY_FILE = encode(*_skewed[0], 256, entropy_tables=TABLES)
assert ENTROPY_FILE[5] & 1  # really entropy coded
ALL_FILES = [*BASE_FILES, ENTROPY_FILE]


@FUZZ
@given(index=st.integers(0, len(ALL_FILES) - 1), cut=st.integers(0, 10**6))
def test_fuzz_truncation(index, cut):
    data = ALL_FILES[index]
    with pytest.raises(BitstreamError):
        decode_bitstream(data[: cut % len(data)], entropy_tables=TABLES)


@FUZZ
@given(
    index=st.integers(0, len(ALL_FILES) - 1),
    flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=3, unique=True),
)
def test_fuzz_bit_flips(index, flips):
    data = bytearray(ALL_FILES[index])
    bits = {f % (8 * len(data)) for f in flips}
    for bit in bits:
        data[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(BitstreamError):
        decode_bitstream(bytes(data), entropy_tables=TABLES)


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), st.binary(max_size=120).map(lambda b: b"VRVQ\x01" + b)))
def test_fuzz_random_bytes(data):
    with pytest.raises(BitstreamError):
        decode_bitstream(data, entropy_tables=TABLES)


HEADER_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "flags": st.sampled_from([0, 1, 2, 255]),
        "sampling_rate": st.sampled_from([0, 1, 44100, 2**32 - 1]),
        "hop_length": st.sampled_from([0, 1, 512, 2**32 - 1]),
        "n_codebooks": st.integers(0, 2**16 - 1),
        "codebook_bits": st.integers(0, 2**16 - 1),
        "num_frames": st.one_of(st.integers(0, 100), st.integers(0, 2**32 - 1)),
        "num_samples": st.one_of(st.integers(0, 10**5), st.integers(0, 2**64 - 1)),
        "table_id": st.sampled_from([bytes(8), TABLES.table_id, b"\xff" * 8]),
        "payload": st.binary(max_size=300),
    },
)


def check_consistent(out):
    counts = out.num_codebooks.numpy()
    assert out.audio_codes.shape == (out.n_codebooks, len(counts))
    assert ((counts >= 1) & (counts <= out.n_codebooks)).all()
    assert (out.audio_codes >= 0).all() and (out.audio_codes < out.codebook_size).all()
    assert out.num_samples <= out.num_frames * out.hop_length
    if not out.entropy_coded:
        assert out.payload_bytes == math.ceil(out.counted_bits / 8)
    else:
        assert out.num_frames <= max_frames(out.payload_bytes, TABLES)


@FUZZ
@given(index=st.integers(0, len(ALL_FILES) - 1), frames=st.integers(0, 300), payload=st.binary(max_size=400))
def test_fuzz_forged_payloads(index, frames, payload):
    """Random payloads under a valid header and checksum: decoded consistently or refused."""
    try:
        out = decode_bitstream(
            reheader(ALL_FILES[index], num_frames=frames, num_samples=0, payload=payload),
            entropy_tables=TABLES,
        )
    except BitstreamError:
        return
    check_consistent(out)


@FUZZ
@given(index=st.integers(0, len(ALL_FILES) - 1), fields=HEADER_FIELDS)
def test_fuzz_forged_headers(index, fields):
    """A forged file with a valid checksum either decodes to a consistent result or raises BitstreamError."""
    data = reheader(ALL_FILES[index], **fields)
    try:
        out = decode_bitstream(data, entropy_tables=TABLES)
    except BitstreamError:
        return
    check_consistent(out)
