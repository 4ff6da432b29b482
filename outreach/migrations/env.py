"""Alembic environment: runs on the engine `outreach.db.migrate` hands over."""

from alembic import context

from outreach.db import make_engine, modelled
from outreach.models import Base

config = context.config
engine = config.attributes.get("engine") or make_engine(config.get_main_option("sqlalchemy.url") or "")


class ForeignKeysBroken(RuntimeError):
    """A migration left rows pointing at nothing; it was rolled back."""


with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch migration copies a table and drops the old one; with foreign keys on, SQLite
        # deletes the referring rows (or refuses) at that DROP. Off for the migration (it cannot
        # change inside a transaction), checked before the commit, on again after.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    try:
        with connection.begin():
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                include_object=modelled,
                render_as_batch=sqlite,  # SQLite needs table copies for ALTER
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise ForeignKeysBroken(f"the migration would leave rows pointing at nothing: {broken[:5]}")
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
