"""The tracker's figures in Prometheus' text format, from the standard client library.

Each app has a registry of its own (tests run several apps in one process); with
`--workers N` each worker answers /metrics for itself.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from outreach.models import ClickKind

OUTCOMES = ("redirected", "not_found", "unavailable", "head")
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class TrackerMetrics:
    """Counters for redirects and clicks, the writer's batches, and gauges read when scraped."""

    def __init__(self, spooled: Callable[[], float], links_known: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        redirects = Counter(
            "outreach_redirects", "Requests for /r/CODE by outcome", ["outcome"], registry=self.registry
        )
        clicks = Counter("outreach_clicks", "Clicks recorded, by kind", ["kind"], registry=self.registry)
        # Children resolved once: the redirect path then pays one increment, not a label lookup.
        self.redirects = {outcome: redirects.labels(outcome) for outcome in OUTCOMES}
        self.clicks: dict[ClickKind, Counter] = {kind: clicks.labels(kind.value) for kind in ClickKind}
        self.batch_size = Histogram(
            "outreach_click_batch_size", "Clicks per group commit", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.commit_seconds = Histogram(
            "outreach_click_commit_seconds",
            "Time to commit (or spool) one batch",
            ["where"],
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        Gauge("outreach_click_spool", "Clicks waiting in the spool", registry=self.registry).set_function(spooled)
        Gauge("outreach_links_known", "Links held in memory", registry=self.registry).set_function(links_known)

    def observe_batch(self, size: int, seconds: float, where: str) -> None:
        """One group commit (or spool write) done; called on the writer's thread."""
        self.batch_size.observe(size)
        self.commit_seconds.labels(where).observe(seconds)

    def render(self) -> bytes:
        """The scrape's body."""
        return generate_latest(self.registry)
