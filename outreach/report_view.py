"""The report as terminal tables (rich), readable at 80 columns."""

from __future__ import annotations

from rich.console import Console

from outreach.reports import Counts, Report
from outreach.tables import fitted_table

# Short headers keep nine columns within 80; LEGEND says what each means.
_COLUMNS = ("sent", "wait", "issues", "clicks", "uniq", "rep", "prev", "bots")
LEGEND = (
    "sent/wait/issues: deliveries sent, still to go, failed or skipped or of unknown fate; "
    "clicks: people (repeats left out); uniq: distinct visitors per link and day; "
    "rep: repeats (a burst from one visitor); prev: link-preview fetches; bots: crawlers and tools."
)


_CLICKS = _COLUMNS[3:]  # a campaign's deliveries in detail: `outreach campaign show ID`


def _cells(counts: Counts, columns: tuple[str, ...] = _COLUMNS) -> list[str]:
    figures = {
        "sent": counts.sent,
        "wait": counts.waiting,
        "issues": counts.problems,
        "clicks": counts.visits,
        "uniq": counts.visitors,
        "rep": counts.repeats,
        "prev": counts.previews,
        "bots": counts.bots,
    }
    return [str(figures[column]) for column in columns]


def print_report(out: Console, report: Report) -> None:
    """Per-channel and per-campaign tables.

    clicks are human clicks without repeats; unique counts visitors per link and
    day; repeats are bursts from one visitor; previews and bots are not people.
    """
    by_channel = fitted_table("channel", *_COLUMNS, wrap={"channel"}, right=_COLUMNS, title="By channel")
    for channel, counts in report.channels.items():
        # "via outbox" on a platform channel means nothing reached the platform.
        via = sorted(counts.transports - {channel})
        by_channel.add_row(channel + (f"\nvia {', '.join(via)}" if via else ""), *_cells(counts))
    by_channel.add_row("[b]total[/b]", *_cells(report.total), end_section=True)
    out.print(by_channel)

    columns = ("sent", *_CLICKS)
    by_campaign = fitted_table("id", "campaign", *columns, wide="campaign", right=("id", *columns), title="By campaign")
    for campaign_id, counts in report.campaigns.items():
        title = report.campaign_titles.get(campaign_id, "")
        by_campaign.add_row(str(campaign_id), title, *_cells(counts, columns))
    out.print(by_campaign)
    if report.businesses:
        _businesses(out, report)
    out.print(LEGEND, style="dim")


def _businesses(out: Console, report: Report) -> None:
    """Businesses registered in the bot with consent; left out when there are none."""
    from outreach.business import display

    table = fitted_table(
        "tax code", "chats", "clicks", right=("chats", "clicks"), title="Businesses (bot, with consent)"
    )
    for business in report.businesses:
        table.add_row(display(business.tax_code), str(business.chats), str(business.visits))
    out.print(table)
    out.print(
        f"{report.businesses_reached} of {len(report.businesses)} registered businesses came to the portal "
        "through their links (the office's own measure, not VCCI's survey)."
    )
