"""Alembic environment for mailer's store: always run through :mod:`mailer.store.migrate`.

The caller hands over an open connection (``config.attributes["connection"]``),
so no alembic.ini and no URL are needed on the user's machine.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import mailer.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "mailer's migrations run through `mailer db upgrade` (mailer.store.migrate), not the alembic CLI"
    )

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite alters tables by copying them; autogenerate then writes batch operations.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
