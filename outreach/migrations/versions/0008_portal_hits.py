"""The portal's access logs as evidence: daily outreach hits, their visitors, the files imported.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _kind() -> sa.Enum:
    return sa.Enum("human", "preview", "bot", "head", name="clickkind", native_enum=False, length=24)


def upgrade() -> None:
    op.create_table(
        "log_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("overlap_lines", sa.Integer(), nullable=False),
        sa.Column("kept", sa.Integer(), nullable=False),
        sa.Column("malformed", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_log_imports"),
        sa.UniqueConstraint("sha256", name="uq_log_imports_sha256"),
    )
    op.create_table(
        "portal_hits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("kind", _kind(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("visitors", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_portal_hits"),
        sa.UniqueConstraint("day", "channel", "kind", name="uq_portal_hits_day_channel_kind"),
    )
    op.create_table(
        "portal_visitors",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("kind", _kind(), nullable=False),
        sa.Column("visitor", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("day", "channel", "kind", "visitor", name="pk_portal_visitors"),
    )


def downgrade() -> None:
    op.drop_table("portal_visitors")
    op.drop_table("portal_hits")
    op.drop_table("log_imports")
