"""Real speech for tests that need Silero VAD to hear a voice: espeak-ng, decoded by our own audio path."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from wazo_stt.audio import decode_audio


@functools.cache
def _spoken(text: str, voice: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(path), text], check=True, capture_output=True)
        return decode_audio(path).samples


def spoken(text: str, voice: str = "en-us") -> np.ndarray:
    """16 kHz mono float32 speech; skips the test when espeak-ng is not installed."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return _spoken(text, voice).copy()
