"""Alembic migrations of the SQL store, shipped in the package; run them with `segpipe.stores.db.migrate`."""
