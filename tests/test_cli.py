"""The `vrvq` command line: round trips in subprocesses with a tiny saved model, the rest in-process
through `vrvq_hf.cli.main` (same code, no interpreter start-up per case)."""

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

from vrvq_hf import VRVQFeatureExtractor, VRVQModel, cli
from vrvq_hf.audio_io import load_audio
from vrvq_hf.bitstream import HEADER_SIZE, payload_bits, read_file
from vrvq_hf.entropy import CodeTables

from .conftest import speech_like, tiny_config

RATE = 16000


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_model(folder, seed, tables=False):
    torch.manual_seed(seed)
    config = tiny_config(initializer="scale_preserving")
    model = VRVQModel(config).eval()
    model.save_pretrained(folder)
    VRVQFeatureExtractor.from_model_config(config).save_pretrained(folder)
    if tables:  # code tables from the model's own codes at a few levels
        table = CodeTables.empty(config.n_codebooks, config.codebook_size)
        with torch.inference_mode():
            for level in (0.5, 1.0, 2.0):
                out = model.encode(speech_like(1.0, seed=7), level=level)
                table.add(out.audio_codes, out.num_codebooks)
        table.save(folder)
    return str(folder)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    paths = {
        "model": save_model(root / "model", 0),
        "other": save_model(root / "other", 1),
        "wav": str(root / "in.wav"),
        "stereo": str(root / "stereo.wav"),
        "root": root,
    }
    paths["tables_model"] = str(root / "model_with_tables")
    shutil.copytree(paths["model"], paths["tables_model"])
    save_model(paths["tables_model"], 0, tables=True)
    audio = speech_like(0.6)[0, 0].numpy()
    soundfile.write(paths["wav"], audio, RATE, subtype="FLOAT")
    soundfile.write(paths["stereo"], np.stack([audio, -0.5 * audio], axis=1), 22050, subtype="FLOAT")
    return paths


def run_cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "vrvq_hf.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def call(capsys, *args):
    """main(argv) in-process -> (exit status, stdout, stderr)."""
    try:
        status = cli.main([str(a) for a in args])
    except SystemExit as exit_:  # argparse
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(err, *needles):
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vrvq: error: "), err
    for needle in needles:
        assert needle in lines[0]


def reference_encode(model_dir, path, **mode):
    model = VRVQModel.from_pretrained(model_dir).eval()
    audio = torch.from_numpy(load_audio(path, sampling_rate=RATE))[None, None]
    with torch.inference_mode():
        return model, model.encode(audio, **mode)


# ------------------------------------------------------------------------------------ subprocess runs
def test_encode_info_decode_round_trip(files):
    root = files["root"]
    coded, decoded = root / "a.vrvq", root / "a.wav"
    result = run_cli("encode", files["wav"], coded, "--model", files["model"], "--level", "1.0")
    assert result.returncode == 0, result.stderr
    assert "kbps" in result.stdout

    result = run_cli("info", coded, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    model, reference = reference_encode(files["model"], files["wav"], level=1.0)
    assert info["num_samples"] == int(0.6 * RATE) and info["sampling_rate"] == RATE
    assert info["counted_kbps"] == pytest.approx(float(reference.bitrate_kbps), rel=1e-9)
    # the file size follows from the counted bitrate: header + counted bits rounded up to whole bytes
    stream = read_file(coded)
    bits = payload_bits(stream.num_codebooks, 4, 16)
    assert bits == pytest.approx(info["counted_kbps"] * 1000 * info["coded_duration_s"], abs=1e-6)
    assert info["file_bytes"] == os.path.getsize(coded) == HEADER_SIZE + math.ceil(bits / 8)
    histogram = info["codebook_histogram"]
    assert sum(histogram.values()) == info["num_frames"] == reference.num_codebooks.shape[1]
    assert histogram == {str(n): int((reference.num_codebooks == n).sum()) for n in (1, 2, 3, 4)}
    assert torch.equal(stream.audio_codes, reference.audio_codes[0])

    result = run_cli("decode", coded, decoded, "--model", files["model"])
    assert result.returncode == 0, result.stderr
    audio, rate = soundfile.read(decoded, dtype="float32")
    assert rate == RATE and audio.shape == (int(0.6 * RATE),)
    with torch.inference_mode():
        expected = model.decode(reference.audio_codes, num_codebooks=reference.num_codebooks,
                                padding_mask=reference.padding_mask).audio_values[0, 0].numpy()
    assert np.abs(audio - expected).max() <= 1.5 / 32768  # 16-bit WAV


def test_foreign_model_and_usage_errors_in_subprocesses(files, capsys):
    root = files["root"]
    coded = root / "b.vrvq"
    assert call(capsys, "encode", files["wav"], coded, "--model", files["model"], "--n-quantizers", "2")[0] == 0
    result = run_cli("decode", coded, root / "b.wav", "--model", files["other"])
    assert result.returncode == 1
    assert_one_line_error(result.stderr, "another model")
    assert not (root / "b.wav").exists()

    result = run_cli("encode", files["wav"])  # missing OUT
    assert result.returncode == 2 and "usage:" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------- in-process runs
@pytest.mark.parametrize("target", [13.0, 20.0, 27.5, 100.0])
def test_kbps_never_exceeds_the_target(files, capsys, target):
    coded = files["root"] / f"t{target}.vrvq"
    status, out, err = call(capsys, "encode", files["wav"], coded, "--model", files["model"], "--kbps", target)
    assert status == 0, err
    counted = read_file(coded).bitrate_kbps
    assert counted <= target
    assert counted >= min(target, 36.0) - 2.5  # and comes close: one code more would pass the target
    assert f"target {target:g} kbps" in out


def test_target_below_minimum_is_a_runtime_error(files, capsys):
    status, _, err = call(capsys, "encode", files["wav"], files["root"] / "x.vrvq", "--model", files["model"],
                          "--kbps", "1")
    assert status == 1
    assert_one_line_error(err, "below this model's minimum")


def test_entropy_coding_is_lossless(files, capsys):
    root = files["root"]
    plain, packed = root / "plain.vrvq", root / "packed.vrvq"
    for path, extra in ((plain, []), (packed, ["--entropy"])):
        status, out, err = call(capsys, "encode", files["wav"], path, "--model", files["tables_model"], "--level",
                                "0.8", *extra)
        assert status == 0, err
    assert "entropy" in out
    tables = CodeTables.load(files["tables_model"])
    a, b = read_file(plain), read_file(packed, entropy_tables=tables)
    assert b.entropy_coded and not a.entropy_coded
    assert os.path.getsize(packed) < os.path.getsize(plain)
    assert torch.equal(a.audio_codes, b.audio_codes) and torch.equal(a.num_codebooks, b.num_codebooks)

    # info: the header without tables, everything with them
    status, out, _ = call(capsys, "info", packed, "--json")
    assert status == 0 and json.loads(out)["counted_kbps"] is None and json.loads(out)["entropy_coded"]
    status, out, _ = call(capsys, "info", packed, "--json", "--tables", files["tables_model"])
    assert json.loads(out)["counted_kbps"] == pytest.approx(a.bitrate_kbps)
    status, out, _ = call(capsys, "info", packed)
    assert status == 0 and "--tables" in out

    wavs = []
    for path in (plain, packed):
        wav = str(path) + ".wav"
        status, _, err = call(capsys, "decode", path, wav, "--model", files["tables_model"])
        assert status == 0, err
        wavs.append(soundfile.read(wav)[0])
    np.testing.assert_array_equal(*wavs)

    # a model folder without tables: a clear message for encoding and for decoding
    status, _, err = call(capsys, "encode", files["wav"], root / "y.vrvq", "--model", files["model"], "--entropy")
    assert status == 1
    assert_one_line_error(err, "code_tables.safetensors", "estimate_code_tables")
    status, _, err = call(capsys, "decode", packed, root / "y.wav", "--model", files["model"])
    assert status == 1
    assert_one_line_error(err, "entropy coded")


def test_reconstruct_prints_figures(files, capsys):
    out_wav = files["root"] / "rec.wav"
    status, out, err = call(capsys, "reconstruct", files["wav"], out_wav, "--model", files["model"], "--level", "1",
                            "--json")
    assert status == 0, err
    result = json.loads(out)
    for key in ("counted_kbps", "mel_distance", "si_sdr_db", "stoi"):
        assert isinstance(result[key], float) and math.isfinite(result[key]), key
    assert 0 <= result["stoi"] <= 1 and result["mel_distance"] > 0
    _, reference = reference_encode(files["model"], files["wav"], level=1.0)
    assert result["counted_kbps"] == pytest.approx(float(reference.bitrate_kbps))
    assert soundfile.info(str(out_wav)).frames == int(0.6 * RATE)

    status, out, err = call(capsys, "reconstruct", files["stereo"], out_wav, "--model", files["model"])
    assert status == 0, err
    assert "down-mixed 2 channels" in err and "resampled 22050 Hz -> 16000 Hz" in err
    for label in ("bitrate", "mel distance", "SI-SDR", "STOI"):
        assert label in out


def test_long_files_go_through_chunks(files, capsys):
    """--max-whole-seconds 0 forces chunked processing: same codes and length as whole-file."""
    root = files["root"]
    whole, chunked = root / "whole.vrvq", root / "chunked.vrvq"
    common = ["--model", files["model"], "--level", "1.3"]
    assert call(capsys, "encode", files["wav"], whole, *common)[0] == 0
    assert call(capsys, "encode", files["wav"], chunked, *common, "--max-whole-seconds", "0",
                "--chunk-seconds", "0.03")[0] == 0
    a, b = read_file(whole), read_file(chunked)
    assert (a.audio_codes == b.audio_codes).float().mean() >= 0.999
    status, _, err = call(capsys, "decode", chunked, root / "chunked.wav", "--model", files["model"],
                          "--max-whole-seconds", "0", "--chunk-seconds", "0.03")
    assert status == 0, err
    assert soundfile.info(str(root / "chunked.wav")).frames == int(0.6 * RATE)


def test_bad_files_are_one_line_errors(files, capsys):
    root = files["root"]
    good = root / "good.vrvq"
    assert call(capsys, "encode", files["wav"], good, "--model", files["model"])[0] == 0
    data = bytearray(good.read_bytes())
    cases = {
        "flipped": (bytes(data[:-5]) + bytes([data[-5] ^ 0x10]) + bytes(data[-4:]), "checksum"),
        "truncated": (bytes(data[:-3]), "truncated"),
        "not_vrvq": (b"RIFF" + bytes(100), "not a VRVQ file"),
    }
    for name, (content, needle) in cases.items():
        path = root / f"{name}.vrvq"
        path.write_bytes(content)
        for command in (["decode", path, root / "bad.wav", "--model", files["model"]], ["info", path]):
            status, _, err = call(capsys, *command)
            assert status == 1, (name, command)
            assert_one_line_error(err, needle)

    status, _, err = call(capsys, "encode", root / "missing.wav", root / "m.vrvq", "--model", files["model"])
    assert status == 1
    assert_one_line_error(err, "missing.wav")
    (root / "junk.wav").write_bytes(b"this is not audio")
    status, _, err = call(capsys, "encode", root / "junk.wav", root / "m.vrvq", "--model", files["model"])
    assert status == 1
    assert_one_line_error(err, "junk.wav")
    status, _, err = call(capsys, "info", root / "missing.vrvq")
    assert status == 1
    assert_one_line_error(err, "missing.vrvq")
    status, _, err = call(capsys, "encode", files["wav"], root / "m.vrvq", "--model", root / "no_such_model")
    assert status == 1
    assert_one_line_error(err, "no_such_model")
    status, _, err = call(capsys, "encode", files["wav"], root / "m.vrvq", "--model", files["model"],
                          "--n-quantizers", "9")
    assert status == 1
    assert_one_line_error(err, "n_quantizers")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["compress", "a.wav", "b.vrvq"],
        ["encode", "a.wav", "b.vrvq", "--level", "1", "--kbps", "6"],
        ["encode", "a.wav", "b.vrvq", "--level", "-1"],
        ["encode", "a.wav", "b.vrvq", "--kbps", "fast"],
        ["encode", "a.wav", "b.vrvq", "--n-quantizers", "0"],
        ["decode", "a.vrvq"],
    ],
)
def test_usage_errors_exit_2(capsys, argv):
    status, _, err = call(capsys, *argv)
    assert status == 2 and "usage:" in err


def test_missing_default_model_is_a_usage_error(files, capsys, monkeypatch):
    import vrvq_hf

    monkeypatch.setattr(vrvq_hf, "DEFAULT_MODEL", str(files["root"] / "no_default_here"))
    status, _, err = call(capsys, "encode", files["wav"], files["root"] / "d.vrvq")
    assert status == 2 and "--model" in err
