"""A short visitor key in the report's index, in place of the network hash and the agent (issue 8).

0009's covering index held the 64-character hash and the agent of up to 255
characters, and every click written by the tracker wrote them twice: with it, the
tracker fell from 0.56 of a bare redirect to 0.37-0.43. `clicks.visitor` is the
pair as one signed 64-bit number (`outreach.tracking.visitor_key`, the tracker's own
function, so old and new clicks of one visitor get one key); the index holds it instead.

Existing clicks are keyed here, in id order, in batches. The column stays nullable:
adding it is then instant on both databases, and a click written meanwhile by an
older tracker still running is stored, not refused (`outreach clicks reclassify`
keys it).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from outreach.tracking import visitor_key

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 10_000


def upgrade() -> None:
    # The old index goes first, the new one comes last: the backfill updates no index,
    # and the new index is built once, sorted, rather than row by row.
    op.drop_index("ix_clicks_report", table_name="clicks")
    with op.batch_alter_table("clicks") as batch:
        batch.add_column(sa.Column("visitor", sa.BigInteger(), nullable=True))
    backfill(op.get_bind())
    op.create_index("ix_clicks_report", "clicks", ["code", "at", "kind", "repeat", "visitor"])
    op.drop_index("ix_clicks_at", table_name="clicks")


def backfill(connection: sa.Connection, batch: int = BATCH) -> int:
    """Key every click without a key, `batch` at a time in id order; how many were keyed."""
    clicks = sa.table(
        "clicks",
        sa.column("id", sa.BigInteger()),
        sa.column("ip_hash", sa.String()),
        sa.column("user_agent", sa.String()),
        sa.column("visitor", sa.BigInteger()),
    )
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:  # one statement per batch: the keys as arrays
        keyed = sa.text(
            "UPDATE clicks SET visitor = given.visitor FROM unnest(CAST(:ids AS bigint[]), CAST(:keys AS bigint[])) "
            "AS given(id, visitor) WHERE clicks.id = given.id"
        )
    else:  # one executemany per batch, by primary key
        keyed = sa.text("UPDATE clicks SET visitor = :visitor WHERE id = :id")
    done, last = 0, None
    while True:
        query = sa.select(clicks.c.id, clicks.c.ip_hash, clicks.c.user_agent).where(clicks.c.visitor.is_(None))
        if last is not None:
            query = query.where(clicks.c.id > last)
        rows = connection.execute(query.order_by(clicks.c.id).limit(batch)).all()
        if not rows:
            return done
        keys = [visitor_key(ip_hash, agent) for _, ip_hash, agent in rows]
        if postgresql:
            connection.execute(keyed, {"ids": [row.id for row in rows], "keys": keys})
        else:
            connection.execute(keyed, [{"id": row.id, "visitor": key} for row, key in zip(rows, keys, strict=True)])
        done += len(rows)
        last = rows[-1].id


def downgrade() -> None:
    op.create_index("ix_clicks_at", "clicks", ["at"])
    op.drop_index("ix_clicks_report", table_name="clicks")
    with op.batch_alter_table("clicks") as batch:
        batch.drop_column("visitor")
    op.create_index("ix_clicks_report", "clicks", ["code", "at", "kind", "repeat", "ip_hash", "user_agent"])
