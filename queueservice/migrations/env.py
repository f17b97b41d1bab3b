"""Alembic's environment for the store: run by ``queueservice.db`` (configured in code, no
alembic.ini), always on the connection it is given in ``config.attributes``."""
from __future__ import annotations

from alembic import context

from queueservice.schema import metadata

context.configure(connection=context.config.attributes["connection"],
                  target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
