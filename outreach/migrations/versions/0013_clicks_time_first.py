"""Clicks indexed by time first, and no foreign key from a click to its link (issue 8).

The report's covering index led with the link's code, so every click went to its
link's own page of the index: a batch of 50 clicks on 50 links wrote 50 index pages.
On SQLite each is a 4 KB frame in the write-ahead log (the log grew by gigabytes a
minute under load, and the tracker managed 0.40 of a bare redirect); on PostgreSQL
each is a page dirtied. Led by the time, a batch fills the index's last page or two,
as it does the table's (`bench/tracker.py`: SQLite 18,000 -> 32,000 redirects/s). The
report reads a period's clicks by time anyway; what it looked up per link (each
delivery's first click, businesses reached) now comes from the same pass
(`outreach.report_data`).

The foreign key made PostgreSQL look up and lock the link's row for every click
(4 of the 11 µs the server spent per click). Links are never deleted, the tracker
writes only codes it read from the links table, and a replayed spool is checked
against the links before it is written (`outreach.click_sinks`), so nothing is lost
by it: a click naming a link a restored database lacks is still set aside.

On SQLite the table is copied (SQLite cannot drop a constraint), once. On PostgreSQL
the index is rebuilt in the upgrade's transaction, which holds click inserts back
meanwhile: a tracker running during `outreach init` spools its clicks and replays
them after. A downgrade puts the foreign key back, and refuses while any click
names a link the database lacks.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28 22:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME_FIRST = ["at", "code", "kind", "repeat", "visitor"]
CODE_FIRST = ["code", "at", "kind", "repeat", "visitor"]


def upgrade() -> None:
    # The old index goes before the copy, the new one after it: built once, sorted.
    op.drop_index("ix_clicks_report", table_name="clicks")
    with op.batch_alter_table("clicks") as batch:
        batch.drop_constraint("fk_clicks_code_links", type_="foreignkey")
    op.create_index("ix_clicks_report", "clicks", TIME_FIRST)


def downgrade() -> None:
    op.drop_index("ix_clicks_report", table_name="clicks")
    with op.batch_alter_table("clicks") as batch:
        batch.create_foreign_key("fk_clicks_code_links", "links", ["code"], ["code"], ondelete="CASCADE")
    op.create_index("ix_clicks_report", "clicks", CODE_FIRST)
