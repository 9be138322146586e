"""Rate-distortion evaluation: metric sanity, BD-rate, the VBR/CBR sweep, its files and figures."""

import copy
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from vrvq_hf import VRVQModel
from vrvq_hf.evaluation import bd_quality, bd_rate, metrics
from vrvq_hf.evaluation.sweep import (
    SamplingRateMismatchError,
    SweepResult,
    dataset_sources,
    folder_sources,
    readable_clips,
    run_evaluation,
    run_sweep,
    summarize,
    summary_markdown,
)

from .conftest import load_script, tiny_config

SR = 16000
LEVELS = (0.1, 0.5, 1.0, 3.0)


# ------------------------------------------------------------------------------------------------ signals
def voiced(seconds: float = 2.0, sampling_rate: int = SR, seed: int = 0) -> np.ndarray:
    """Speech-like test signal: a gliding harmonic source (f0 110-190 Hz, 1/k harmonics up to 4 kHz) in
    syllable-rate bursts with short pauses; (T,) float64."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sampling_rate
    harmonics = sum(np.sin(k * phase) / k for k in range(1, int(4000 / 190)))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 0.5
    return 0.25 * harmonics * envelope + 0.002 * rng.standard_normal(t.size)


def with_noise(signal: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(signal.size)
    return signal + noise * np.sqrt(np.mean(signal**2) / np.mean(noise**2) / 10 ** (snr_db / 10))


def strictly_ordered(values: list[float], higher_is_better: bool) -> bool:
    """True when values (clean -> noisier) get strictly worse."""
    steps = np.diff(values)
    return bool((steps < 0).all() if higher_is_better else (steps > 0).all())


# ---------------------------------------------------------------------------------------------- metrics
CHEAP_AND_SPEECH = ["mel", "stft", "sisdr", "l1", "pesq", "stoi", "estoi"]


def test_identical_signals_score_at_the_top():
    x = voiced()
    assert metrics.mel_distance(x, x, SR) == pytest.approx(0.0, abs=1e-6)
    assert metrics.stft_distance(x, x, SR) == pytest.approx(0.0, abs=1e-6)
    assert metrics.l1_distance(x, x, SR) == 0.0
    assert metrics.si_sdr(x, x, SR) > 100.0
    assert metrics.pesq_wb(x, x, SR) > 4.5  # wide-band PESQ tops out at 4.64
    assert metrics.stoi(x, x, SR) == pytest.approx(1.0, abs=1e-6)
    assert metrics.estoi(x, x, SR) == pytest.approx(1.0, abs=1e-6)
    # SI-SDR ignores gain; the others are not asked to.
    assert metrics.si_sdr(0.5 * x, x, SR) > 100.0


@pytest.mark.parametrize("name", CHEAP_AND_SPEECH)
def test_more_noise_scores_worse(name):
    x = voiced()
    info = metrics.METRICS[name]
    scores = [info.function(x, x, SR)] + [info.function(with_noise(x, snr), x, SR) for snr in (30, 15, 5, -5)]
    assert strictly_ordered(scores, info.higher_is_better), (name, scores)


def test_si_sdr_matches_the_noise_level():
    x = voiced()
    # Independent white noise at a given SNR: SI-SDR is close to that SNR.
    assert metrics.si_sdr(with_noise(x, 10.0), x, SR) == pytest.approx(10.0, abs=0.3)


def test_visqol_audio_and_speech_modes():
    x = voiced(seconds=2.0)
    audio = [metrics.visqol(y, x, SR, mode="audio") for y in (x, with_noise(x, 10))]
    speech = [metrics.visqol(y, x, SR, mode="speech") for y in (x, with_noise(x, 25), with_noise(x, 5))]
    assert audio[0] > 4.6 and speech[0] > 4.9  # ceilings: about 4.73 (audio) and 5.0 (speech)
    assert strictly_ordered(audio, True), audio
    assert strictly_ordered(speech, True), speech


def test_visqol_too_short_for_a_patch_is_a_clear_error_and_a_nan_in_a_report():
    # long enough for the 0.5 s check, too short for speech mode's patch selector (which fails inside the
    # ViSQOL port with an IndexError); an evaluation must record NaN for that clip and go on
    x = voiced(seconds=0.6)
    with pytest.raises(ValueError, match="no reference patch"):
        metrics.visqol(x, x, SR, mode="speech")
    with pytest.warns(UserWarning, match="visqol: .*no reference patch.*recorded as NaN"):
        values = metrics.compute_metrics(x, x, SR, ["visqol", "mel"], speech=True)
    assert np.isnan(values["visqol"]) and values["mel"] == pytest.approx(0.0, abs=1e-6)


def test_metric_inputs_are_checked():
    x = voiced(0.5)
    with pytest.raises(ValueError, match="same length"):
        metrics.mel_distance(x[:-1], x, SR)
    with pytest.raises(ValueError, match="16000 Hz but reference at 8000 Hz"):
        metrics.si_sdr(x, x, SR, reference_sampling_rate=8000)
    with pytest.raises(ValueError, match="mono"):
        metrics.l1_distance(np.stack([x, x]), np.stack([x, x]), SR)
    with pytest.raises(ValueError, match="positive int"):
        metrics.stoi(x, x, 0)
    with pytest.raises(ValueError, match=">= 16000 Hz"):
        metrics.pesq_wb(x[::2], x[::2], 8000)
    with pytest.raises(ValueError, match="silent"):
        metrics.si_sdr(x, np.zeros_like(x), SR)
    with pytest.raises(ValueError, match="mode"):
        metrics.visqol(x, x, SR, mode="music")
    # Torch tensors of shape (1, 1, T) are accepted and give the numpy result.
    tensor = torch.from_numpy(x).view(1, 1, -1)
    assert metrics.l1_distance(tensor * 0.5, tensor, SR) == pytest.approx(metrics.l1_distance(x * 0.5, x, SR))


def test_missing_optional_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pesq", None)  # makes `import pesq` fail
    with pytest.raises(ImportError, match="pip install pesq"):
        metrics.pesq_wb(voiced(0.5), voiced(0.5), SR)


def test_compute_metrics_records_a_failing_metric_as_nan():
    x = voiced(1.0)
    with pytest.warns(UserWarning, match="sisdr"):
        values = metrics.compute_metrics(x, np.zeros_like(x), SR, ["sisdr", "l1"])
    assert math.isnan(values["sisdr"]) and values["l1"] == pytest.approx(np.mean(np.abs(x)))
    with pytest.raises(ValueError, match="unknown metrics"):
        metrics.compute_metrics(x, x, SR, ["psnr"])


# ---------------------------------------------------------------------------------------------- BD-rate
RATES = [1.5, 3.0, 4.5, 6.0, 7.5]
QUALITY = [2.1, 3.0, 3.6, 3.95, 4.2]  # concave, increasing


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_of_a_curve_against_itself_is_zero(method):
    assert bd_rate(RATES, QUALITY, RATES, QUALITY, method=method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize("k", [0.6, 0.9, 1.25, 2.0])
def test_bd_rate_of_scaled_rates_is_the_scale(method, k):
    value = bd_rate(RATES, QUALITY, [k * r for r in RATES], QUALITY, method=method)
    assert value == pytest.approx((k - 1) * 100, abs=1e-6)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_for_lower_is_better_metrics(method):
    distance = [2.0, 1.4, 1.1, 0.95, 0.9]  # e.g. mel distance, falls with rate
    value = bd_rate(RATES, distance, [0.7 * r for r in RATES], distance, higher_is_better=False, method=method)
    assert value == pytest.approx(-30.0, abs=1e-6)
    # Without the negation the quality axis runs the wrong way round; the number is the same here because
    # both curves share it, but a real difference shows its sign: the better test curve saves bits.
    better = [d - 0.05 for d in distance]
    assert bd_rate(RATES, distance, RATES, better, higher_is_better=False, method=method) < 0
    assert bd_rate(RATES, QUALITY, RATES, [q + 0.05 for q in QUALITY], method=method) < 0


def test_bd_rate_partial_overlap_uses_the_shared_interval():
    # log-rate linear in quality: every interpolant through any subset of the points is that line, so a
    # test curve that covers only the upper part of the range at 1.1x the rate gives exactly +10 %.
    rates = [10 ** (0.3 * q) for q in QUALITY]
    for method in ("pchip", "cubic"):
        low, high = (slice(None, 4), slice(1, None)) if method == "cubic" else (slice(None), slice(2, None))
        value = bd_rate(rates[low], QUALITY[low], [1.1 * r for r in rates[high]], QUALITY[high], method=method)
        assert value == pytest.approx(10.0, abs=1e-6)


def test_bd_rate_errors():
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate(RATES, QUALITY, RATES, [q + 10 for q in QUALITY])
    with pytest.raises(ValueError, match="at least 2 points"):
        bd_rate([1.0], [3.0], RATES, QUALITY)
    with pytest.raises(ValueError, match="at least 4 points"):
        bd_rate(RATES[:3], QUALITY[:3], RATES, QUALITY, method="cubic")
    with pytest.raises(ValueError, match="rates must be > 0"):
        bd_rate([0.0, 1.0], [1.0, 2.0], RATES, QUALITY)
    with pytest.raises(ValueError, match="same number"):
        bd_rate(RATES, QUALITY[:-1], RATES, QUALITY)
    with pytest.raises(ValueError, match="method"):
        bd_rate(RATES, QUALITY, RATES, QUALITY, method="linear")


def test_bd_rate_merges_a_quality_plateau():
    # Two points at the same quality (a metric at its floor) merge instead of breaking pchip.
    rates, quality = [1.0, 2.0, 4.0, 8.0], [1.0, 1.0, 2.0, 3.0]
    assert bd_rate(rates, quality, [2 * r for r in rates], quality) == pytest.approx(100.0, abs=1e-6)


def test_bd_quality_of_a_shifted_curve_is_the_shift():
    shifted = [q + 0.3 for q in QUALITY]
    assert bd_quality(RATES, QUALITY, RATES, shifted) == pytest.approx(0.3, abs=1e-9)
    assert bd_quality(RATES, QUALITY, RATES, shifted, method="cubic") == pytest.approx(0.3, abs=1e-9)


# ------------------------------------------------------------------------------------------------- sweep
class EnergyImportance(torch.nn.Module):
    """Stand-in importance subnet: sigmoid of the standardised log energy of the encoder features per
    frame, so that importance follows content (a random subnet outputs ~0.5 everywhere)."""

    def forward(self, features: torch.Tensor, frame_lengths: torch.Tensor | None = None) -> torch.Tensor:
        energy = features.pow(2).mean(dim=1).clamp_min(1e-20).log()  # (B, F)
        z = (energy - energy.mean(dim=-1, keepdim=True)) / (energy.std(dim=-1, keepdim=True) + 1e-6)
        importance = torch.sigmoid(2.0 * z)
        if frame_lengths is not None:
            steps = torch.arange(importance.shape[-1], device=importance.device)
            importance = importance * (steps[None, :] < frame_lengths[:, None])
        return importance


def _model() -> VRVQModel:
    """Tiny random model whose importance varies over frames."""
    torch.manual_seed(0)
    model = VRVQModel(tiny_config()).eval()
    model.importance_subnet = EnergyImportance()
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster and immune to contention on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write_corpus(root: Path) -> Path:
    """speech/ (2 clips) and music/ (2 clips, one of them unreadable) at 16 kHz, 1 s each."""
    rng = np.random.default_rng(3)
    (root / "speech").mkdir(parents=True)
    (root / "music").mkdir()
    for i in range(2):
        sf.write(root / "speech" / f"s{i}.wav", voiced(1.0, seed=i), SR)
    t = np.arange(SR) / SR
    chords = 0.2 * (np.sin(2 * np.pi * 330 * t) + np.sin(2 * np.pi * 415 * t)) * (t > 0.3)
    sf.write(root / "music" / "m0.flac", chords + 0.01 * rng.standard_normal(SR), SR)
    (root / "music" / "broken.wav").write_bytes(b"RIFF....WAVEnot really audio")
    return root


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """One full run_evaluation on the tiny model (shared by the sweep, summary and figure tests)."""
    root = _write_corpus(tmp_path_factory.mktemp("corpus"))
    output = tmp_path_factory.mktemp("eval")
    model = _model()
    with pytest.warns(UserWarning, match="broken.wav"):
        result, summary, written = run_evaluation(
            model, folder_sources(root), output, levels=LEVELS,
            metrics=["mel", "stft", "sisdr", "l1", "pesq", "stoi"], clip_seconds=10.0, progress=False,
            usage_levels=(0.2, 1.0, 3.0),
        )
    return model, result, summary, written, output


def test_sweep_covers_every_point_within_the_counted_range(evaluation):
    model, result, _, _, _ = evaluation
    config = model.config
    assert result.n_clips == 3 and [name for name, _ in result.skipped] == ["music/broken.wav"]
    clips = {row["clip"] for row in result.rows}
    assert clips == {"speech/s0.wav", "speech/s1.wav", "music/m0.flac"}
    expected = {f"l={level:g}" for level in LEVELS} | {f"n={n}" for n in range(1, config.n_codebooks + 1)}
    for clip in clips:
        assert {row["point"] for row in result.rows if row["clip"] == clip} == expected
    for row in result.rows:
        assert config.min_kbps - 1e-9 <= row["kbps"] <= config.max_kbps + 1e-9
        assert row["side_info_kbps"] == pytest.approx(config.side_info_kbps)
        assert row["payload_kbps"] == pytest.approx(
            row["mean_codebooks"] * config.bits_per_code * config.frame_rate / 1000
        )
        assert row["seconds"] == pytest.approx(1.0)
        if row["mode"] == "cbr":
            assert row["mean_codebooks"] == row["n_quantizers"]
        speech = row["category"] == "speech"
        assert (row["pesq"] is not None) == speech and (row["stoi"] is not None) == speech


def test_vbr_kbps_is_non_decreasing_in_level_and_really_variable(evaluation):
    model, result, _, _, _ = evaluation
    fractional = False
    for clip in {row["clip"] for row in result.rows}:
        vbr = sorted((row["level"], row["kbps"], row["mean_codebooks"]) for row in result.rows
                     if row["clip"] == clip and row["mode"] == "vbr")
        assert all(b[1] >= a[1] for a, b in zip(vbr, vbr[1:])), vbr
        fractional |= any(0 < m % 1 for _, _, m in vbr)
    assert fractional  # the importance map varies, so some levels use a non-integer mean of codebooks


def test_summary_and_bd_rate_per_category(evaluation):
    _, result, summary, _, output = evaluation
    entries = {(e["category"], e["metric"]): e for e in summary["bd_rate"]}
    for category in ("speech", "music", "all"):
        for metric in ("mel", "stft", "sisdr", "l1"):
            entry = entries[(category, metric)]
            assert entry["bd_rate_percent"] is not None or entry["error"], entry
    assert entries[("music", "pesq")]["bd_rate_percent"] is None  # PESQ runs on speech only
    # Means in the summary are the means of the rows.
    point = next(p for p in summary["points"] if p["category"] == "speech" and p["point"] == "l=0.5")
    rows = [r for r in result.rows if r["category"] == "speech" and r["point"] == "l=0.5"]
    assert point["clips"] == 2 and point["mel"] == pytest.approx(np.mean([r["mel"] for r in rows]))
    markdown = (output / "summary.md").read_text()
    assert "BD-rate of VBR against CBR" in markdown and "| speech |" in markdown and "broken.wav" in markdown
    saved = json.loads((output / "rows.json").read_text())
    assert len(saved) == len(result.rows) and saved[0]["clip"] == result.rows[0]["clip"]
    header = (output / "rows.csv").read_text().splitlines()[0].split(",")
    assert {"clip", "category", "mode", "point", "kbps", "payload_kbps", "side_info_kbps", "mel"} <= set(header)


class ConstantImportance(torch.nn.Module):
    def forward(self, features: torch.Tensor, frame_lengths: torch.Tensor | None = None) -> torch.Tensor:
        return torch.full((features.shape[0], features.shape[-1]), 0.5)


def test_bd_rate_of_a_constant_importance_model_is_the_side_information(tmp_path):
    # Importance 0.5 everywhere: VBR at level just under 2n/Nq uses n codebooks on every frame, i.e. the
    # CBR codes plus side information, so the BD-rate is the side information's share of the bitrate.
    torch.manual_seed(0)
    model = VRVQModel(tiny_config()).eval()
    model.importance_subnet = ConstantImportance()
    config = model.config
    sf.write(tmp_path / "a.wav", voiced(1.0), SR)
    levels = [n / (config.n_codebooks * 0.5) - 1e-3 for n in range(1, config.n_codebooks + 1)]
    result = run_sweep(model, folder_sources(tmp_path, category="speech"), levels=levels, metrics=["mel"],
                       progress=False)
    vbr = [row for row in result.rows if row["mode"] == "vbr"]
    cbr = [row for row in result.rows if row["mode"] == "cbr"]
    assert [row["mean_codebooks"] for row in vbr] == [1.0, 2.0, 3.0, 4.0]
    assert [row["mel"] for row in vbr] == [row["mel"] for row in cbr]  # the same codes decode the same
    entry = summarize(result)["bd_rate"][0]
    # VBR at total kbps (n*bits + side) vs CBR at payload kbps (n*bits): the ratio falls with n; its
    # log-mean over the quality range lies strictly between the extremes.
    ratios = [(n * config.bits_per_code + config.side_info_bits) / (n * config.bits_per_code) for n in range(1, 5)]
    assert (min(ratios) - 1) * 100 < entry["bd_rate_percent"] < (max(ratios) - 1) * 100


def test_figures_are_written(evaluation):
    _, result, _, written, output = evaluation
    pngs = {p.name: p for p in written if p.suffix == ".png"}
    assert {f"rd_{m}.png" for m in result.metrics} | {"codebooks_speech.png", "codebooks_music.png"} == set(pngs)
    for path in pngs.values():
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, (path, len(data))


def test_rate_mismatch_is_an_error_unless_resampling(tmp_path):
    sf.write(tmp_path / "low.wav", voiced(1.0, sampling_rate=8000), 8000)
    model = _model()
    with pytest.raises(SamplingRateMismatchError, match="8000 Hz but the model expects 16000 Hz"):
        run_sweep(model, folder_sources(tmp_path), levels=(1.0,), n_quantizers=(), metrics=["l1"], progress=False)
    result = run_sweep(model, folder_sources(tmp_path), levels=(1.0,), n_quantizers=(2,), metrics=["l1"],
                       resample=True, progress=False)
    assert len(result.rows) == 2 and result.rows[0]["seconds"] == pytest.approx(1.0)


def test_empty_and_unreadable_sets_are_errors(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match="no clips to evaluate"):
        run_sweep(model, folder_sources(tmp_path), progress=False)
    (tmp_path / "bad.wav").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="bad.wav"), pytest.raises(ValueError, match="no clip could be read"):
        run_sweep(model, folder_sources(tmp_path), levels=(1.0,), metrics=["l1"], progress=False)
    with pytest.raises(ValueError, match="not a directory"):
        folder_sources(tmp_path / "missing")
    with pytest.raises(ValueError, match="CBR codebook counts"):
        run_sweep(model, folder_sources(tmp_path), n_quantizers=(0,), progress=False)
    with pytest.raises(ValueError, match="unknown metrics"):
        run_sweep(model, folder_sources(tmp_path), metrics=["psnr"], progress=False)


def test_dataset_source_with_a_category_column():
    datasets = pytest.importorskip("datasets")
    items = [
        {"audio": {"array": voiced(0.5, seed=i), "sampling_rate": SR}, "kind": kind}
        for i, kind in enumerate(["speech", "music", "speech"])
    ]
    sources = dataset_sources(datasets.Dataset.from_list(items), audio_column="audio", category_column="kind")
    assert [s.category for s in sources] == ["speech", "music", "speech"]
    result = run_sweep(_model(), sources, levels=(0.5,), n_quantizers=(1,), metrics=["l1"], max_clips=1,
                       progress=False)
    assert sorted({row["clip"] for row in result.rows}) == ["dataset[0]", "dataset[1]"]  # 1 per category
    with pytest.raises(ValueError, match="no column"):
        dataset_sources(datasets.Dataset.from_list(items), audio_column="sound")


def _saved_model_and_clip(tmp_path: Path) -> VRVQModel:
    """A seeded tiny model saved in tmp_path/model, and one second of speech-like audio in tmp_path/data."""
    torch.manual_seed(0)
    model = VRVQModel(tiny_config()).eval()
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "data").mkdir()
    sf.write(tmp_path / "data" / "clip.wav", voiced(1.0), SR)
    return model


def test_command_line(tmp_path):
    cli = load_script("evaluate")
    _saved_model_and_clip(tmp_path)
    code = cli.main([
        "--model", str(tmp_path / "model"), "--data-dir", str(tmp_path / "data"), "--category", "speech",
        "--levels", "0.5,2", "--cbr", "1,4", "--metrics", "mel,sisdr", "--no-figures",
        "--output-dir", str(tmp_path / "out"),
    ])
    assert code == 0
    rows = json.loads((tmp_path / "out" / "rows.json").read_text())
    assert [row["point"] for row in rows] == ["l=0.5", "l=2", "n=1", "n=4"]
    assert "| speech |" in (tmp_path / "out" / "summary.md").read_text()


def test_visqol_runs_on_the_clip_subset_in_the_category_mode(tmp_path):
    for i in range(2):
        sf.write(tmp_path / f"s{i}.wav", voiced(1.0, seed=i), SR)
    result = run_sweep(_model(), folder_sources(tmp_path, category="speech"), levels=(1.0,), n_quantizers=(4,),
                       metrics=["visqol"], visqol_max_clips=1, progress=False)
    by_clip = {row["clip"]: row for row in result.rows if row["mode"] == "vbr"}
    assert 1.0 <= by_clip["s0.wav"]["visqol"] <= 5.0 and by_clip["s0.wav"]["visqol_mode"] == "speech"
    assert by_clip["s1.wav"]["visqol"] is None and by_clip["s1.wav"]["visqol_mode"] is None


def test_max_clips_counts_readable_clips_per_category(tmp_path):
    root = _write_corpus(tmp_path)  # music/broken.wav sorts before music/m0.flac
    with pytest.warns(UserWarning, match="broken.wav"):
        result = run_sweep(_model(), folder_sources(root), levels=(1.0,), n_quantizers=(1,), metrics=["l1"],
                           max_clips=1, progress=False)
    assert result.clips == ["music/m0.flac", "speech/s0.wav"] and result.n_clips == 2
    with pytest.raises(ValueError, match="max_clips"):
        run_sweep(_model(), folder_sources(root), max_clips=0, progress=False)


@pytest.mark.slow  # two spawned workers import torch and transformers: ~10-50 s on shared cores
def test_metric_workers_give_the_same_numbers(tmp_path):
    sf.write(tmp_path / "s.wav", voiced(1.0), SR)
    kwargs = dict(levels=(0.5, 2.0), n_quantizers=(1,), metrics=["sisdr", "pesq", "stoi"], progress=False)
    serial = run_sweep(_model(), folder_sources(tmp_path, category="speech"), **kwargs)
    parallel = run_sweep(_model(), folder_sources(tmp_path, category="speech"), metric_workers=2, **kwargs)
    assert serial.rows == parallel.rows
    assert list(serial.rows[0])[-3:] == ["sisdr", "pesq", "stoi"]  # metric columns in the asked order


def test_bd_rate_flags_a_curve_whose_quality_falls_as_the_rate_rises():
    # CBR mel gets worse from 3 to 4 codebooks (as a weakly trained model's can); VBR is monotone.
    def row(mode, point, kbps, payload, mel, level=None, n=None):
        return {"clip": "a", "category": "speech", "mode": mode, "point": point, "level": level,
                "n_quantizers": n, "kbps": kbps, "payload_kbps": payload, "side_info_kbps": kbps - payload,
                "mean_codebooks": payload / 0.75, "mel": mel}

    rows = [row("vbr", f"l={lv:g}", k, k - 0.225, m, level=lv) for lv, k, m in ((0.5, 1.1, 2.5), (1.0, 1.6, 2.3), (2.0, 2.3, 2.2))]
    rows += [row("cbr", f"n={n}", 0.75 * n + 0.225, 0.75 * n, m, n=n) for n, m in ((1, 2.7), (2, 2.4), (3, 2.25), (4, 2.3))]
    result = SweepResult(rows=rows, n_clips=1, metrics=("mel",), levels=(0.5, 1.0, 2.0), n_quantizers=(1, 2, 3, 4))
    summary = summarize(result)
    (entry,) = summary["bd_rate"]
    assert entry["bd_rate_percent"] is not None and entry["non_monotone"] == ["cbr"]
    markdown = summary_markdown(summary, result)
    assert "% †" in markdown and "speech/mel (CBR)" in markdown

    rows[-1]["mel"] = 2.2  # now monotone: no mark
    summary = summarize(result)
    assert summary["bd_rate"][0]["non_monotone"] == [] and "†" not in summary_markdown(summary, result)


def test_summary_table_shows_how_many_clips_a_metric_was_averaged_over():
    # two clips; ViSQOL measured on the first only (a subset, or a clip it could not score): its cell says so
    def row(clip, mode, point, kbps, mel, visqol, level=None, n=None):
        return {"clip": clip, "category": "speech", "mode": mode, "point": point, "level": level, "n_quantizers": n,
                "kbps": kbps, "payload_kbps": kbps - 0.225 * (mode == "vbr"), "side_info_kbps": 0.225 * (mode == "vbr"),
                "mean_codebooks": 1.0, "mel": mel, "visqol": visqol}

    rows = []
    for clip, visqol in (("a", 3.0), ("b", float("nan"))):
        rows += [row(clip, "vbr", f"l={lv:g}", k, m, visqol, level=lv) for lv, k, m in ((0.5, 1.1, 2.5), (1.0, 1.6, 2.3))]
        rows += [row(clip, "cbr", f"n={n}", 0.75 * n, m, visqol, n=n) for n, m in ((1, 2.7), (2, 2.4))]
    result = SweepResult(rows=rows, n_clips=2, metrics=("mel", "visqol"), levels=(0.5, 1.0), n_quantizers=(1, 2))
    markdown = summary_markdown(summarize(result), result)
    assert "| VBR | l=0.5 | 2 | 1.100 | 0.875 | 1.00 | 2.500 | 3.000 (1) |" in markdown
    assert "| CBR | n=2 | 2 | 1.500 | 1.500 | 1.00 | 2.400 | 3.000 (1) |" in markdown


def test_entropy_option_measures_the_files_the_cli_writes(tmp_path):
    from vrvq_hf.bitstream import HEADER_SIZE
    from vrvq_hf.cli import main as vrvq_main
    from vrvq_hf.entropy import estimate_tables

    cli = load_script("evaluate")
    model = _saved_model_and_clip(tmp_path)
    arguments = [
        "--model", str(tmp_path / "model"), "--data-dir", str(tmp_path / "data"), "--category", "speech",
        "--levels", "0.5,2", "--cbr", "1,4", "--metrics", "mel", "--no-figures", "--entropy",
        "--output-dir", str(tmp_path / "out"),
    ]
    with pytest.raises(ValueError, match="no code_tables.safetensors"):
        cli.main(arguments)

    training_audio = torch.from_numpy(voiced(2.0, seed=3)).float().view(1, 1, -1)
    with torch.no_grad():
        encoded = [model.encode(training_audio, level=level) for level in (0.5, 1.0, 2.0, 4.0)]
    estimate_tables([(e.audio_codes, e.num_codebooks) for e in encoded],
                    codebook_size=model.config.codebook_size).save(tmp_path / "model")
    assert cli.main(arguments) == 0
    rows = {row["point"]: row for row in json.loads((tmp_path / "out" / "rows.json").read_text())}
    for row in rows.values():  # never above the fixed-length file (plus its last byte's padding)
        assert 0 < row["coded_kbps"] <= row["kbps"] + 8 / 1000 / row["seconds"] + 1e-9
    # coded_kbps is the payload of the very file `vrvq encode --entropy` writes at that point.
    assert vrvq_main(["encode", str(tmp_path / "data" / "clip.wav"), str(tmp_path / "clip.vrvq"), "--model",
                      str(tmp_path / "model"), "--level", "2", "--entropy"]) == 0
    payload_bits = ((tmp_path / "clip.vrvq").stat().st_size - HEADER_SIZE) * 8
    assert rows["l=2"]["coded_kbps"] == pytest.approx(payload_bits / rows["l=2"]["seconds"] / 1000)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [e["metric"] for e in summary["bd_rate_coded"]] == ["mel"]
    for row in rows.values():  # the codes alone never cost more than codes and counts together
        assert 0 < row["coded_codes_kbps"] <= row["coded_kbps"] + 1e-9
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert "### With entropy coding" in markdown and "coded kbps" in markdown


def test_a_baseline_model_is_measured_at_the_cbr_counts_on_the_same_clips(tmp_path):
    root = tmp_path / "data"
    (root / "speech").mkdir(parents=True)
    for i in range(2):
        sf.write(root / "speech" / f"s{i}.wav", voiced(1.0, seed=i), SR)
    model = _model()
    counts = (1, 2, 4)
    # The model itself as its own baseline: the baseline rows are its CBR rows, and so is the BD-rate.
    twin = copy.deepcopy(model)
    result, summary, written = run_evaluation(
        model, folder_sources(root), tmp_path / "same", levels=LEVELS, n_quantizers=counts, metrics=["mel", "sisdr"],
        baseline=twin, progress=False,
    )
    assert result.baseline
    rows = {(r["clip"], r["mode"], r["point"]): r for r in result.rows}
    for (clip, mode, point), row in rows.items():
        if mode == "baseline":
            assert row["mel"] == rows[(clip, "cbr", point)]["mel"] and row["kbps"] == rows[(clip, "cbr", point)]["kbps"]
    assert sum(mode == "baseline" for _, mode, _ in rows) == 2 * len(counts)
    for same, own in zip(summary["bd_rate_baseline"], summary["bd_rate"]):
        assert same["bd_rate_percent"] == pytest.approx(own["bd_rate_percent"])
    markdown = (tmp_path / "same" / "summary.md").read_text()
    assert "## BD-rate of VBR against the baseline" in markdown and "| BASELINE | n=2 |" in markdown
    assert any(p.name == "rd_mel.png" for p in written)

    # A constant-bitrate model of its own: other numbers, CBR points only.
    torch.manual_seed(1)
    cbr = VRVQModel(tiny_config(use_importance_subnet=False)).eval()
    result = run_sweep(model, folder_sources(root), levels=LEVELS, n_quantizers=counts, metrics=["mel"],
                       baseline=cbr, progress=False)
    baseline_rows = [r for r in result.rows if r["mode"] == "baseline"]
    assert [r["mean_codebooks"] for r in baseline_rows] == [1.0, 2.0, 4.0] * 2
    cbr_rows = [r for r in result.rows if r["mode"] == "cbr"]
    assert [r["mel"] for r in baseline_rows] != [r["mel"] for r in cbr_rows]
    (entry,) = summarize(result)["bd_rate_baseline"]  # two random models: a value, or why there is none
    assert entry["category"] == "speech" and (entry["bd_rate_percent"] is not None or entry["error"])


def test_a_baseline_must_code_the_same_audio(tmp_path):
    sf.write(tmp_path / "a.wav", voiced(1.0), SR)
    sources = folder_sources(tmp_path, category="speech")
    model = _model()
    other_rate = VRVQModel(tiny_config(sampling_rate=24000, use_importance_subnet=False))
    with pytest.raises(ValueError, match="the baseline codes 24000 Hz audio"):
        run_sweep(model, sources, n_quantizers=(1, 2), metrics=["mel"], baseline=other_rate, progress=False)
    fewer = VRVQModel(tiny_config(n_codebooks=2, use_importance_subnet=False))
    with pytest.raises(ValueError, match=r"the baseline has 2 codebooks; CBR counts \[4\]"):
        run_sweep(model, sources, n_quantizers=(1, 4), metrics=["mel"], baseline=fewer, progress=False)
    with pytest.raises(ValueError, match="code tables for both the model and the baseline"):
        run_sweep(model, sources, n_quantizers=(1, 2), metrics=["mel"], baseline=fewer, entropy_tables=object(),
                  progress=False)


def test_command_line_baseline_with_entropy_coding(tmp_path):
    from vrvq_hf.entropy import estimate_tables

    cli = load_script("evaluate")
    model = _saved_model_and_clip(tmp_path)
    torch.manual_seed(2)
    VRVQModel(tiny_config(use_importance_subnet=False)).save_pretrained(tmp_path / "cbr")
    arguments = [
        "--model", str(tmp_path / "model"), "--data-dir", str(tmp_path / "data"), "--category", "speech",
        "--levels", "0.5,2", "--cbr", "1,2,4", "--metrics", "mel", "--no-figures", "--entropy",
        "--baseline", str(tmp_path / "cbr"), "--opus", "8", "--output-dir", str(tmp_path / "out"),
    ]
    audio = torch.from_numpy(voiced(2.0, seed=3)).float().view(1, 1, -1)
    with torch.no_grad():
        encoded = model.encode(audio, level=1.0)
    estimate_tables([(encoded.audio_codes, encoded.num_codebooks)], codebook_size=16).save(tmp_path / "model")
    with pytest.raises(ValueError, match=r"cbr has no code_tables.safetensors"):
        cli.main(arguments)  # the baseline's coded size needs its own tables
    cbr = VRVQModel.from_pretrained(tmp_path / "cbr")
    with torch.no_grad():
        encoded = cbr.encode(audio, n_quantizers=4)
    estimate_tables([(encoded.audio_codes, encoded.num_codebooks)], codebook_size=16).save(tmp_path / "cbr")
    assert cli.main(arguments) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [e["metric"] for e in summary["bd_rate_baseline"]] == [e["metric"] for e in summary["bd_rate_baseline_coded"]] == ["mel"]
    rows = json.loads((tmp_path / "out" / "rows.json").read_text())
    assert [r["point"] for r in rows if r["mode"] == "baseline"] == ["n=1", "n=2", "n=4"]
    assert all(r["coded_codes_kbps"] > 0 for r in rows if r["mode"] == "baseline")
    (opus,) = [r for r in rows if r["mode"] == "opus"]  # already entropy coded: its coded rate is its rate
    assert opus["point"] == "8k" and opus["coded_kbps"] == opus["coded_codes_kbps"] == opus["kbps"]
    assert [e["metric"] for e in summary["bd_rate_opus_coded"]] == ["mel"]


def test_opus_anchor_round_trip():
    from vrvq_hf.evaluation import opus_round_trip

    audio = voiced(1.5).astype(np.float32)
    results = {kbps: opus_round_trip(audio, SR, kbps) for kbps in (6, 12, 48)}
    for kbps, (decoded, used) in results.items():
        assert decoded.shape == audio.shape and decoded.dtype == np.float32
        assert 0.5 * kbps < used < 1.3 * kbps  # the packets' rate, near the target
    used = [results[k][1] for k in (6, 12, 48)]
    assert used == sorted(used)
    mels = [metrics.mel_distance(results[k][0], audio, SR) for k in (6, 12, 48)]
    assert mels == sorted(mels, reverse=True)
    assert metrics.si_sdr(results[48][0], audio, SR) > 10  # decoded in step with the input, not shifted


def test_opus_anchor_errors(monkeypatch):
    from vrvq_hf.evaluation import OpusUnavailableError, anchors

    audio = voiced(0.5).astype(np.float32)
    with pytest.raises(ValueError, match="6 to 256 kbps, got 3"):
        anchors.opus_round_trip(audio, SR, 3)
    with pytest.raises(ValueError, match=r"mono audio of shape \(samples,\)"):
        anchors.opus_round_trip(np.stack([audio, audio]), SR, 8)
    anchors.opus_available.cache_clear()
    monkeypatch.setattr(anchors.shutil, "which", lambda name: None)
    try:
        with pytest.raises(OpusUnavailableError, match="needs the ffmpeg and ffprobe"):
            anchors.opus_round_trip(audio, SR, 8)
    finally:
        anchors.opus_available.cache_clear()


def test_sweep_with_the_opus_anchor(tmp_path):
    sf.write(tmp_path / "a.wav", voiced(1.0), SR)
    model = _model()
    result, summary, written = run_evaluation(
        model, folder_sources(tmp_path, category="speech"), tmp_path / "out", levels=LEVELS, n_quantizers=(1, 4),
        metrics=["mel"], opus_kbps=(6, 16), progress=False, usage_levels=(1.0,),
    )
    opus = [row for row in result.rows if row["mode"] == "opus"]
    assert [row["point"] for row in opus] == ["6k", "16k"] and result.opus_kbps == (6.0, 16.0)
    for row in opus:
        assert row["payload_kbps"] == row["kbps"] and row["side_info_kbps"] == 0 and row["mean_codebooks"] is None
    assert opus[0]["kbps"] < opus[1]["kbps"] and opus[0]["mel"] > opus[1]["mel"]
    assert [e["metric"] for e in summary["bd_rate_opus"]] == ["mel"]
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert "## BD-rate of VBR against Opus" in markdown and "| OPUS | 6k |" in markdown
    assert any(p.name == "rd_mel.png" for p in written)
    with pytest.raises(ValueError, match="Opus target bitrates must be in 6..256 kbps"):
        run_sweep(model, folder_sources(tmp_path), opus_kbps=(4,), metrics=["mel"], progress=False)


# ---------------------------------------------------------------------------------- quantizer geometry
def test_quantizer_geometry_matches_the_prefix_sums_that_encode_sends():
    from vrvq_hf.evaluation import quantizer_geometry

    model = _model()
    clips = [torch.from_numpy(voiced(0.5, seed=s)).float() for s in range(2)]
    geometry = quantizer_geometry(model, clips)
    n_codebooks = model.config.n_codebooks
    assert geometry.frames == sum(math.ceil(c.numel() / model.config.hop_length) for c in clips)
    assert geometry.residual_energy.shape == geometry.cosine.shape == geometry.prefix_error.shape == (n_codebooks,)
    assert geometry.residual_energy[0] == pytest.approx(geometry.latent_energy, rel=1e-6)
    # what is left after stage k is what enters stage k + 1
    assert np.allclose(geometry.residual_energy[1:], geometry.prefix_error[:-1] * geometry.latent_energy, rtol=1e-5)
    assert np.all(np.abs(geometry.cosine) <= 1.0)
    # the prefix error after n stages is the distance of encode's CBR-n latent from the encoder latent
    error, energy = 0.0, 0.0
    with torch.no_grad():
        for clip in clips:
            x = clip[None, None]
            frames = model._frames(x, None)
            latent, _ = model.encoder(frames.waveform)
            quantized = model.encode(x, n_quantizers=2).quantized_representation
            error += (quantized - latent).pow(2).sum().item()
            energy += latent.pow(2).sum().item()
    assert geometry.prefix_error[1] == pytest.approx(error / energy, rel=1e-4)
    with pytest.raises(ValueError, match="no clips"):
        quantizer_geometry(model, [])
    with pytest.raises(ValueError, match="mono waveform"):
        quantizer_geometry(model, [torch.zeros(1, 100)])


def test_quantizer_geometry_command_line(tmp_path, capsys):
    cli = load_script("rvq_geometry")
    root = _write_corpus(tmp_path / "corpus")
    torch.manual_seed(0)
    VRVQModel(tiny_config()).save_pretrained(tmp_path / "model")
    output = tmp_path / "geometry.json"
    assert cli.main([str(tmp_path / "model"), "--data-dir", str(root), "--max-clips", "1", "--output", str(output)]) == 0
    figures = json.loads(output.read_text())["categories"]
    assert sorted(figures) == ["music", "speech"] and figures["speech"]["clips"] == 1
    assert "broken.wav" in capsys.readouterr().err  # the unreadable clip is skipped and named
    assert len(figures["music"]["prefix_error"]) == 4


# ---------------------------------------------------------------------------------- phase/magnitude swap
def test_phase_magnitude_swap_takes_each_half_from_its_own_signal():
    from vrvq_hf.evaluation import phase_magnitude_swap

    reference = torch.from_numpy(voiced(0.5)).double()
    # a sign flip keeps the magnitudes and moves every phase by pi
    reference_phase, reference_magnitude = phase_magnitude_swap(-reference, reference)
    assert torch.allclose(reference_phase, reference, atol=1e-6)
    assert torch.allclose(reference_magnitude, -reference, atol=1e-6)
    # a gain keeps the phase and scales the magnitudes
    reference_phase, reference_magnitude = phase_magnitude_swap(0.5 * reference, reference)
    assert torch.allclose(reference_phase, 0.5 * reference, atol=1e-6)
    assert torch.allclose(reference_magnitude, reference, atol=1e-6)
    with pytest.raises(ValueError, match="equal length"):
        phase_magnitude_swap(reference[:-1], reference)
    with pytest.raises(ValueError, match="n_fft"):
        phase_magnitude_swap(reference[:100], reference[:100])


def test_phase_swap_metrics_measures_the_sweeps_own_output():
    from vrvq_hf.evaluation import phase_swap_metrics
    from vrvq_hf.evaluation.sweep import code_and_decode

    model = _model()
    clips = [torch.from_numpy(voiced(0.5, seed=s)).float() for s in range(2)]
    result = phase_swap_metrics(model, clips, metrics=("mel", "sisdr"), n_quantizers=2, speech=False)
    assert result.clips == 2 and result.n_quantizers == 2
    expected = np.mean([
        metrics.mel_distance(code_and_decode(model, clip[None, None], None, 2)[0], clip.double().numpy(), SR)
        for clip in clips
    ])
    assert result.means["codec"]["mel"] == pytest.approx(expected, rel=1e-6)
    # the reference's magnitudes under the codec's phase are closer in mel than the codec's own output
    assert result.means["reference_magnitude"]["mel"] < result.means["codec"]["mel"]
    assert phase_swap_metrics(model, clips[:1], metrics=("mel",)).n_quantizers == model.config.n_codebooks
    with pytest.raises(ValueError, match="no clips"):
        phase_swap_metrics(model, [], metrics=("mel",))


def test_phase_swap_command_line(tmp_path, capsys):
    cli = load_script("phase_swap")
    root = _write_corpus(tmp_path / "corpus")
    torch.manual_seed(0)
    VRVQModel(tiny_config()).save_pretrained(tmp_path / "model")
    output = tmp_path / "swap.json"
    argv = [str(tmp_path / "model"), "--data-dir", str(root), "--max-clips", "1", "--metrics", "mel,stoi"]
    assert cli.main([*argv, "--output", str(output)]) == 0
    figures = json.loads(output.read_text())["categories"]
    assert sorted(figures) == ["music", "speech"]
    assert sorted(figures["speech"]["means"]["reference_phase"]) == ["mel", "stoi"]
    assert sorted(figures["music"]["means"]["codec"]) == ["mel"]  # STOI is a speech metric
    assert "broken.wav" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown"):
        cli.main([*argv[:-1], "bogus"])
    with pytest.raises(SystemExit, match="no readable clips"):
        cli.main([*argv, "--category", "general"])
    with pytest.raises(SystemExit, match="--n-quantizers must be in 1..4"):
        cli.main([*argv, "--n-quantizers", "9"])


def test_pause_fraction_counts_quiet_frames():
    script = load_script("prepare_pause_speech")
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(SR) / SR)
    quiet = np.full(SR // 4, 1e-4)  # -80 dBFS: far below the tone's level
    audio = np.concatenate([tone, quiet]).astype(np.float32)
    assert script.pause_fraction(audio, SR) == pytest.approx(0.2, abs=0.02)  # 0.25 s of 1.25 s
    assert script.pause_fraction(tone.astype(np.float32), SR) == 0.0
    assert script.scene_of("pkg/usr/share/sound/airplane/nl/let-m-oko.ogg") == "airplane"
    with pytest.raises(ValueError, match="level"):
        script.scene_of("x.ogg")


def test_prepare_pause_speech_joins_lines_of_one_level(tmp_path, capsys):
    script = load_script("prepare_pause_speech")
    split = tmp_path / "validation"
    (split / "pkg").mkdir(parents=True)
    rows = ["file_name,group,origin"]
    for level, count in (("cave", 3), ("attic", 1)):  # attic's one line cannot fill a clip
        for index in range(count):
            name = f"pkg/{level}-{index}.flac"
            tone = 0.3 * np.sin(2 * np.pi * (200 + 50 * index) * np.arange(4 * SR // 5) / SR)
            line = np.concatenate([np.zeros(SR // 5), tone, np.zeros(SR // 5)])  # 0.2 s of silence each side
            sf.write(split / name, line.astype(np.float32), SR)
            rows.append(f"{name},fillets-nl-m,pkg/sound/{level}/nl/{level}-{index}.ogg")
    rows.append("pkg/other.flac,tuxpaint-el,pkg/sound/other/el/other.ogg")  # another group: not used
    (split / "metadata.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert script.main([str(split), "--output", str(out), "--seconds", "2.5"]) == 0
    clips = sorted((out / "speech_pauses").iterdir())
    assert [p.name for p in clips] == ["cave.wav"]
    audio, rate = sf.read(clips[0])
    assert rate == SR and len(audio) == round(2.5 * SR)  # three 1.2 s lines, cut at 2.5 s
    with open(out / "manifest.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    # 0.9 s of the 2.5 s are the lines' silent edges (0.2 + 0.2 + 0.2 + 0.2 + 0.1)
    assert row["lines"] == "3" and float(row["pause_fraction"]) == pytest.approx(0.36, abs=0.01)
    assert float(row["below_-60dBFS"]) == pytest.approx(0.36, abs=0.01)
    assert "wrote 1 clips" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no lines"):
        script.main([str(split), "--output", str(out), "--groups", "nobody"])
    with pytest.raises(SystemExit, match="metadata.csv"):
        script.main([str(tmp_path), "--output", str(out)])


def test_readable_clips_takes_the_first_readable_per_category(tmp_path):
    root = _write_corpus(tmp_path / "corpus")
    sources = folder_sources(root)
    skipped = []
    clips = list(readable_clips(sources, SR, clip_seconds=0.5, max_clips=1, on_skip=lambda s, e: skipped.append(s.name)))
    # music/broken.wav comes first and is unreadable: it is reported and music's one clip is the next file
    assert skipped == ["music/broken.wav"]
    assert [(c.category, c.name) for c in clips] == [("music", "music/m0.flac"), ("speech", "speech/s0.wav")]
    assert all(len(c.audio) == SR // 2 for c in clips)
    with pytest.raises(SamplingRateMismatchError):
        list(readable_clips(sources, SR * 2))
    with pytest.raises(ValueError, match="max_clips"):
        list(readable_clips(sources, SR, max_clips=0))
