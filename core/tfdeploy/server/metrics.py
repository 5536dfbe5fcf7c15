"""Prometheus metrics for the server, in the text exposition format, without a dependency.

Counters and histograms are keyed by a tuple of label values; updates take one lock, which
costs far less than a request.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence

#: Latency buckets in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Batch-size buckets, in instances per model call.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Counter:
    """A monotonically increasing count per label combination."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        """Add ``amount`` to the count for these label values."""
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        """The current count for these label values."""
        return self._values.get(labels, 0.0)

    def total(self) -> float:
        """The sum over every label combination."""
        with self._lock:
            return sum(self._values.values())

    def render(self) -> list[str]:
        """The metric's lines in the Prometheus text format."""
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        for labels, value in items:
            lines.append(f"{self.name}{_labels(self.label_names, labels)} {value:g}")
        return lines


class Histogram:
    """Observations counted into cumulative buckets per label combination."""

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self.buckets = tuple(buckets)
        self._series: dict[tuple[str, ...], list[float]] = {}  # bucket counts, then sum, count
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        """Record one observation."""
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [0.0] * (len(self.buckets) + 2)
            if index < len(self.buckets):
                series[index] += 1
            series[-2] += value
            series[-1] += 1

    def count(self, *labels: str) -> float:
        """How many observations were recorded for these label values."""
        series = self._series.get(labels)
        return series[-1] if series else 0.0

    def sum(self, *labels: str) -> float:
        """The sum of the observations recorded for these label values."""
        series = self._series.get(labels)
        return series[-2] if series else 0.0

    def render(self) -> list[str]:
        """The metric's lines in the Prometheus text format."""
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for labels, series in items:
            running = 0.0
            for bound, n in zip(self.buckets, series, strict=False):
                running += n
                le = f'le="{bound:g}"'
                lines.append(
                    f"{self.name}_bucket{_labels(self.label_names, labels, le)} {running:g}"
                )
            inf = 'le="+Inf"'
            lines.append(
                f"{self.name}_bucket{_labels(self.label_names, labels, inf)} {series[-1]:g}"
            )
            lines.append(f"{self.name}_sum{_labels(self.label_names, labels)} {series[-2]:g}")
            lines.append(f"{self.name}_count{_labels(self.label_names, labels)} {series[-1]:g}")
        return lines


class Gauge:
    """A value read when the metrics are scraped."""

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name, self.help, self._read = name, help_text, read

    def render(self) -> list[str]:
        """The metric's lines in the Prometheus text format."""
        return [
            f"# HELP {self.name} {self.help}",
            f"# TYPE {self.name} gauge",
            f"{self.name} {self._read():g}",
        ]


class Metrics:
    """The server's metrics: requests, latency, errors, batch sizes and queue depth."""

    def __init__(self) -> None:
        self.requests = Counter(
            "tfdeploy_requests_total",
            "Requests answered, by protocol, route and status.",
            ("protocol", "route", "status"),
        )
        self.latency = Histogram(
            "tfdeploy_request_duration_seconds",
            "Time from a request's arrival to its answer, by protocol and route.",
            ("protocol", "route"),
        )
        self.errors = Counter(
            "tfdeploy_errors_total",
            "Requests answered with an error, by canonical error code.",
            ("code",),
        )
        self.batch_size = Histogram(
            "tfdeploy_batch_size",
            "Instances per model call, by model.",
            ("model",),
            BATCH_BUCKETS,
        )
        self.model_calls = Counter(
            "tfdeploy_model_calls_total", "Calls into TensorFlow, by model.", ("model",)
        )
        self.gauges: list[Gauge] = []

    def add_gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge read at scrape time."""
        self.gauges.append(Gauge(name, help_text, read))

    def render(self) -> str:
        """Every metric in the Prometheus text exposition format."""
        lines: list[str] = []
        for metric in (self.requests, self.latency, self.errors, self.batch_size, self.model_calls):
            lines.extend(metric.render())
        for gauge in self.gauges:
            lines.extend(gauge.render())
        return "\n".join(lines) + "\n"
