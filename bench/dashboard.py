"""Render docs/img/dashboard.png: the main panels of docs/grafana-dashboard.json, drawn from a real server's
``/metrics`` while it works through bursts of voicemails, bad submissions and a flaky webhook receiver.

    .venv/bin/python -m bench.dashboard [--seconds 90] [--out docs/img/dashboard.png]

The server is the real one in its own process, with the tiny test model slowed to 0.4 s per job (so the queue
visibly grows and drains on any machine): the shapes are real, the speeds are not Parakeet's.
"""

from __future__ import annotations

import argparse
import base64
import os
import tempfile
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.jobs import TRANSCRIPTIONS, voicemail
from tests.support.processes import server_env, server_process
from tests.support.receiver import receiving
from tests.support.tiny_parakeet import build_tiny_parakeet

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: httpx.Client) -> Samples:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def workload(url: str, callback: str, seconds: float, stop: threading.Event) -> None:
    """Bursts of voicemails (some with a callback), and now and then a submission the server refuses."""
    with httpx.Client(base_url=url, timeout=30) as client:
        start, burst = time.monotonic(), 0
        while not stop.is_set() and time.monotonic() - start < seconds * 0.7:
            burst += 1
            for i in range(12 if burst % 3 else 25):
                data = {"user_uuid": "dash", "message_id": f"{burst}-{i}"}
                if i % 4 == 0:
                    data["callback_url"] = callback
                client.post(TRANSCRIPTIONS, files={"file": ("vm.wav", voicemail(2 + i % 5))}, data=data)
            client.post(TRANSCRIPTIONS, data={"model": "nope"})  # 400: neither file nor url
            client.post(TRANSCRIPTIONS, files={"file": ("x.wav", b"not audio")})  # 400: undecodable
            stop.wait(8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--out", type=Path, default=Path("docs/img/dashboard.png"))
    args = parser.parse_args()
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_parakeet(Path(tmp) / "model")
        env = server_env(
            model,
            Path(tmp) / "jobs.db",
            webhook_secret=secret,
            webhook_retry_first_secs=3,
            max_queue_size=60,
            wazo_test_delay=0.4,
        )
        rows: list[tuple[float, Samples]] = []
        with receiving([500] * 8) as receiver, server_process(env, Path(tmp) / "server.log") as server:
            server.start()
            stop = threading.Event()
            thread = threading.Thread(target=workload, args=(server.url, receiver.url, args.seconds, stop))
            thread.start()
            start = time.monotonic()
            with httpx.Client(base_url=server.url, timeout=10) as client:
                while time.monotonic() - start < args.seconds:
                    rows.append((time.monotonic() - start, scrape(client)))
                    time.sleep(1)
            stop.set()
            thread.join()
    plot(rows, args.out)
    print(f"wrote {args.out}")


def plot(rows: list[tuple[float, Samples]], path: Path, window: int = 5) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r[0] for r in rows]

    def series(name: str) -> list[float]:
        return [total(s, name) for _, s in rows]

    def rate(name: str, per: float = 1.0) -> tuple[list[float], list[float]]:
        values = series(name)
        xs, ys = [], []
        for i in range(window, len(rows)):
            xs.append(t[i])
            ys.append((values[i] - values[i - window]) / (t[i] - t[i - window]) * per)
        return xs, ys

    fig, axes = plt.subplots(2, 3, figsize=(12, 5.6), dpi=80)
    (queue, age, speed), (jobs, refused, hooks) = axes
    queue.plot(t, series("wazo_stt_jobs_queued"), label="queued")
    queue.plot(t, series("wazo_stt_jobs_processing"), label="processing")
    queue.set_title("Queue (jobs)")
    age.plot(t, series("wazo_stt_oldest_queued_job_age_seconds"), color="tab:red")
    age.set_title("Oldest queued job (s)")
    speed.plot(*rate("wazo_stt_audio_seconds_transcribed_total"), color="tab:green")
    speed.set_title("Audio transcribed (s per s = x real time)")
    jobs.plot(*rate("wazo_stt_jobs_completed_total", 60), label="completed")
    jobs.plot(*rate("wazo_stt_jobs_failed_total", 60), label="failed")
    jobs.set_title("Jobs per minute")
    refused.plot(*rate("wazo_stt_submissions_refused_total", 60), color="tab:orange", label="400 refused")
    refused.set_title("Refused submissions per minute")
    hooks.plot(t, series("wazo_stt_webhook_deliveries_pending"), label="pending")
    attempts = [(name, "wazo_stt_webhook_delivery_attempts_total") for name in ("delivered", "retry")]
    for outcome, metric in attempts:
        values = [s.get((metric, (("outcome", outcome),)), 0.0) for _, s in rows]
        hooks.plot(t, values, label=f"{outcome} (total)")
    hooks.set_title("Webhooks")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("seconds")
        ax.set_ylim(bottom=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
