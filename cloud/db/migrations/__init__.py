"""Alembic migrations of the cloud database, shipped in the package (docs/migrations.md)."""
