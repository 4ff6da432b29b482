"""Alembic migrations, applied by `outreach init` and by commands that need the store."""
