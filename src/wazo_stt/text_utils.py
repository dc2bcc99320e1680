"""Text rules shared by the segmenter (which decides where cues end) and the subtitle writers (which wrap them).

Kept below both so the engine never imports the formatters and the formatters never import the engine.
"""

from __future__ import annotations

import textwrap

CUE_LINE_CHARS = 42  # the usual broadcast subtitle line length
CUE_MAX_LINES = 2
CUE_MAX_SECONDS = 7.0
SENTENCE_END = (".", "?", "!", "…", "。")


def wrap_cue(text: str) -> list[str]:
    """Lines of a subtitle cue, each at most CUE_LINE_CHARS unless a single word is longer."""
    return textwrap.wrap(text, CUE_LINE_CHARS, break_long_words=False, break_on_hyphens=False) or [""]


def fits_in_cue(text: str) -> bool:
    return len(wrap_cue(text)) <= CUE_MAX_LINES
