"""Clicks people can trust: bursts flagged as repeats, each click named, replayed spool segments remembered.

A spool segment is replayed in one transaction with its row here, so replaying it
again (a crash between the commit and removing the file) adds nothing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 16:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clicks") as batch:
        batch.add_column(sa.Column("repeat", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("uid", sa.String(length=32), nullable=True))
    # The tracker names each click; a batch stored twice (a commit whose answer was lost,
    # then replayed from the spool) adds nothing the second time.
    op.create_index("uq_clicks_uid", "clicks", ["uid"], unique=True)
    op.create_table(
        "click_spool_replays",
        sa.Column("segment", sa.String(length=120), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("segment", name="pk_click_spool_replays"),
    )


def downgrade() -> None:
    op.drop_table("click_spool_replays")
    op.drop_index("uq_clicks_uid", table_name="clicks")
    with op.batch_alter_table("clicks") as batch:
        batch.drop_column("uid")
        batch.drop_column("repeat")
