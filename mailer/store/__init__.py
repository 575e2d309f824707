"""The store: the engine (SQLite or PostgreSQL on the same code), the tables, and their migrations.

Every stage reads and writes the tables in :mod:`mailer.store.tables`; the engine's
functions are this package's face, so ``store.make_engine(url)`` reads as it should.
"""

from mailer.store.engine import StoreError, check_schema, create_schema, make_engine

__all__ = ["StoreError", "check_schema", "create_schema", "make_engine"]
