"""The page at ``/``, end to end in a real browser (Debian's chromium) against the real server over real HTTP.

Upload a file, watch the queue position and the progress bar, read the transcript, click a word (the audio jumps
there), download the SRT; the page in French for a French browser; the API key asked once on a 401 and sent as
``Authorization: Bearer``. The tiny Parakeet model hears tone bursts, so its words are known exactly; the slow
test does the same with real speech through the embedded Whisper tiny.en.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import srt

from tests.support.audio_fixtures import write_wav
from tests.support.browser import browser_page
from tests.support.gate import Gate
from tests.support.server import running_server, wait_ready
from tests.support.tiny_parakeet import expected_text, render
from wazo_stt.models.catalog import embedded_whisper_path

PIECES = [("▁hello", 0.5), ("▁world", 1.6), ("▁the", 2.6), ("▁cat", 3.3)]
TEXT = expected_text([p for p, _ in PIECES])


@pytest.fixture
def tones(tmp_path) -> Path:
    return write_wav(tmp_path / "greeting.wav", render(PIECES, duration=4.0), 16000)


def _start_on_the_page(page, url: str, audio: Path) -> None:
    page.goto(url)
    page.wait_for_function("document.querySelector('#model').options.length > 0")
    page.set_input_files("#file", str(audio))
    page.click("#go")


def _transcribe_on_the_page(page, url: str, audio: Path) -> None:
    _start_on_the_page(page, url, audio)
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)


def test_upload_progress_transcript_word_click_and_srt(settings, tones, tmp_path):
    # The worker is held until the page has shown the job waiting or running: the tiny model can otherwise finish
    # before the page's first look, and "followed, not just done" below would depend on the machine's speed.
    gate = Gate()
    with running_server(settings, gate.loader) as url, httpx.Client(base_url=url) as client, browser_page() as page:
        wait_ready(client)
        states: list[str] = []
        page.expose_function("recordState", lambda text: states.append(text))
        page.add_init_script(
            "new MutationObserver(() => window.recordState(document.querySelector('#job-state').textContent))"
            ".observe(document, {subtree: true, childList: true, characterData: true});"
        )
        _start_on_the_page(page, url, tones)
        page.wait_for_function(
            "/^(Queued|Transcribing)/.test(document.querySelector('#job-state').textContent)", timeout=30_000
        )
        gate.release.release()
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)

        assert page.input_value("#model") == "parakeet-tdt-0.6b-v3"
        words = page.locator("#transcript .w")
        assert [w.strip() for w in words.all_inner_texts()] == TEXT.split()
        assert any(s.startswith(("Queued", "Transcribing")) for s in states), states  # followed, not just done
        assert page.locator("#progress").evaluate("p => p.value") == 1
        assert "Done" in page.inner_text("#job-state")

        # A click on "world" moves the recording to that word's start (1.6 s in the tiny model's timing).
        word = page.locator("#transcript .w", has_text="world")
        word.click()
        position = page.evaluate("document.querySelector('#audio').currentTime")  # read at once: no time to play
        start = float(word.get_attribute("data-start"))
        assert abs(start - 1.6) < 0.2 and start - 0.05 <= position < start + 1

        with page.expect_download() as download:
            page.click("button.download[data-format=srt]")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.name == "greeting.srt"
        subtitles = list(srt.parse(saved.read_text()))
        assert " ".join(s.content for s in subtitles).split() == TEXT.split()

        # The view refreshes every 3 s: wait for the refresh that follows the job (its text also holds "at most 100").
        page.wait_for_function("/^0 waiting · idle/.test(document.querySelector('#queue-state').textContent)")
        assert re.search(r"^0 waiting · idle", page.inner_text("#queue-state"))


def test_queue_position_is_shown_while_waiting(settings, tones):
    # The one worker is held on another job: the page's job waits at position 1, and the page says so.
    gate = Gate()
    with running_server(settings, gate.loader) as url, httpx.Client(base_url=url) as client, browser_page() as page:
        wait_ready(client)
        first = client.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.wav", tones.read_bytes())},
            data={"user_uuid": "u", "message_id": "first"},
        )
        assert first.status_code == 200
        _start_on_the_page(page, url, tones)
        page.wait_for_function("document.querySelector('#job-state').textContent.includes('position 1')")
        page.wait_for_function("document.querySelector('#queue-state').textContent.startsWith('1 waiting')")
        gate.release.release(2)
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)


def test_the_progress_bar_moves_while_a_long_recording_is_transcribed(settings, tmp_path):
    # Three fixed 20 s chunks; the worker is held once the first is recognised: the bar must show that share.
    pieces = [("▁hello", 5.0), ("▁world", 25.0), ("▁the", 45.0)]
    audio = write_wav(tmp_path / "long.wav", render(pieces, duration=55.0), 16000)
    gate = Gate(after_first_chunk=True)
    with running_server(settings, gate.loader) as url, httpx.Client(base_url=url) as client, browser_page() as page:
        wait_ready(client)
        _start_on_the_page(page, url, audio)
        # "0 %" may show first (the job started, nothing recognised yet); the gate then holds it after one chunk.
        page.wait_for_function("document.querySelector('#progress').value > 0")
        page.wait_for_timeout(600)  # one more poll: the text and the bar come from the same answer
        value = page.locator("#progress").evaluate("p => p.value")
        assert 0 < value < 1
        assert f"{round(value * 100)} %" in page.inner_text("#job-state")
        gate.release.release()
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        assert page.locator("#progress").evaluate("p => p.value") == 1


def test_the_page_speaks_french_to_a_french_browser(settings):
    with running_server(settings) as url, browser_page(locale="fr-FR") as page:
        page.goto(url)
        assert page.inner_text("#go") == "Transcrire"
        assert "Déposez" in page.inner_text("#drop")
        assert page.evaluate("document.documentElement.lang") == "fr"


def test_assets_are_served_by_the_app_without_any_cdn(settings):
    with running_server(settings) as url, httpx.Client(base_url=url) as client:
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        for asset in re.findall(r'(?:src|href)="(/[^"]+)"', page.text):
            assert client.get(asset).status_code == 200, asset
        assert not re.search(r'(?:src|href)="https?://', page.text)


@pytest.mark.slow
def test_real_speech_through_whisper_on_the_page(settings, tmp_path):
    """Real words: espeak-ng speech, the embedded Whisper tiny.en, VAD on. Also what the README's screenshot shows
    (set WAZO_STT_SCREENSHOT=docs/img/page.png to write it)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    audio = tmp_path / "voicemail.wav"
    sentence = "Hello, this is Alice from the accounting team. Please call me back tomorrow morning about the invoice."
    subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(audio), sentence], check=True)
    settings.enable_parakeet = False
    settings.whisper_model_path = embedded_whisper_path()
    settings.whisper_model_id = "whisper-tiny.en"
    settings.enable_vad = True
    with (
        running_server(settings) as url,
        httpx.Client(base_url=url) as client,
        browser_page(viewport={"width": 900, "height": 860}) as page,
    ):
        wait_ready(client, timeout=60)
        _transcribe_on_the_page(page, url, audio)
        words = [w.strip(" ,.").lower() for w in page.locator("#transcript .w").all_inner_texts()]
        assert {"alice", "call", "tomorrow", "invoice"} <= set(words), words

        target = page.locator("#transcript .w", has_text="tomorrow")
        target.click()
        position = page.evaluate("document.querySelector('#audio').currentTime")
        start = float(target.get_attribute("data-start"))
        assert start > 3  # late in the sentence: the timestamps are the word's, not the segment's
        assert start - 0.05 <= position < start + 1

        with page.expect_download() as download:
            page.click("button.download[data-format=srt]")
        text = Path(download.value.path()).read_text()
        assert "tomorrow" in text.lower() and "-->" in text

        page.evaluate("document.querySelector('#raw-box').open = false")
        shot = os.environ.get("WAZO_STT_SCREENSHOT")
        page.screenshot(path=shot or str(tmp_path / "page.png"), full_page=True)


def test_swagger_ui_works_offline_from_packaged_assets(settings):
    with running_server(settings) as url, httpx.Client(base_url=url) as client, browser_page() as page:
        html = client.get("/docs").text
        assets = re.findall(r"""['"](/docs-assets/[^'"]+)['"]""", html)
        assert len(assets) >= 2 and not re.search(r"""['"]https?://""", html)
        assert all(client.get(a).status_code == 200 for a in assets)
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"{url}/docs")
        page.wait_for_selector(".opblock-post", timeout=15_000)
        assert "/v1/audio/transcriptions" in page.inner_text(".swagger-ui")
        assert all(r.startswith(url) for r in requests), [r for r in requests if not r.startswith(url)]


def test_the_page_asks_for_the_api_key_once_and_sends_it_as_bearer(settings, tones):
    # Keys on (the real auth layer): the page and its assets load without a key, the first API call answers 401,
    # the page asks once, keeps the key in the tab and sends it as a Bearer token from then on.
    settings.api_keys = "sesame:web"
    sent: list[str] = []
    with running_server(settings) as url, httpx.Client(base_url=url) as client, browser_page() as page:
        wait_ready(client)
        page.on("request", lambda r: "/v1/" in r.url and sent.append(r.headers.get("authorization", "")))
        page.goto(url)
        page.wait_for_selector("#key-dialog[open]")
        page.fill("#key", "sesame")
        page.click("#key-form button")
        page.wait_for_function("document.querySelector('#model').options.length > 0")
        page.set_input_files("#file", str(tones))
        page.click("#go")
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        assert page.evaluate("sessionStorage.getItem('wazo-stt-api-key')") == "sesame"
        assert page.evaluate("localStorage.length") == 0  # kept in the tab only
        assert page.locator("#transcript .w").count() == len(PIECES)
        assert sent[0] == "" and set(sent[1:]) == {"Bearer sesame"}, sent  # asked once, then always sent
        assert client.get("/docs").status_code == 200 and client.get("/web/app.js").status_code == 200
