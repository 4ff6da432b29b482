"""Campaign lifecycle: kinds (item, digest, staff message), rules, audit trail, channel pauses.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 14:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=24), nullable=False, server_default="item"))
        batch.add_column(sa.Column("item_ids", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("body", sa.Text(), nullable=True))
        batch.add_column(sa.Column("url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("rule", sa.String(length=120), nullable=True))
        batch.add_column(sa.Column("created_as", sa.String(length=120), nullable=True))
        batch.add_column(sa.Column("approved_as", sa.String(length=120), nullable=True))
        batch.create_unique_constraint("uq_campaigns_rule_item_id", ["rule", "item_id"])
    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.String(length=300), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("from_state", sa.String(length=24), nullable=True),
        sa.Column("to_state", sa.String(length=24), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("acting_as", sa.String(length=120), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
    )
    op.create_index("ix_audit_campaign_at", "audit", ["campaign_id", "at"])
    op.create_table(
        "channel_pauses",
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "target", name="pk_channel_pauses"),
    )


def downgrade() -> None:
    op.drop_table("channel_pauses")
    op.drop_index("ix_audit_campaign_at", table_name="audit")
    op.drop_table("audit")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_constraint("uq_campaigns_rule_item_id", type_="unique")
        for column in ("approved_as", "created_as", "rule", "url", "body", "item_ids", "kind"):
            batch.drop_column(column)
