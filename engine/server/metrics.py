"""GET /metrics: the server's counters in Prometheus' text format, through prometheus_client.

    gpt2_requests_total{endpoint, status}          HTTP requests answered
    gpt2_prompt_tokens_total                       prompt tokens prefilled (and scored, for echo)
    gpt2_generation_tokens_total                   tokens generated
    gpt2_queue_length                              requests waiting for room in the batch
    gpt2_batch_size                                rows in the running batch
    gpt2_time_per_output_token_seconds             one decode step (each row in it gets one token)

Each server has its own registry, so several can live in one process (the tests).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# Seconds per decode step: a small model on a CPU takes milliseconds, a large one a second.
STEP_BUCKETS = (0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, float("inf"))


class Metrics:
    def __init__(self):
        disable_created_metrics()  # no *_created series beside each counter: the process start says it
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "gpt2_requests", "HTTP requests answered, by endpoint and status code", ["endpoint", "status"], registry=r
        )
        self.prompt_tokens = Counter("gpt2_prompt_tokens", "Prompt tokens prefilled", registry=r)
        self.generated_tokens = Counter("gpt2_generation_tokens", "Tokens generated", registry=r)
        self.queue_length = Gauge("gpt2_queue_length", "Requests waiting for room in the batch", registry=r)
        self.batch_size = Gauge("gpt2_batch_size", "Rows in the running batch", registry=r)
        self.time_per_output_token = Histogram(
            "gpt2_time_per_output_token_seconds",
            "Time of one decode step, in which every row of the batch gets one token",
            buckets=STEP_BUCKETS,
            registry=r,
        )

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
