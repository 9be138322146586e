"""The Space in a real headless Chromium (playwright, the system's /usr/bin/chromium): upload a clip, press the
button, see the players and the bitrate; a silent clip gets a message on the page. Screenshots go to
test-artifacts/ (git-ignored)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from vrvq_hf import VRVQFeatureExtractor, VRVQModel

from .conftest import speech_like, tiny_config
from .test_space import load_app

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)),
                       reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the python package playwright is not installed")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app around a tiny model, served on 127.0.0.1; yields (app module, demo, clip folder)."""
    folder = tmp_path_factory.mktemp("browser")
    torch.manual_seed(0)
    model = VRVQModel(tiny_config())
    model.save_pretrained(folder / "model")
    VRVQFeatureExtractor.from_model_config(model.config).save_pretrained(folder / "model")
    app = load_app()
    demo = app.build_demo(app.load_codec(str(folder / "model")), examples_dir=folder / "examples")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield app, demo, folder
    demo.close()


@pytest.fixture(scope="module")
def page(served):
    _, demo, _ = served
    with sync_api.sync_playwright() as playwright:
        # playwright gives the browser a fresh temporary profile itself (it refuses --user-data-dir here)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(demo.local_url)
        page.wait_for_selector("#run")
        yield page
        browser.close()


def _wait_for_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([sel, text]) => { const e = document.querySelector(sel); return e && e.innerText.includes(text); }",
        arg=[selector, text],
    )


def _duration(page, player: str, timeout_s: float = 30.0) -> float:
    """Duration of the audio in a player's waveform (inside wavesurfer's shadow DOM, which locators pierce)."""
    audio = page.locator(f"{player} [data-testid^='waveform'] audio")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if audio.count():
            duration = audio.first.evaluate("a => a.duration")
            if duration and duration == duration:  # not NaN: metadata loaded
                return float(duration)
        page.wait_for_timeout(200)
    raise AssertionError(f"no audio loaded in the {player} player after {timeout_s:g} s")


def test_upload_encode_and_see_the_result(served, page):
    _, _, folder = served
    clip = folder / "speech.wav"
    sf.write(clip, speech_like(1.0)[0, 0].numpy(), 16000, subtype="PCM_16")
    page.locator("#input-audio input[type=file]").set_input_files(str(clip))
    page.wait_for_selector("#input-audio audio", state="attached")
    page.click("#run")
    _wait_for_text(page, "#stats", "Counted bitrate")
    stats = page.locator("#stats").inner_text()
    assert "kbps" in stats and ".vrvq file:" in stats and "bytes" in stats
    for player in ("#reconstruction", "#original"):  # each waveform player loaded one second of audio
        assert _duration(page, player) == pytest.approx(1.0, abs=0.01)
    link = page.locator("#reconstruction a[data-testid=download-link]").get_attribute("href")
    assert link.endswith("speech-vrvq.wav")
    assert page.locator("#vrvq-file a[href$='speech.vrvq']").count() == 1  # offered for download
    page.wait_for_function("() => { const i = document.querySelector('#codebooks img'); "
                           "return i && i.complete && i.naturalWidth > 0; }")
    page.wait_for_timeout(500)  # let the waveforms draw
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "space.png"), full_page=True)
    assert (ARTIFACTS / "space.png").stat().st_size > 20_000


def test_mode_switch_shows_its_slider(page):
    assert page.locator("#n-codebooks").is_hidden()
    page.get_by_label("CBR codebooks").check()
    page.wait_for_selector("#n-codebooks", state="visible")
    assert page.locator("#level").is_hidden()
    page.get_by_label("VBR level").check()
    page.wait_for_selector("#level", state="visible")


def test_silent_clip_gets_a_message_not_a_trace(served, page):
    _, _, folder = served
    clip = folder / "silence.wav"
    sf.write(clip, np.zeros(16000, dtype=np.float32), 16000)
    page.locator("#input-audio button[aria-label='Clear']").first.click()
    page.locator("#input-audio input[type=file]").set_input_files(str(clip))
    page.wait_for_selector("#input-audio audio", state="attached")
    page.click("#run")
    _wait_for_text(page, "body", "The clip is silent")  # the error toast
    _wait_for_text(page, "#stats", "Cannot code this input. The clip is silent")  # replaces the old result
    assert "Counted bitrate" not in page.locator("#stats").inner_text()
    assert page.locator("#reconstruction [data-testid^='waveform'] audio").count() == 0
    assert "Traceback" not in page.locator("body").inner_text()
    page.screenshot(path=str(ARTIFACTS / "space-error.png"))
