"""The live demo end to end in a real browser: Debian's headless Chromium, driven by Selenium
through /usr/bin/chromedriver (nothing is downloaded), with a fake microphone that plays the demo
speech, talks to `python -m jaxtalk.serve`'s app over real sockets.

Frames must arrive and be shown, one per 640 samples the server received, and the page's download
must be an H.264 + AAC mp4 of them. The microphone's start and stop are not sample exact, so the
frame count is checked exactly against the samples the server reports, and only loosely against
the wall-clock time the microphone was on. The acting controls the page offers (the model's
emotions, from the server) must reach the server in the start message.

JAXTALK_SERVE_SCREENSHOT=docs/serve_page.png serves the bundled demo model instead of the tiny
random one (slower: it compiles for a minute) and saves a screenshot of the page mid-stream there.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait
from test_serve import check_video, download, get, serving, speech, warm_model
from tiny_configs import tiny_config

from jaxtalk.bench.model import random_params
from jaxtalk.demo import DEMO_BUNDLE, DEMO_SPEECH
from jaxtalk.inference.generate import TalkingHead
from jaxtalk.media.audio_io import load_audio
from jaxtalk.serve.app import create_app
from jaxtalk.timebase import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOT = os.environ.get("JAXTALK_SERVE_SCREENSHOT")

pytestmark = pytest.mark.skipif(
  not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
  reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)",
)


@pytest.fixture(scope="module")
def host():
  if SCREENSHOT:
    model = TalkingHead.load(DEMO_BUNDLE)
  else:
    config = tiny_config()
    model = TalkingHead(config, random_params(config))
  with serving(create_app(warm_model(model))) as host:
    yield host


@pytest.fixture(scope="module")
def browser():
  options = webdriver.ChromeOptions()
  options.binary_location = str(CHROMIUM)
  for argument in [
    "--headless=new",
    "--no-sandbox",  # CI containers run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--window-size=1100,900",
    # The microphone: allowed without asking, and fed from the demo speech. Chromium loops the
    # file (FILE%noloop would play it once, then silence), so it is speech however long we listen.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    f"--use-file-for-fake-audio-capture={DEMO_SPEECH}",
    "--autoplay-policy=no-user-gesture-required",
  ]:
    options.add_argument(argument)
  options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
  driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
  try:
    yield driver
  finally:
    driver.quit()


def text(driver, element_id) -> str:
  return driver.find_element("id", element_id).text


def wait(driver, condition, seconds=120):
  return WebDriverWait(driver, seconds, poll_frequency=0.05).until(lambda _: condition())


def finished_video(driver, host, tmp_path) -> tuple[int, int, Path]:
  """Waits for the session's download link; returns (frames, samples, the downloaded mp4)."""
  wait(driver, lambda: driver.find_element("id", "download").is_displayed())
  link = driver.find_element("id", "download")
  frames, samples = int(link.get_attribute("data-frames")), int(link.get_attribute("data-samples"))
  url = link.get_attribute("href").removeprefix(f"http://{host}")
  return frames, samples, download(host, url, tmp_path, f"{frames}.mp4")


def no_page_errors(driver):
  errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
  assert not errors, errors


def test_the_microphone_drives_the_talking_head_live(host, browser, tmp_path):
  browser.get(f"http://{host}/")
  browser.find_element("id", "mic-button").click()
  wait(browser, lambda: text(browser, "status").startswith("listening"))
  listening = time.monotonic()
  wait(browser, lambda: int(text(browser, "frames-received")) >= 60)  # 2.4 s of speech
  assert text(browser, "lookahead").endswith(" ms") and int(text(browser, "frame-counter")) >= 0
  if SCREENSHOT:
    browser.save_screenshot(SCREENSHOT)
  browser.find_element("id", "mic-button").click()
  stopped = time.monotonic()

  frames, samples, video = finished_video(browser, host, tmp_path)
  assert frames == samples // SAMPLES_PER_FRAME
  # Every frame made arrived and was shown, the last one last.
  assert int(text(browser, "frames-received")) == frames
  assert int(text(browser, "frame-counter")) == frames - 1
  # The microphone was on from about when the page said so to about the click: its blocks are
  # 80 ms, and Selenium sees the page through polling and round trips.
  assert abs(samples / SAMPLE_RATE - (stopped - listening)) < 0.5
  check_video(video, frames, samples)
  heard = load_audio(str(video))
  assert np.sqrt(np.mean(heard**2)) > 0.02  # the speech, not silence
  no_page_errors(browser)


def test_an_audio_file_plays_through_at_one_frame_per_40ms(host, browser, tmp_path):
  clip = tmp_path / "clip.wav"
  soundfile.write(clip, speech(2 * SAMPLE_RATE + 100), SAMPLE_RATE, subtype="FLOAT")
  browser.get(f"http://{host}/")
  browser.find_element("id", "audio-file").send_keys(str(clip))
  browser.find_element("id", "file-button").click()
  frames, samples, video = finished_video(browser, host, tmp_path)
  # Decoded at its own rate, the file reaches the server sample for sample.
  assert (samples, frames) == (2 * SAMPLE_RATE + 100, 2 * FPS)
  check_video(video, frames, samples)
  no_page_errors(browser)


# Keeps the page's text messages on the socket, for the test to read.
RECORD_SENT = """
const send = WebSocket.prototype.send;
window.sentText = [];
WebSocket.prototype.send = function (message) {
  if (typeof message === "string") window.sentText.push(JSON.parse(message));
  return send.call(this, message);
};
"""


def test_the_acting_controls_go_into_the_start_message(host, browser, tmp_path):
  clip = tmp_path / "clip.wav"
  soundfile.write(clip, speech(SAMPLE_RATE), SAMPLE_RATE, subtype="FLOAT")
  browser.get(f"http://{host}/")
  browser.execute_script(RECORD_SENT)
  # The emotions and the model's guidance come from the server.
  controls = json.loads(get(host, "/controls")[1])
  labels = lambda: [o.text for o in browser.find_elements("css selector", "#emotion option")]
  wait(browser, lambda: len(labels()) > 1)
  assert labels() == ["auto (from the voice)", *controls["emotions"]]
  guidance = browser.find_element("id", "audio-guidance").get_attribute("value")
  assert float(guidance) == controls["audio_guidance"]

  # A refused control is the page's error, and no session.
  browser.execute_script('document.getElementById("audio-guidance").value = "-1"')
  browser.find_element("id", "audio-file").send_keys(str(clip))
  browser.find_element("id", "file-button").click()
  wait(browser, lambda: '"audio_guidance" must be a number' in text(browser, "status"))

  # A still, happy face without blinks. The guidance stays the model's: no compiling.
  browser.execute_script(
    """
    const set = (id, value) => {
      const input = document.getElementById(id);
      input.value = value;
      input.dispatchEvent(new Event("input"));
    };
    set("audio-guidance", arguments[0]);
    set("emotion", "happy");
    set("intensity", "0.6");
    document.getElementById("pose-auto").click();
    set("pose-amplitude", "0");
    document.getElementById("blink-auto").click();
    set("blink-rate", "0");
    """,
    guidance,
  )
  assert text(browser, "pose-amplitude-value") == "0" and text(browser, "blink-rate-value") == "0"
  browser.find_element("id", "file-button").click()
  frames, samples, _ = finished_video(browser, host, tmp_path)
  assert (frames, samples) == (FPS, SAMPLE_RATE)
  starts = [m for m in browser.execute_script("return window.sentText") if m["type"] == "start"]
  assert starts[-1] == {
    "type": "start",
    "portrait": "demo",
    "seed": 0,
    "emotion": "happy",
    "intensity": 0.6,
    "pose_amplitude": 0,
    "blink_rate": 0,
    "audio_guidance": controls["audio_guidance"],
    "emotion_guidance": controls["emotion_guidance"],
  }
  no_page_errors(browser)
