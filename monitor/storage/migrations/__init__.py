"""Alembic migrations of the monitor's schema; `monitor.storage.schema.migrate` runs them."""
