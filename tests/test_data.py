"""Tests of the training data pipeline (vrvq_hf.data) on a tiny synthetic audiofolder."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest
import soundfile as sf
import torch

from vrvq_hf.data import (
    PAPER_CORPORA,
    DataConfigError,
    DataSourceConfig,
    ExcerptStream,
    TooManyBadFilesError,
    build_validation_set,
    collate_audio,
    rms_db,
    select_excerpt,
    train_dataloader,
    validation_dataloader,
)

SR = 8000
HOP = 40


def _speech_like(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Syllable-like bursts (noise through a moving resonance) separated by silences."""
    n = int(seconds * SR)
    out = np.zeros(n, dtype=np.float32)
    t = 0
    while t < n:
        t += int(rng.uniform(0.15, 0.4) * SR)  # pause
        burst = int(rng.uniform(0.1, 0.25) * SR)
        if t + burst > n:
            break
        k = np.arange(burst)
        f0 = rng.uniform(100, 250)
        env = np.sin(np.pi * k / burst) ** 2
        out[t : t + burst] = 0.3 * env * (np.sin(2 * np.pi * f0 * k / SR) + 0.3 * rng.standard_normal(burst))
        t += burst
    return out


def _music_like(rng: np.random.Generator, seconds: float, lead_silence: float = 0.5) -> np.ndarray:
    """A chord with a leading silence."""
    n = int(seconds * SR)
    k = np.arange(n)
    chord = sum(np.sin(2 * np.pi * f * k / SR + rng.uniform(0, 6)) for f in rng.uniform(200, 900, size=3))
    out = (0.15 * chord).astype(np.float32)
    out[: int(lead_silence * SR)] = 0.0
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """audiofolder root/<category>/{train,validation}/ with 12 + 3 files per category."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for category, make in (("speech", _speech_like), ("music", _music_like)):
        for split, count in (("train", 12), ("validation", 3)):
            folder = root / category / split
            folder.mkdir(parents=True)
            for i in range(count):
                audio = make(rng, seconds=1.5 if category == "speech" else 2.0)
                sf.write(folder / f"{category}_{split}_{i:02d}.wav", audio, SR)
    return {"root": str(root), "cache": str(tmp_path_factory.mktemp("hf_cache"))}


def _sources(corpus: dict[str, str]) -> list[DataSourceConfig]:
    return [DataSourceConfig(name=c, path=os.path.join(corpus["root"], c)) for c in ("speech", "music")]


def _stream(corpus: dict[str, str], sources=None, **kwargs) -> ExcerptStream:
    kwargs = {"sampling_rate": SR, "hop_length": HOP, "cache_dir": corpus["cache"], **kwargs}
    return ExcerptStream(sources if sources is not None else _sources(corpus), **kwargs)


def _take(stream: ExcerptStream, n: int) -> list[dict]:
    it = iter(stream)
    return [next(it) for _ in range(n)]


def test_excerpts_have_the_excerpt_length_and_are_loud(corpus):
    stream = _stream(corpus)
    assert stream.excerpt_samples == int(round(0.38 * SR)) // HOP * HOP
    for item in _take(stream, 40):
        assert item["input_values"].shape == (stream.excerpt_samples,)
        assert item["input_values"].dtype == np.float32
        # gain is at most -6 dB here, so the selected excerpt was above -40 dB before it
        assert rms_db(item["input_values"]) > -46.0
        assert np.max(np.abs(item["input_values"])) <= 1.0


def test_select_excerpt_finds_a_sparse_loud_burst():
    audio = np.zeros(SR * 10, dtype=np.float32)
    audio[7 * SR : 7 * SR + 4000] = 0.5  # 0.5 s of sound in 10 s of silence
    for seed in range(20):
        excerpt, offset, level = select_excerpt(audio, 3000, np.random.default_rng(seed), -40.0, tries=2)
        assert excerpt.shape == (3000,)
        assert level > -40.0 and rms_db(excerpt) > -40.0
        assert 7 * SR - 3000 < offset < 7 * SR + 4000
    silent, _, level = select_excerpt(np.zeros(SR), 3000, np.random.default_rng(0))
    assert level <= -40.0 and silent.shape == (3000,)
    short, _, _ = select_excerpt(np.ones(100, dtype=np.float32), 3000, np.random.default_rng(0))
    assert short.shape == (3000,) and short[:100].sum() == 100 and not short[100:].any()


def test_categories_are_mixed_in_equal_shares(corpus):
    stream = _stream(corpus)
    cats = [it["category"] for it in _take(stream, 400)]
    share = cats.count("speech") / len(cats)
    assert abs(share - 0.5) < 0.08  # binomial sd 0.025
    weighted = _stream(corpus, category_weights={"speech": 3.0, "music": 1.0})
    draws = [weighted.sources[weighted._draw_source(weighted._rng(p))].cfg.category for p in range(4000)]
    assert abs(draws.count("speech") / 4000 - 0.75) < 0.03


def test_two_processes_get_disjoint_files(corpus):
    a = _stream(corpus, process_index=0, num_processes=2)
    b = _stream(corpus, process_index=1, num_processes=2)
    for sa, sb in zip(a.sources, b.sources):
        fa, fb = set(sa.shard_files()), set(sb.shard_files())
        assert fa and fb and not fa & fb
        assert len(fa | fb) == 12
    used_a = {it["file"] for it in _take(a, 60)}
    used_b = {it["file"] for it in _take(b, 60)}
    assert not used_a & used_b


def test_same_seed_same_stream_and_resume(corpus):
    first = _take(_stream(corpus, seed=3), 12)
    again = _take(_stream(corpus, seed=3), 12)
    other = _take(_stream(corpus, seed=4), 12)
    for x, y in zip(first, again):
        assert x["file"] == y["file"] and np.array_equal(x["input_values"], y["input_values"])
    assert any(not np.array_equal(x["input_values"], y["input_values"]) for x, y in zip(first, other))

    resumed = _stream(corpus, seed=3)
    resumed.skip_to(8)
    for x, y in zip(first[8:], _take(resumed, 4)):
        assert x["position"] == y["position"] and np.array_equal(x["input_values"], y["input_values"])

    live = _stream(corpus, seed=3)
    _take(live, 5)
    state = live.state_dict()
    assert state["position"] == 5
    fresh = _stream(corpus, seed=3)
    fresh.load_state_dict(state)
    assert np.array_equal(_take(fresh, 1)[0]["input_values"], first[5]["input_values"])


def test_dataloader_batches_do_not_depend_on_worker_count(corpus):
    def batches(workers: int) -> list[torch.Tensor]:
        stream = _stream(corpus, seed=1)
        stream.skip_to(4)
        loader = train_dataloader(stream, batch_size=3, num_workers=workers)
        out = []
        for batch in loader:
            out.append(batch)
            if len(out) == 4:
                break
        return out

    serial, parallel = batches(0), batches(2)
    for s, p in zip(serial, parallel):
        assert s["input_values"].shape == (3, 1, 3040) and s["input_values"].dtype == torch.float32
        assert torch.equal(s["positions"], p["positions"])
        assert torch.equal(s["input_values"], p["input_values"])
    assert serial[0]["positions"].tolist() == [4, 5, 6]


def test_bad_files_are_skipped_with_a_warning_then_raise(corpus, tmp_path, caplog):
    good = sorted(os.path.join(corpus["root"], "speech", "train", f) for f in
                  os.listdir(os.path.join(corpus["root"], "speech", "train")))[:3]
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + os.urandom(2000))
    missing = str(tmp_path / "missing.wav")
    src = DataSourceConfig(name="mixed", files=[*good, str(corrupt), missing])
    stream = _stream(corpus, sources=[src], max_bad_files=5)
    with caplog.at_level(logging.WARNING, logger="vrvq_hf.data"):
        items = _take(stream, 30)
    assert {it["file"] for it in items} <= set(good)
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert str(corrupt) in warned and missing in warned

    strict = _stream(corpus, sources=[src], max_bad_files=1)
    with pytest.raises(TooManyBadFilesError, match="max_bad_files=1"):
        _take(strict, 60)
    only_bad = _stream(corpus, sources=[DataSourceConfig(name="bad", files=[str(corrupt)])])
    with pytest.raises(TooManyBadFilesError, match="unreadable"):
        _take(only_bad, 1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"excerpt_seconds": 0.001}, "excerpt_seconds"),
        ({"category_weights": {"speech": 0.0, "music": 0.0}}, "category_weights"),
        ({"category_weights": {"speech": -1.0, "music": 1.0}}, "category_weights"),
        ({"category_weights": {"noise": 1.0}}, "category_weights"),
        ({"process_index": 2, "num_processes": 2}, "process_index"),
        ({"gain_db": (6.0, -6.0)}, "gain_db"),
        ({"hop_length": 0}, "hop_length"),
    ],
)
def test_bad_stream_configs_name_the_field(corpus, kwargs, field):
    with pytest.raises(DataConfigError, match=field):
        _stream(corpus, **kwargs)


def test_bad_source_configs_name_the_field(corpus):
    with pytest.raises(DataConfigError, match="name='vctkk'"):
        DataSourceConfig(name="vctkk")
    with pytest.raises(DataConfigError, match="path='/no/such/folder'"):
        DataSourceConfig(name="x", path="/no/such/folder")
    with pytest.raises(DataConfigError, match="weight"):
        DataSourceConfig(name="x", files=["a.wav"], weight=-1.0)
    with pytest.raises(DataConfigError, match="unique"):
        _stream(corpus, sources=[DataSourceConfig(name="x", files=["a.wav"])] * 2)
    with pytest.raises(DataConfigError, match="audio_column='sound'"):
        _stream(corpus, sources=[DataSourceConfig(name="s", path=os.path.join(corpus["root"], "speech"),
                                                  audio_column="sound")])


def test_paper_registry_covers_six_categories():
    assert len(PAPER_CORPORA) == 6
    assert len({c.category for c in PAPER_CORPORA.values()}) == 6
    assert not any(c.verified_offline for c in PAPER_CORPORA.values())
    vctk = DataSourceConfig(name="vctk")
    assert vctk.path == "CSTR-Edinburgh/vctk" and vctk.category == "speech_hq"
    assert DataSourceConfig(name="daps").audio_column == "clean_audio"


def test_collate_pads_and_masks():
    batch = collate_audio([{"input_values": np.ones(5, np.float32)}, {"input_values": np.ones(3, np.float32)}])
    assert batch["input_values"].shape == (2, 1, 5) and batch["input_values"].dtype == torch.float32
    assert batch["padding_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["input_values"][1, 0, 3:].abs().sum() == 0


def test_validation_clips_are_fixed_and_skip_leading_silence(corpus):
    sources = _sources(corpus)
    clips = build_validation_set(sources, sampling_rate=SR, clip_seconds=1.0, cache_dir=corpus["cache"])
    again = build_validation_set(sources, sampling_rate=SR, clip_seconds=1.0, cache_dir=corpus["cache"])
    assert len(clips) == 6 and [c["file"] for c in clips] == [c["file"] for c in again]
    assert all(np.array_equal(a["input_values"], b["input_values"]) for a, b in zip(clips, again))
    assert all("validation" in c["file"] for c in clips)
    music = [c for c in clips if c["category"] == "music"]
    assert all(c["input_values"].shape == (SR,) and rms_db(c["input_values"][:400]) > -40 for c in music)
    batch = next(iter(validation_dataloader(clips, batch_size=4)))
    assert batch["input_values"].shape[:2] == (4, 1) and batch["padding_mask"].shape[0] == 4


def test_streaming_source_resumes_from_state(corpus):
    src = [DataSourceConfig(name="speech", path=os.path.join(corpus["root"], "speech"), streaming=True)]
    stream = _stream(corpus, sources=src, shuffle_buffer=4)
    items = _take(stream, 20)  # more than one epoch of the 12 files
    assert all(it["input_values"].shape == (stream.excerpt_samples,) for it in items)
    assert len({it["file"] for it in items}) == 12

    head = _stream(corpus, sources=src, shuffle_buffer=4)
    _take(head, 7)
    state = head.state_dict()
    assert state["streaming_consumed"] == {"speech": 7}
    resumed = _stream(corpus, sources=src, shuffle_buffer=4)
    resumed.load_state_dict(state)
    for x, y in zip(items[7:10], _take(resumed, 3)):
        assert x["file"] == y["file"] and np.array_equal(x["input_values"], y["input_values"])
