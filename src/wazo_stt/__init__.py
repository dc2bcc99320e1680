"""wazo-stt: an OpenAI-compatible speech-to-text server running NVIDIA Parakeet on CPUs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wazo-stt")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
