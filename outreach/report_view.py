"""The report as terminal tables (rich), readable at 80 columns."""

from __future__ import annotations

from rich.console import Console

from outreach.reports import Counts, Report
from outreach.tables import fitted_table

_COLUMNS = ("sent", "waiting", "problems", "visits", "crawlers")


def _cells(counts: Counts) -> list[str]:
    return [str(n) for n in (counts.sent, counts.waiting, counts.problems, counts.visits, counts.crawlers)]


def print_report(out: Console, report: Report) -> None:
    """Per-channel and per-campaign tables; visits are human clicks only,
    crawlers are link-preview fetchers and other bots."""
    by_channel = fitted_table("channel", "via", *_COLUMNS, wrap={"via"}, right=_COLUMNS, title="By channel")
    for channel, counts in report.channels.items():
        # "via outbox" on a platform channel means nothing reached the platform.
        by_channel.add_row(channel, ", ".join(sorted(counts.transports)), *_cells(counts))
    by_channel.add_row("[b]total[/b]", "", *_cells(report.total), end_section=True)
    out.print(by_channel)

    by_campaign = fitted_table(
        "id", "campaign", *_COLUMNS, wide="campaign", right=("id", *_COLUMNS), title="By campaign"
    )
    for campaign_id, counts in report.campaigns.items():
        by_campaign.add_row(str(campaign_id), report.campaign_titles.get(campaign_id, ""), *_cells(counts))
    out.print(by_campaign)
