"""Subscribers of the bot, their per-subscriber links, and surveys of information needs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("topics", sa.JSON(), nullable=False),
        sa.Column(
            "mode",
            sa.Enum("instant", "digest", name="deliverymode", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum("active", "stopped", "blocked", name="subscriberstatus", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("tax_code", sa.String(length=14), nullable=True),
        sa.Column("consent", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("consent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("awaiting", sa.String(length=120), nullable=True),
        sa.Column("digest_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.UniqueConstraint("channel", "chat_id", name="uq_subscribers_channel_chat_id"),
    )
    op.create_index("ix_subscribers_tax_code", "subscribers", ["tax_code"])
    op.create_table(
        "surveys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_surveys"),
        sa.UniqueConstraint("name", name="uq_surveys_name"),
    )
    op.create_table(
        "survey_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("survey_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("question", sa.String(length=60), nullable=False),
        sa.Column("choices", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["surveys.id"], name="fk_survey_answers_survey_id_surveys", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_survey_answers_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_survey_answers"),
        sa.UniqueConstraint(
            "survey_id", "subscriber_id", "question", name="uq_survey_answers_survey_id_subscriber_id_question"
        ),
    )
    op.create_index("ix_survey_answers_subscriber_id", "survey_answers", ["subscriber_id"])
    with op.batch_alter_table("links") as batch:
        batch.add_column(sa.Column("subscriber_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_links_subscriber_id_subscribers", "subscribers", ["subscriber_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_links_subscriber_id", ["subscriber_id"])
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("survey_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_campaigns_survey_id_surveys", "surveys", ["survey_id"], ["id"], ondelete="RESTRICT"
        )


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_constraint("fk_campaigns_survey_id_surveys", type_="foreignkey")
        batch.drop_column("survey_id")
    with op.batch_alter_table("links") as batch:
        batch.drop_index("ix_links_subscriber_id")
        batch.drop_constraint("fk_links_subscriber_id_subscribers", type_="foreignkey")
        batch.drop_column("subscriber_id")
    op.drop_table("survey_answers")
    op.drop_table("surveys")
    op.drop_index("ix_subscribers_tax_code", table_name="subscribers")
    op.drop_table("subscribers")
