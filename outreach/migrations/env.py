"""Alembic environment: runs on the engine `outreach.db.migrate` hands over."""

from alembic import context

from outreach.db import make_engine
from outreach.models import Base

config = context.config
engine = config.attributes.get("engine") or make_engine(config.get_main_option("sqlalchemy.url") or "")


def modelled(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """The item search index (migration 0006) is no model: autogenerate must not propose dropping it."""
    return not (name and (name == "items_search" or name.startswith("items_search_") or name == "ix_items_search"))


with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=modelled,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs table copies for ALTER
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
