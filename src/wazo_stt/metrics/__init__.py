"""Prometheus metrics: what an operator watches (queue, throughput, failures, refusals, webhooks, the process).

Counters and histograms live in the process that counts them (each server or worker process exposes its own
``/metrics``; Prometheus sums them across targets); the queue gauges are read from the job store at scrape time,
so they are exact whichever process answers.
"""

from wazo_stt.metrics.instruments import Metrics, failure_reason
from wazo_stt.metrics.refusals import count_refusal

__all__ = ["Metrics", "count_refusal", "failure_reason"]
