"""Reading uploaded recordings into the samples the engines take."""

from wazo_stt.audio.decode import SAMPLE_RATE, AudioError, DecodedAudio, decode_audio

__all__ = ["SAMPLE_RATE", "AudioError", "DecodedAudio", "decode_audio"]
