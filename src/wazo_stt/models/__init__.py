"""Which models wazo-stt knows, and the tooling that fetches their files (no inference here: no ONNX Runtime)."""
