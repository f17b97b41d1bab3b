"""Password guessing slowed down (``queueservice/logins.py``): ``login_failures``, one row
per e-mail address with wrong passwords in a row (keyed by the SHA-256 of the address in
lower case), the count and the time of the last.

Revision ID: 0008_login_failures
Revises: 0007_workloads_finished
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_login_failures"
down_revision = "0007_workloads_finished"
branch_labels = None
depends_on = None

Int = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table("login_failures",
                    sa.Column("subject", sa.Text(), nullable=False),
                    sa.Column("failures", Int, nullable=False),
                    sa.Column("last_failure_at", Int, nullable=False),
                    sa.PrimaryKeyConstraint("subject"))


def downgrade() -> None:
    op.drop_table("login_failures")
