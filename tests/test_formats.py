"""The five response formats, subtitles checked by real parsers."""

from __future__ import annotations

import io
import json

import srt
import webvtt

from wazo_stt.domain import Segment, Transcript, Word
from wazo_stt.formats import render
from wazo_stt.text_utils import CUE_LINE_CHARS

TRANSCRIPT = Transcript(
    text="Bonjour, ceci est un message. Rappelez-moi au bureau avant dix-huit heures s'il vous plaît, merci.",
    language="fr",
    duration=9.5,
    segments=[
        Segment(0, 0.5, 2.0, "Bonjour, ceci est un message.", [1, 2, 3], -0.2),
        Segment(1, 2.0, 7.9, "Rappelez-moi au bureau avant dix-huit heures s'il vous plaît, merci.", [4, 5], -0.3),
    ],
    words=[Word("Bonjour,", 0.5, 0.9, -0.1), Word("ceci", 1.0, 1.2, None)],
)


def test_json_and_text():
    # OpenAI bills whisper-1 by the second, rounded up, and says so in a usage object.
    usage = {"type": "duration", "seconds": 10}
    assert render(TRANSCRIPT, "json").body == {"text": TRANSCRIPT.text, "usage": usage}
    text = render(TRANSCRIPT, "text")
    assert text.body == TRANSCRIPT.text + "\n"
    assert text.media_type.startswith("text/plain")


def test_verbose_json_has_every_openai_field_and_words_on_request():
    body = render(TRANSCRIPT, "verbose_json").body
    # OpenAI names the language ("french"), never the code.
    assert body["task"] == "transcribe" and body["language"] == "french" and body["duration"] == 9.5
    assert body["usage"] == {"type": "duration", "seconds": 10}
    assert "words" not in body
    segment = body["segments"][0]
    assert set(segment) == {
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    }
    assert segment["seek"] == 50 and segment["avg_logprob"] == -0.2
    with_words = render(TRANSCRIPT, "verbose_json", ["word", "segment"]).body
    assert len(with_words["segments"]) == 2
    assert with_words["words"] == [
        {"word": "Bonjour,", "start": 0.5, "end": 0.9},
        {"word": "ceci", "start": 1.0, "end": 1.2},
    ]
    json.dumps(with_words)
    # Only word timestamps asked for: OpenAI leaves the segments out.
    only_words = render(TRANSCRIPT, "verbose_json", ["word"]).body
    assert "segments" not in only_words and only_words["words"] == with_words["words"]


def test_logprobs_are_one_per_word_with_its_bytes():
    body = render(TRANSCRIPT, "json", logprobs=True).body
    # "ceci" has no probability from the engine: it is left out rather than invented.
    assert body["logprobs"] == [{"token": "Bonjour,", "bytes": list(b"Bonjour,"), "logprob": -0.1}]
    assert "logprobs" not in render(TRANSCRIPT, "json").body


SILENCE = Transcript(text="", language="auto", duration=4.0, segments=[], words=[])


def test_silence_is_an_empty_transcript_in_every_format():
    assert render(SILENCE, "json").body == {"text": "", "usage": {"type": "duration", "seconds": 4}}
    assert render(SILENCE, "text").body == "\n"
    assert list(srt.parse(render(SILENCE, "srt").body)) == []
    vtt = render(SILENCE, "vtt").body
    assert vtt.startswith("WEBVTT") and webvtt.from_buffer(io.StringIO(vtt)).captions == []
    verbose = render(SILENCE, "verbose_json", ["word", "segment"]).body
    assert verbose["text"] == "" and verbose["segments"] == [] and verbose["words"] == []


def test_srt_parses_and_cues_are_wrapped():
    cues = list(srt.parse(render(TRANSCRIPT, "srt").body))
    assert len(cues) == 2
    assert cues[0].start.total_seconds() == 0.5 and cues[0].end.total_seconds() == 2.0
    assert cues[1].content.replace("\n", " ") == TRANSCRIPT.segments[1].text
    for cue in cues:
        lines = cue.content.split("\n")
        assert 1 <= len(lines) <= 2 and all(len(line) <= CUE_LINE_CHARS for line in lines)


def test_vtt_parses():
    captions = webvtt.from_buffer(io.StringIO(render(TRANSCRIPT, "vtt").body)).captions
    assert [c.start for c in captions] == ["00:00:00.500", "00:00:02.000"]
    assert captions[1].text.replace("\n", " ") == TRANSCRIPT.segments[1].text


def test_no_empty_or_overlapping_cues():
    transcript = Transcript(
        text="a b",
        language="en",
        duration=1.0,
        segments=[Segment(0, 0.0, 0.0, "a"), Segment(1, 0.1, 0.3, "  "), Segment(2, 0.1, 0.5, "b")],
        words=[],
    )
    cues = list(srt.parse(render(transcript, "srt").body))
    assert [c.content for c in cues] == ["a", "b"]
    assert cues[0].end <= cues[1].start
    assert cues[0].end > cues[0].start
