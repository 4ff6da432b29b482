"""The report as terminal tables (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from outreach.reports import Counts, Report

_COLUMNS = ("sent", "waiting", "problems", "visits", "crawlers")


def _cells(counts: Counts) -> list[str]:
    return [str(n) for n in (counts.sent, counts.waiting, counts.problems, counts.visits, counts.crawlers)]


def print_report(out: Console, report: Report) -> None:
    """Per-channel and per-campaign tables; visits are human clicks only,
    crawlers are link-preview fetchers and other bots."""
    by_channel = Table(title="By channel", title_justify="left")
    by_channel.add_column("channel")
    by_channel.add_column("via")
    for column in _COLUMNS:
        by_channel.add_column(column, justify="right", min_width=len(column))
    for channel, counts in report.channels.items():
        # "via outbox" on a platform channel means nothing reached the platform.
        by_channel.add_row(channel, ", ".join(sorted(counts.transports)), *_cells(counts))
    by_channel.add_row("[b]total[/b]", "", *_cells(report.total), end_section=True)
    out.print(by_channel)

    by_campaign = Table(title="By campaign", title_justify="left")
    by_campaign.add_column("id", justify="right")
    by_campaign.add_column("campaign", max_width=22, overflow="ellipsis", no_wrap=True)
    for column in _COLUMNS:
        by_campaign.add_column(column, justify="right", min_width=len(column))
    for campaign_id, counts in report.campaigns.items():
        by_campaign.add_row(str(campaign_id), report.campaign_titles.get(campaign_id, ""), *_cells(counts))
    out.print(by_campaign)
