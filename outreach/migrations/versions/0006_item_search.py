"""Accent-free search over items: an FTS5 index on SQLite, a GIN index on PostgreSQL.

Both index `items.search_text`, the folded text (no marks, đ -> d, casefolded)
ingest writes, so "thue" finds "thuế" without the database knowing Vietnamese.

SQLite: an external-content FTS5 table (the text is kept once, in `items`) with
triggers, so every path that writes items (ingest's bulk insert, the ORM, a hand
edit) keeps the index in step without code changes; `rebuild` indexes the rows
already there. `remove_diacritics 2` is belt and braces: the text is folded already.
A later migration that rebuilds `items` by table copy (Alembic's batch mode) drops
these triggers with the old table: it must create them again.

PostgreSQL: an expression index is always current. ASCII punctuation is turned into
spaces first: PostgreSQL's parser reads "42/2022/nd-cp" or "quangngai.gov.vn" as one
file or host token, where SQLite's tokenizer (and the query side) sees words. The
expression must stay identical to `outreach.search.PG_DOCUMENT`, or PostgreSQL
cannot use the index.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_UP = (
    "CREATE VIRTUAL TABLE items_search USING fts5("
    "search_text, content='items', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER items_search_insert AFTER INSERT ON items BEGIN "
    "INSERT INTO items_search(rowid, search_text) VALUES (new.id, new.search_text); END",
    # An external-content index forgets a row by being told its old text.
    "CREATE TRIGGER items_search_delete AFTER DELETE ON items BEGIN "
    "INSERT INTO items_search(items_search, rowid, search_text) VALUES ('delete', old.id, old.search_text); END",
    "CREATE TRIGGER items_search_update AFTER UPDATE OF id, search_text ON items BEGIN "
    "INSERT INTO items_search(items_search, rowid, search_text) VALUES ('delete', old.id, old.search_text); "
    "INSERT INTO items_search(rowid, search_text) VALUES (new.id, new.search_text); END",
    "INSERT INTO items_search(items_search) VALUES ('rebuild')",
)
_SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS items_search_update",
    "DROP TRIGGER IF EXISTS items_search_delete",
    "DROP TRIGGER IF EXISTS items_search_insert",
    "DROP TABLE IF EXISTS items_search",
)

# A frozen copy of outreach.search.PG_DOCUMENT (a migration must not change when the code does).
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_PG_DOCUMENT = "to_tsvector('simple', translate(search_text, '{}', '{}'))".format(
    _PUNCTUATION.replace("'", "''"), " " * len(_PUNCTUATION)
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in _SQLITE_UP:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(f"CREATE INDEX ix_items_search ON items USING gin ({_PG_DOCUMENT})")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in _SQLITE_DOWN:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_items_search")
