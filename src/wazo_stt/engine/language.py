"""The language of a transcript, detected from its text when the model does not say which it heard.

Parakeet and multilingual Whisper models transcribe in the language they hear without reporting it, while
OpenAI's ``verbose_json`` always carries one (``"english"``, ``"french"``: see ``formats.languages``). py3langid
(the maintained fork of langid.py: a naive Bayes model over byte n-grams, shipped inside the wheel, numpy only, no
network) classifies the text; it is restricted to the languages the model transcribes, which makes short voicemails
far less ambiguous. Its model takes ~3 s to load: it is loaded once, on the first transcript that needs it, in
the worker thread.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Collection
from functools import cache

log = logging.getLogger(__name__)
_lock = threading.Lock()
SAMPLE_CHARS = 5000


def detect_language(text: str, candidates: Collection[str]) -> str | None:
    """The ISO code of the language ``text`` is written in, among ``candidates``; None when there is no text."""
    if not text.strip():
        return None
    candidates = frozenset(candidates)
    if len(candidates) == 1:
        return next(iter(candidates))
    try:
        with _lock:  # two workers finishing their first job together load the model once
            identifier = _identifier(candidates)
    except OSError as exc:
        # Loading unpacks the model into a temporary file: on a full disk the transcript must still be stored,
        # without its language (tried again on the next one).
        log.warning("Cannot load the language identifier (%s); the language is left undetected", exc)
        return None
    # A few thousand characters say the language as well as hours of them do, in a fraction of the time.
    return str(identifier.classify(text[:SAMPLE_CHARS])[0]) if identifier is not None else None


@cache
def _identifier(candidates: frozenset[str]):
    """An identifier restricted to ``candidates`` (one per model: restricting copies the tables)."""
    base = _full_identifier()
    known = sorted(c for c in candidates if c in base.labels)
    if not known:
        return None
    restricted = copy.copy(base)
    restricted.set_languages(known)
    return restricted


@cache
def _full_identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=False)
