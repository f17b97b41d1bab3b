"""The service's own settings kept in the database: first, the fingerprint of the signing
secret the replicas share (``datadir.check_shared_secret``; an HMAC, never the secret).

Revision ID: 0002_service_settings
Revises: 0001_baseline
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_service_settings"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("service_settings",
                    sa.Column("name", sa.Text(), nullable=False),
                    sa.Column("value", sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint("name"))


def downgrade() -> None:
    op.drop_table("service_settings")
