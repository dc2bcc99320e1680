"""Audio in: decoding uploads to 16 kHz mono float32, and fetching them from URLs."""

from wazo_stt.audio.decode import SAMPLE_RATE, AudioError, AudioInfo, DecodedAudio, decode_audio, inspect_audio

__all__ = ["SAMPLE_RATE", "AudioError", "AudioInfo", "DecodedAudio", "decode_audio", "inspect_audio"]
