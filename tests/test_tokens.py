import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vrvq_hf.tokens import (
    TokenVocabulary,
    codes_to_dense,
    codes_to_padded_tokens,
    codes_to_tokens,
    dense_to_codes,
    frames_for_samples,
    pad_token_sequences,
    sequence_to_codes,
    tokens_for_counts,
    tokens_to_codes,
)

from .conftest import tiny_config

PROPERTY = settings(
    max_examples=300, deadline=1000, database=None, suppress_health_check=[HealthCheck.too_slow]
)
VOCAB = TokenVocabulary(n_codebooks=4, codebook_size=16)


def random_batch(rng, batch, n_codebooks, codebook_size, frames):
    """codes (B, Nq, F) with junk outside the mask; counts (B, F) with trailing padded frames (0)."""
    codes = torch.from_numpy(rng.integers(0, codebook_size, size=(batch, n_codebooks, frames)))
    counts = torch.from_numpy(rng.integers(1, n_codebooks + 1, size=(batch, frames)))
    for b in range(batch):
        counts[b, int(rng.integers(0, frames + 1)) :] = 0
    return codes, counts


def masked(codes, counts):
    return codes * (torch.arange(codes.shape[1])[None, :, None] < counts[:, None, :])


def item(counts_and_codes, vocab=VOCAB):
    """Hand-written sequence: [(count, [codes]), ...] -> ids with <bos>/<eos>."""
    ids = [vocab.bos_id]
    for count, codes in counts_and_codes:
        ids.append(vocab.frame_token(count))
        ids += [vocab.code_token(k, c) for k, c in enumerate(codes)]
    return torch.tensor([*ids, vocab.eos_id])


# ------------------------------------------------------------------------------------------ vocabulary
def test_vocabulary_layout():
    v = TokenVocabulary.from_config(tiny_config(n_codebooks=8, codebook_size=1024))
    assert (v.pad_id, v.bos_id, v.eos_id, v.frame_offset, v.code_offset) == (0, 1, 2, 3, 11)
    assert v.vocab_size == 3 + 8 + 8 * 1024 == v.code_token(7, 1023) + 1
    assert v.frame_token(1) == 3 and v.frame_token(8) == 10 and v.code_token(0, 0) == 11
    assert v.code_token(2, 5) == 11 + 2 * 1024 + 5
    assert (
        v.describe(v.code_token(2, 5)) == "code 5 of codebook 2"
        and v.describe(v.frame_token(3)) == "<frame:3>"
    )
    assert v.describe(v.vocab_size).startswith("id 8203 (outside")
    with pytest.raises(ValueError, match="frame count"):
        v.frame_token(9)
    with pytest.raises(ValueError, match="codebook in 0..7"):
        v.code_token(8, 0)


def test_length_helpers(tiny_model):
    hop = tiny_model.config.hop_length
    for samples in (1, hop - 1, hop, hop + 1, 10 * hop + 3):
        with torch.no_grad():
            frames = tiny_model.encode(torch.zeros(1, 1, samples)).audio_codes.shape[-1]
        assert frames_for_samples(samples, hop) == frames
    assert torch.equal(frames_for_samples(torch.tensor([0, 8, 9]), 8), torch.tensor([0, 1, 2]))
    counts = torch.tensor([[1, 4, 2, 0], [0, 0, 0, 0]])
    assert torch.equal(tokens_for_counts(counts), torch.tensor([2 + 2 + 5 + 3, 2]))
    assert tokens_for_counts(counts[0]) == 12


# ------------------------------------------------------------------------------------------ round trips
def test_flat_round_trip_with_padding_both_sides():
    rng = np.random.default_rng(0)
    codes, counts = random_batch(rng, 5, 4, 16, 20)
    counts[0] = 4
    counts[1] = 0  # an empty item
    sequences = codes_to_tokens(codes, counts, VOCAB)
    assert [len(s) for s in sequences] == tokens_for_counts(counts).tolist()
    assert all(s.dtype == torch.long and s[0] == VOCAB.bos_id and s[-1] == VOCAB.eos_id for s in sequences)
    for side in ("right", "left"):
        batch = pad_token_sequences(sequences, VOCAB, padding_side=side)
        assert batch["input_ids"].shape == (5, int(tokens_for_counts(counts).max()))
        assert torch.equal(batch["attention_mask"].sum(1), tokens_for_counts(counts))
        for mask in (batch["attention_mask"], None):  # without a mask, <pad> at the ends is ignored
            got_codes, got_counts = tokens_to_codes(batch["input_ids"], VOCAB, attention_mask=mask)
            frames = int((counts > 0).sum(1).max())
            assert torch.equal(got_counts, counts[:, :frames])
            assert torch.equal(got_codes, masked(codes, counts)[:, :, :frames])
    listed_codes, listed_counts = tokens_to_codes(sequences, VOCAB)
    assert torch.equal(listed_counts, counts[:, : listed_counts.shape[1]])
    one_codes, one_counts = sequence_to_codes(sequences[2], VOCAB)
    n = int((counts[2] > 0).sum())
    assert torch.equal(one_counts, counts[2, :n]) and torch.equal(one_codes, masked(codes, counts)[2, :, :n])
    assert torch.equal(
        codes_to_padded_tokens(codes, counts, VOCAB)["input_ids"],
        pad_token_sequences(sequences, VOCAB)["input_ids"],
    )


@PROPERTY
@given(
    n_codebooks=st.integers(1, 16),
    bits=st.integers(1, 12),
    batch=st.integers(1, 4),
    frames=st.integers(0, 30),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trips_property(n_codebooks, bits, batch, frames, seed):
    vocab = TokenVocabulary(n_codebooks, 2**bits)
    codes, counts = random_batch(np.random.default_rng(seed), batch, n_codebooks, 2**bits, frames)
    sequences = codes_to_tokens(codes, counts, vocab)
    assert all(((s >= 0) & (s < vocab.vocab_size)).all() for s in sequences)
    got_codes, got_counts = tokens_to_codes(sequences, vocab)
    valid = int((counts > 0).sum(1).max()) if frames else 0
    assert torch.equal(got_counts, counts[:, :valid]) and torch.equal(
        got_codes, masked(codes, counts)[:, :, :valid]
    )
    repaired = tokens_to_codes(sequences, vocab, strict=False)  # repair leaves good input alone
    assert torch.equal(repaired[0], got_codes) and torch.equal(repaired[1], got_counts)
    for offsets in (True, False):
        dense = codes_to_dense(codes, counts, vocab, offsets=offsets)
        assert dense["input_ids"].shape == (batch, frames, n_codebooks)
        assert torch.equal(dense["codebook_mask"].sum(-1), counts)
        assert torch.equal(dense["frame_mask"], (counts > 0).long())
        back_codes, back_counts = dense_to_codes(dense["input_ids"], vocab, offsets=offsets)
        assert torch.equal(back_counts, counts) and torch.equal(back_codes, masked(codes, counts))


def test_dense_layout():
    codes = torch.tensor([[[3, 4], [5, 6]]])  # (1, Nq=2, F=2)
    counts = torch.tensor([[2, 1]])
    vocab = TokenVocabulary(2, 8)
    dense = codes_to_dense(codes, counts, vocab)
    c = vocab.code_offset
    assert dense["input_ids"].tolist() == [[[c + 3, c + 8 + 5], [c + 4, vocab.pad_id]]]
    raw = codes_to_dense(codes, counts, vocab, offsets=False)
    assert raw["input_ids"].tolist() == [[[3, 5], [4, 8]]]
    masked_frame = dense_to_codes(dense["input_ids"], vocab, frame_mask=torch.tensor([[1, 0]]))
    assert masked_frame[1].tolist() == [[2, 0]]


# ------------------------------------------------------------------------------------------ malformed input
GOOD = [(2, [5, 6]), (1, [7]), (3, [1, 2, 3])]


def test_good_hand_written_sequence():
    codes, counts = sequence_to_codes(item(GOOD), VOCAB)
    assert counts.tolist() == [2, 1, 3]
    assert codes.tolist() == [[5, 7, 1], [6, 0, 2], [0, 0, 3], [0, 0, 0]]


def with_swap(position, token):
    ids = item(GOOD).clone()
    ids[position] = token
    return ids


V = VOCAB


@pytest.mark.parametrize(
    "ids,message",
    [
        (torch.tensor([], dtype=torch.long), "empty sequence"),
        (item(GOOD)[1:], "position 0: expected <bos>, found <frame:2>"),
        (item(GOOD)[:-1], "expected <eos> at the end"),
        (
            with_swap(3, V.code_token(0, 6)),
            "position 3: code 6 of codebook 0 where frame 0 expects a code of codebook 1",
        ),
        (with_swap(4, V.code_token(1, 1)), "position 4: frame 0 declares 2 codes but has more"),
        (with_swap(1, V.code_token(0, 1)), "position 1: code 1 of codebook 0 before the first frame token"),
        (with_swap(4, V.frame_token(2)), "frame 1 declares 2 codes but has 1"),
        (with_swap(5, V.vocab_size), "position 5: id 71 \\(outside"),
        (with_swap(5, V.pad_id), "position 5: unexpected <pad> inside"),
        (with_swap(5, V.bos_id), "unexpected <bos> inside"),
        (torch.tensor([1.0, 2.0]), "integers"),
    ],
)
def test_strict_errors_say_what_and_where(ids, message):
    with pytest.raises(ValueError, match=message):
        sequence_to_codes(ids, VOCAB)


def test_batch_error_names_the_sequence():
    with pytest.raises(ValueError, match="sequence 1: position 3"):
        tokens_to_codes([item(GOOD), with_swap(3, V.code_token(0, 6))], VOCAB)


def test_repair_rules():
    def repair(ids):
        codes, counts = sequence_to_codes(torch.tensor(ids), VOCAB, strict=False)
        return counts.tolist(), codes[:, : len(counts)].T.tolist()

    f, c, bos, eos, pad = V.frame_token, V.code_token, V.bos_id, V.eos_id, V.pad_id
    # cut-off generation (no <eos>): complete frames kept, the last one shortened to what arrived
    assert repair([bos, f(2), c(0, 5), c(1, 6), f(3), c(0, 1)]) == ([2, 1], [[5, 6, 0, 0], [1, 0, 0, 0]])
    # wrong codebook position ends the frame; later codes of that frame dropped
    assert repair([bos, f(3), c(0, 5), c(2, 6), c(1, 7), f(1), c(0, 2), eos]) == (
        [1, 1],
        [[5, 0, 0, 0], [2, 0, 0, 0]],
    )
    # too many codes: extra ones dropped
    assert repair([f(1), c(0, 5), c(1, 6), eos]) == ([1], [[5, 0, 0, 0]])
    # codes before the first frame token, pads, stray <bos>, ids outside the vocabulary: dropped
    assert repair([c(0, 9), pad, f(2), 999, c(0, 1), bos, c(1, 2), -3, eos]) == ([2], [[1, 2, 0, 0]])
    # a frame without codes disappears; everything after <eos> is ignored
    assert repair([bos, f(2), f(1), c(0, 4), eos, f(1), c(0, 8)]) == ([1], [[4, 0, 0, 0]])
    assert repair([]) == ([], []) and repair([eos, f(1), c(0, 1)]) == ([], [])


@PROPERTY
@given(ids=st.lists(st.integers(-2, VOCAB.vocab_size + 2), max_size=200))
def test_repair_never_fails_and_gives_valid_codes(ids):
    codes, counts = sequence_to_codes(torch.tensor(ids, dtype=torch.long), VOCAB, strict=False)
    assert codes.shape == (4, len(counts)) and ((counts >= 1) & (counts <= 4)).all()
    assert ((codes >= 0) & (codes < 16)).all()
    assert (codes * ~(torch.arange(4)[:, None] < counts[None, :]) == 0).all()
    again = codes_to_tokens(codes, counts, VOCAB)[0]
    assert torch.equal(sequence_to_codes(again, VOCAB)[1], counts)  # the repaired codes are strictly valid
    try:
        strict = sequence_to_codes(torch.tensor(ids, dtype=torch.long), VOCAB)
    except ValueError:
        return
    assert torch.equal(strict[0], codes) and torch.equal(strict[1], counts)


def test_dense_malformed():
    vocab = TokenVocabulary(3, 4)
    c = vocab.code_offset
    ids = torch.tensor(
        [[[c + 1, vocab.pad_id, c + 8 + 2], [c + 1, c + 1, vocab.pad_id]]]
    )  # a hole; wrong codebook
    with pytest.raises(ValueError, match="item 0, frame 0, codebook 2"):
        dense_to_codes(ids, vocab)
    codes, counts = dense_to_codes(ids, vocab, strict=False)
    assert counts.tolist() == [[1, 1]] and codes[0, :, 0].tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match=r"shape \(B, F, 3\)"):
        dense_to_codes(torch.zeros(1, 2, 4), vocab)


def test_bad_codes_are_refused():
    codes = torch.zeros(1, 4, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="padded frames"):
        codes_to_tokens(codes, torch.tensor([[1, 0, 1]]), VOCAB)
    with pytest.raises(ValueError, match=r"in 0..4"):
        codes_to_tokens(codes, torch.tensor([[5, 1, 1]]), VOCAB)
    with pytest.raises(ValueError, match=r"in \[0, 16\)"):
        codes_to_tokens(codes + 16, torch.tensor([[1, 1, 1]]), VOCAB)
    with pytest.raises(ValueError, match=r"\(B, 4, F\)"):
        codes_to_tokens(torch.zeros(1, 3, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long), VOCAB)
    assert (
        len(
            codes_to_tokens(
                codes + 99 * (torch.arange(4)[None, :, None] > 0), torch.tensor([[1, 1, 1]]), VOCAB
            )[0]
        )
        == 8
    )
