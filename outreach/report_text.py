"""The report's data as terminal tables, CSV and JSON: the same figures in each (see `report_data`)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from typing import IO, Any

from rich.console import Console

from outreach.tables import fitted_table

HEADERS = {
    "sent": "sent",
    "clicks": "clicks",
    "visitors": "uniq",
    "repeats": "rep",
    "previews": "prev",
    "bots": "bots",
    "ctr": "ctr",
    "median_first_click_seconds": "1st click",
}
LEGEND = (
    "sent: deliveries sent in the period; clicks: people (repeats left out); uniq: distinct visitors per link "
    "and day; rep: repeats (a burst from one visitor); prev: link-preview fetches; bots: crawlers and tools; "
    "ctr: clicks per delivery sent; 1st click: median time from a delivery to its first click."
)
PROXY = (
    "Businesses reached is the office's own measure (registered businesses with consent whose links were "
    "clicked), not VCCI's PCI survey."
)


def duration(seconds: float | None) -> str:
    """21 min, 3.5 h, 2.0 d: a median delay as people read it."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _cells(row: Mapping[str, Any]) -> list[str]:
    ctr = row.get("ctr")
    return [
        str(row["sent"]),
        str(row["clicks"]),
        str(row["visitors"]),
        str(row["repeats"]),
        str(row["previews"]),
        str(row["bots"]),
        "-" if ctr is None else f"{ctr:.2f}",
        duration(row.get("median_first_click_seconds")),
    ]


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def print_report_data(out: Console, data: Mapping[str, Any], titles: Mapping[int, str] | None = None) -> None:
    """Headline, the rows for `--by`, businesses reached, topics, top items and campaigns."""
    period = data["period"]
    out.print(f"Report {period['since']} to {period['until']} ({period['label']}, days in {period['zone']})")
    by: list[str] = data["by"]
    columns = list(HEADERS.values())
    table = fitted_table(*by, *columns, wrap=set(by), right=columns, title="By " + ", ".join(by))
    campaign_titles = {c["id"]: c["title"] for c in data["campaigns"]}
    for row in data["rows"]:
        keys = []
        for dimension in by:
            value = row["key"].get(dimension)
            if dimension == "campaign" and value is not None:
                keys.append(f"{value} {campaign_titles.get(value, '')}".strip())
            else:
                keys.append("-" if value is None else str(value))
        table.add_row(*keys, *_cells(row))
    table.add_row("[b]total[/b]", *[""] * (len(by) - 1), *_cells(data["headline"]), end_section=True)
    out.print(table)
    businesses = data.get("businesses")
    if businesses:
        _businesses(out, businesses)
    if data["campaigns"] and "campaign" not in by:
        campaigns = fitted_table(
            "id",
            "campaign",
            "sent",
            "clicks",
            "uniq",
            "ctr",
            wide="campaign",
            right={"id", "sent", "clicks", "uniq", "ctr"},
            title="Campaigns",
        )
        for row in data["campaigns"]:
            ctr = "-" if row["ctr"] is None else f"{row['ctr']:.2f}"
            campaigns.add_row(
                str(row["id"]), row["title"], str(row["sent"]), str(row["clicks"]), str(row["visitors"]), ctr
            )
        out.print(campaigns)
    if data["topics"]:
        topics = fitted_table("topic", "clicks", wide="topic", right={"clicks"}, title="Clicks by topic")
        for topic in data["topics"]:
            topics.add_row(topic["label"], str(topic["clicks"]))
        out.print(topics)
    if data["top_items"]:
        items = fitted_table("item", "clicks", wide="item", right={"clicks"}, title="Top items")
        for item in data["top_items"]:
            items.add_row(item["title"], str(item["clicks"]))
        out.print(items)
    if data.get("portal"):
        portal = fitted_table(
            "day", "channel", "tracked", "portal", right={"tracked", "portal"}, title="Portal evidence"
        )
        for row in data["portal"]:
            portal.add_row(row["day"], row["channel"], str(row["tracked_clicks"]), str(row["portal_hits"]))
        out.print(portal)
    out.print(LEGEND, style="dim")


def _businesses(out: Console, businesses: Mapping[str, Any]) -> None:
    reached, registered = businesses["reached"], businesses["registered"]
    out.print(
        f"Businesses reached: {reached} of {registered} registered ({_share(businesses['share_of_registered'])})",
        markup=False,
    )
    if businesses.get("active_in_province"):
        out.print(
            f"  of the province's {businesses['active_in_province']:,} active businesses "
            f"({businesses['active_year']}, {businesses['active_source']}): {_share(businesses['share_of_province'])}",
            markup=False,
        )
    share = businesses["share_of_province"] if businesses.get("share_of_province") is not None else None
    measured = share if share is not None else businesses["share_of_registered"]
    what = "of the province" if share is not None else "of registered businesses"
    for target in businesses["targets"]:
        gap = (target - measured) * 100
        verdict = f"{gap:.1f} points to go" if gap > 0 else "met"
        out.print(f"  target {target * 100:.0f} % {what}: {verdict}", markup=False)
    if businesses["by_channel"]:
        out.print(
            "  by channel: " + ", ".join(f"{row['channel']} {row['businesses']}" for row in businesses["by_channel"]),
            markup=False,
        )
    out.print(PROXY, style="dim")


def write_csv(data: Mapping[str, Any], stream: IO[str]) -> int:
    """The rows for `--by` with every figure, one line each (the total last); returns the lines written."""
    by: list[str] = data["by"]
    writer = csv.writer(stream)
    writer.writerow([*by, *HEADERS])
    lines = 0
    for row in [*data["rows"], {"key": dict.fromkeys(by, "total"), **data["headline"]}]:
        values = [row[name] if row.get(name) is not None else "" for name in HEADERS]
        writer.writerow([row["key"].get(dimension, "") for dimension in by] + values)
        lines += 1
    return lines


def to_json(data: Mapping[str, Any]) -> str:
    """The whole report as JSON (UTF-8, Vietnamese as it is written)."""
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False)
