"""The instruments, one registry per application (so two servers in one test process never share counters),
with the client library's own process and platform collectors (RSS, CPU seconds, open files, Python version)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from wazo_stt.audio import AudioError
from wazo_stt.engine.registry import UnknownModelError

PREFIX = "wazo_stt"
# Seconds a job waits in the queue: from instant to an hour-long backlog.
QUEUE_WAIT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
# Seconds from claim to result: a 5 s voicemail (well under a second) to a four-hour recording.
PROCESSING_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# Processing seconds per audio second: Parakeet int8 on a CPU core runs around 0.03 (30x real time).
RTF_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2)
DECODE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
WEBHOOK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """Every instrument of one application. Thread-safe (the client library locks), so the transcription
    thread may time its decoding directly."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels, registry=self.registry)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=self.registry)

        def histogram(name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()) -> Histogram:
            return Histogram(f"{PREFIX}_{name}", doc, labels, buckets=buckets, registry=self.registry)

        # Read from the store (and the engine registry) at each scrape: exact across processes.
        self.jobs_queued = gauge("jobs_queued", "Jobs waiting in the queue (every process, from the database)")
        self.jobs_processing = gauge("jobs_processing", "Jobs being transcribed (every process, from the database)")
        self.oldest_queued_age = gauge(
            "oldest_queued_job_age_seconds", "Age of the oldest queued job (0 when the queue is empty)"
        )
        self.engine_loaded = gauge("engine_loaded", "1 when the model's engine is loaded in this process", ("model",))
        self.webhooks_pending = gauge(
            "webhook_deliveries_pending", "Webhook events not delivered yet (every process, from the database)"
        )

        self.jobs_completed = counter("jobs_completed", "Jobs transcribed by this process", ("model",))
        self.jobs_failed = counter("jobs_failed", "Jobs that failed in this process, by reason", ("model", "reason"))
        self.audio_seconds = counter("audio_seconds_transcribed", "Seconds of audio transcribed", ("model",))
        self.submissions_refused = counter(
            "submissions_refused", "Submissions answered with an error, by status and reason", ("status", "reason")
        )
        self.fetch_failures = counter("url_fetch_failures", "Audio URL downloads that failed, by reason", ("reason",))
        self.webhook_attempts = counter(
            "webhook_delivery_attempts", "Webhook delivery attempts, by outcome", ("outcome",)
        )

        self.queue_wait = histogram(
            "queue_wait_seconds", "Time from submission to a worker taking the job", QUEUE_WAIT_BUCKETS
        )
        self.processing = histogram(
            "processing_seconds", "Time from a worker taking the job to its result", PROCESSING_BUCKETS, ("model",)
        )
        self.real_time_factor = histogram(
            "real_time_factor", "Processing seconds per second of audio (lower is faster)", RTF_BUCKETS, ("model",)
        )
        self.decode_time = histogram("decode_seconds", "Time to decode and resample a job's audio", DECODE_BUCKETS)
        self.fetch_time = histogram("url_fetch_seconds", "Time to download audio from a URL", FETCH_BUCKETS)
        self.webhook_time = histogram("webhook_delivery_seconds", "Time of one webhook POST", WEBHOOK_BUCKETS)

    # --- hooks: one call each from the worker, the routes and the error handler ---------------------------

    def job_started(self, created_at: float, started_at: float | None) -> None:
        if started_at is not None:
            self.queue_wait.observe(max(started_at - created_at, 0.0))

    def job_completed(self, model: str, audio_seconds: float, processing_seconds: float) -> None:
        self.jobs_completed.labels(model).inc()
        self.audio_seconds.labels(model).inc(audio_seconds)
        self.processing.labels(model).observe(processing_seconds)
        if audio_seconds > 0:
            self.real_time_factor.labels(model).observe(processing_seconds / audio_seconds)

    def job_failed(self, model: str, reason: str) -> None:
        self.jobs_failed.labels(model, reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def failure_reason(exc: BaseException | None) -> str:
    """A short, bounded label for why a job failed (never the message: it may name a file or a host)."""
    if exc is None:
        return "audio_missing"
    if isinstance(exc, AudioError):
        return f"audio_{exc.reason}"
    if isinstance(exc, UnknownModelError):
        return "unknown_model"
    return "engine_error"
