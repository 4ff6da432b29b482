"""Sources beyond feeds (sitemaps, listing pages) and articles that change on the portal.

`sources.kind`, `sources.spec_hash` (settings changed: read afresh),
`sources.watermark` (the newest sitemap `lastmod` seen) and `sitemap_urls` (every
URL a sitemap listed, so its archive is read once); `items.changed_at` (when the portal last changed
an article's title, summary or image after it was first stored) and the article
page's validators (`page_etag`, `page_last_modified`) for conditional GETs.
Plain ADD COLUMNs: SQLite keeps the items table, and with it the search triggers.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("kind", sa.String(16), nullable=False, server_default="feed"))
    op.add_column("sources", sa.Column("watermark", sa.DateTime(timezone=True), nullable=True))
    op.add_column("sources", sa.Column("spec_hash", sa.String(16), nullable=True))
    op.create_table(
        "sitemap_urls",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("url_key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name=op.f("fk_sitemap_urls_source_id_sources"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("source_id", "url_key", name=op.f("pk_sitemap_urls")),
    )
    op.add_column("items", sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("items", sa.Column("page_etag", sa.String(512), nullable=True))
    op.add_column("items", sa.Column("page_last_modified", sa.String(128), nullable=True))


def downgrade() -> None:
    op.drop_table("sitemap_urls")
    # Plain DROP COLUMNs (SQLite 3.35+): a batch copy of items would drop its search triggers.
    for table, column in (
        ("sources", "spec_hash"),
        ("items", "page_last_modified"),
        ("items", "page_etag"),
        ("items", "changed_at"),
        ("sources", "watermark"),
        ("sources", "kind"),
    ):
        op.drop_column(table, column)
