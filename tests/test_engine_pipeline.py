"""The shared engine's own decisions: silence never reaches a model, and the language of an unlabelled transcript
is read from its text, among the languages the model transcribes."""

from __future__ import annotations

import numpy as np

from wazo_stt.engine.language import detect_language
from wazo_stt.engine.pipeline import ChunkPlanner
from wazo_stt.formats.languages import language_name
from wazo_stt.models.catalog import PARAKEET_MODELS

SR = 16_000
PARAKEET_V3 = PARAKEET_MODELS["parakeet-tdt-0.6b-v3"].languages


def test_silence_is_not_sent_to_the_model():
    planner = ChunkPlanner(None, max_seconds=5.0, overlap_seconds=1.0)
    assert planner.plan(np.zeros(10 * SR, dtype=np.float32)) == []
    # A-law's quietest code decodes to +/-8/32768: a codec's silence, not a voice.
    alaw_silence = np.where(np.arange(10 * SR) % 2, 8 / 32768, -8 / 32768).astype(np.float32)
    assert planner.plan(alaw_silence) == []
    faint_voice = (0.01 * np.sin(np.arange(10 * SR) * 2 * np.pi * 300 / SR)).astype(np.float32)  # -40 dBFS
    assert planner.plan(faint_voice) != []


def test_language_is_detected_among_the_models_languages_and_named_as_openai_does():
    assert detect_language("Bonjour, je vous rappelle demain matin pour le devis.", PARAKEET_V3) == "fr"
    assert detect_language("Hi, this is the dentist calling about your appointment.", PARAKEET_V3) == "en"
    assert detect_language("Guten Tag, ich rufe wegen der Rechnung an.", PARAKEET_V3) == "de"
    assert detect_language("", PARAKEET_V3) is None  # nothing said: nothing to detect
    assert detect_language("hello", {"en"}) == "en"  # an English-only model needs no guess
    assert [language_name(c) for c in ("fr", "en", "de")] == ["french", "english", "german"]
